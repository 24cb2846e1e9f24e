package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// BenchmarkWebPage: the web page with 500 sandboxes, in headless chromium
// in the host namespace. First render (navigation start to the picture of
// the 500 on screen, as the page measures it), then 10 sandboxes created
// and 10 removed one at a time, each waited for in the picture: the page's
// own split (event received → snapshot fetched → patched → painted), the
// parts of the picture it changed, and the wall time from the API's answer
// to the change seen by the test. The names of these sort after the 500:
// nothing else moves. Then 3 created and removed whose names sort before
// them, so that every sandbox moves (the worst case for a partial
// redraw). Last, a click on a sandbox to its details on screen:
//
//	go test ./test/e2e -run XXX -bench WebPage -benchtime 1x
func BenchmarkWebPage(b *testing.B) {
	chromium := requireChromium(b)
	const sandboxes, updates = 500, 10
	for b.Loop() {
		h := NewHost(b, "--web", webAddr, "--log-level", "warn")
		cl := api.NewClient(h.Socket)
		bg := context.Background()
		for i := range sandboxes {
			if _, err := cl.CreateSandbox(bg, model.SandboxSpec{Name: fmt.Sprintf("s%04d", i), Networks: []model.AttachSpec{{Network: "pontoon"}}}); err != nil {
				b.Fatal(err)
			}
		}
		token := webToken(b, h)
		ctx := browser(b, chromium, h.NS)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		wait := func(expr string) {
			b.Helper()
			if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
				b.Fatalf("wait for %s: %v", expr, err)
			}
		}
		if err := chromedp.Do(ctx, chromedp.Navigate("http://"+webAddr+"/?token="+token)); err != nil {
			b.Fatal(err)
		}
		wait(fmt.Sprintf(`document.querySelectorAll("g.sandbox").length === %d && window.pontoonPage.firstRenderMs !== null`, sandboxes))
		type stats struct {
			FirstRenderMs       float64 `json:"firstRenderMs"`
			LastFetchMs         float64 `json:"lastFetchMs"`
			LastDrawMs          float64 `json:"lastDrawMs"`
			LastPatchMs         float64 `json:"lastPatchMs"`
			LastChanged         float64 `json:"lastChanged"`
			LastEventToScreenMs float64 `json:"lastEventToScreenMs"`
			Renders             int     `json:"renders"`
		}
		read := func() stats { return browse(b, ctx, chromedp.Evaluate[stats](`window.pontoonPage`)) }
		first := read()
		domReady := browse(b, ctx, chromedp.Evaluate[float64](`performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd`))
		elements := browse(b, ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg *").length`))

		var fetch, draw, patch, changed, eventToScreen, wall []float64
		var shiftDraw, shiftPatch, shiftChanged, shiftEventToScreen []float64
		step := func(name string, present bool) {
			// Let the snapshots of the last change finish, so that the
			// one measured is the first to show this one.
			time.Sleep(500 * time.Millisecond)
			renders := read().Renders
			var err error
			if present {
				_, err = cl.CreateSandbox(bg, model.SandboxSpec{Name: name, Networks: []model.AttachSpec{{Network: "pontoon"}}})
			} else {
				err = cl.RemoveSandbox(bg, name)
			}
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			want := "!" // the sandbox gone
			if present {
				want = "!!"
			}
			// The picture changed, and the page has noted its timings
			// (once it is painted).
			wait(fmt.Sprintf(`%sdocument.querySelector('g.sandbox[data-name="%s"]') && window.pontoonPage.renders > %d`, want, name, renders))
			seen := webMs(time.Since(t1))
			s := read()
			if name[0] == 'a' { // sorts first: every sandbox moves
				shiftDraw = append(shiftDraw, s.LastDrawMs)
				shiftPatch = append(shiftPatch, s.LastPatchMs)
				shiftChanged = append(shiftChanged, s.LastChanged)
				shiftEventToScreen = append(shiftEventToScreen, s.LastEventToScreenMs)
				return
			}
			wall = append(wall, seen)
			fetch = append(fetch, s.LastFetchMs)
			draw = append(draw, s.LastDrawMs)
			patch = append(patch, s.LastPatchMs)
			changed = append(changed, s.LastChanged)
			eventToScreen = append(eventToScreen, s.LastEventToScreenMs)
		}
		for i := range updates {
			step(fmt.Sprintf("upd%02d", i), true)
		}
		for i := range updates {
			step(fmt.Sprintf("upd%02d", i), false)
		}
		for i := range 3 {
			step(fmt.Sprintf("a%02d", i), true)
			step(fmt.Sprintf("a%02d", i), false)
		}
		click := browse(b, ctx, chromedp.Evaluate[float64](`new Promise(done => {
			const t0 = performance.now();
			document.querySelector('g.sandbox[data-name="s0250"] rect').dispatchEvent(new MouseEvent("click", {bubbles: true}));
			requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
		})`, chromedp.EvalAwaitPromise))
		if d := pageText(b, ctx, `#details h2`); d != "sandbox s0250" {
			b.Fatalf("the click showed %q", d)
		}
		png := browse(b, ctx, chromedp.FullScreenshot(100))
		shot := filepath.Join(artifactDir(b), "BenchmarkWebPage.png")
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("screenshot of the page with %d sandboxes: %s", sandboxes, shot)
		cancel()

		b.ReportMetric(first.FirstRenderMs, "first-render-ms")
		b.ReportMetric(domReady, "dom-ready-ms")
		b.ReportMetric(first.LastFetchMs, "first-fetch-ms")
		b.ReportMetric(first.LastDrawMs, "first-draw-ms")
		b.ReportMetric(float64(elements), "svg-elements")
		b.ReportMetric(webMedian(fetch), "update-fetch-p50-ms")
		b.ReportMetric(webMedian(draw), "update-draw-p50-ms")
		b.ReportMetric(webMedian(patch), "update-patch-p50-ms")
		b.ReportMetric(webMedian(changed), "update-parts-p50")
		b.ReportMetric(webMedian(shiftDraw), "shift-draw-p50-ms")
		b.ReportMetric(webMedian(shiftPatch), "shift-patch-p50-ms")
		b.ReportMetric(webMedian(shiftChanged), "shift-parts-p50")
		b.ReportMetric(webMedian(shiftEventToScreen), "shift-event-to-screen-p50-ms")
		b.ReportMetric(webMedian(eventToScreen), "update-event-to-screen-p50-ms")
		b.ReportMetric(slices.Max(eventToScreen), "update-event-to-screen-max-ms")
		b.ReportMetric(webMedian(wall), "update-api-to-seen-p50-ms")
		b.ReportMetric(click, "click-to-details-ms")
		b.Logf("first render %.0f ms (page loaded at %.0f; fetch %.0f, draw %.0f) for %d sandboxes, %d SVG elements; updates: fetch %v, draw %v (of which the page's own code %v), parts changed %v, event→screen %v, API answer→seen by the test %v (ms); every sandbox moving: draw %v (page's code %v), parts changed %v, event→screen %v; click→details %.1f ms",
			first.FirstRenderMs, domReady, first.LastFetchMs, first.LastDrawMs, sandboxes, elements, webRounded(fetch), webRounded(draw), webRounded(patch), webRounded(changed), webRounded(eventToScreen), webRounded(wall),
			webRounded(shiftDraw), webRounded(shiftPatch), webRounded(shiftChanged), webRounded(shiftEventToScreen), click)
	}
}

func webMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func webMedian(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func webRounded(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x + 0.5)
	}
	return out
}
