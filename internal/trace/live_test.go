package trace

import (
	"strings"
	"testing"

	"pontoon/internal/model"
)

// observed is what the kernel's trace of a → b:80 shows on a healthy host
// (the chains TestPredictSandboxToSandbox predicts), to be altered by each
// case.
func observed() []Traversal {
	return []Traversal{
		{Family: "bridge", Table: "pontoon", Chain: "anti-spoof", Hook: "prerouting", IIF: "ptv-a", Policy: true, Verdict: "accept"},
		{Family: "inet", Table: "pontoon", Chain: "loopback-guard", Hook: "prerouting", IIF: "pontoon0", Policy: true, Verdict: "accept"},
		{Family: "inet", Table: "pontoon", Chain: "prerouting", Hook: "prerouting", IIF: "pontoon0", Policy: true, Verdict: "accept"},
		{Family: "inet", Table: "pontoon", Chain: "forward", Hook: "forward", IIF: "pontoon0", OIF: "pontoon0", Verdict: "accept",
			Rules: []LiveRule{{Chain: "forward", Handle: 4, Comment: "(a) inside one network, also bridged frames (br_netfilter)", Verdict: "accept"}}},
		{Family: "inet", Table: "pontoon", Chain: "postrouting", Hook: "postrouting", OIF: "pontoon0", Policy: true, Verdict: "accept"},
	}
}

func liveTrace(t *testing.T, obs []Traversal, answer string) *model.Trace {
	t.Helper()
	tr := predict(t, from("a").to("b:80"), nil)
	tr.Live = &model.TraceLive{}
	Compare(tr, obs, answer)
	return tr
}

func TestCompareAgrees(t *testing.T) {
	tr := liveTrace(t, observed(), "refused")
	if !tr.Live.Agrees || tr.Live.Verdict != nil || len(tr.Live.Differences) != 0 {
		t.Fatalf("live %+v", tr.Live)
	}
	for _, h := range tr.Hops {
		if h.Kind == model.HopNft && h.Seen != "yes" {
			t.Errorf("%s %s not seen", h.Table, h.Chain)
		}
	}
	if got := strings.Join(tr.Live.Tables, ","); got != "bridge pontoon,inet pontoon" {
		t.Errorf("tables %s", got)
	}
}

// Another table's forward chain drops by policy: the live verdict names
// it, the hop is inserted where the kernel met it, and the chains after
// it are not seen.
func TestCompareForeignDrop(t *testing.T) {
	obs := observed()[:4]
	obs = append(obs, Traversal{Family: "inet", Table: "blocker", Chain: "fwdchain", Hook: "forward", Priority: 10, IIF: "pontoon0", OIF: "pontoon0", Policy: true, Verdict: "drop"})
	tr := liveTrace(t, obs, "none")
	l := tr.Live
	if l.Agrees || l.Verdict == nil || l.Verdict.Where != "inet blocker fwdchain" || l.Verdict.Rule != "policy" {
		t.Fatalf("live %+v", l)
	}
	if !strings.Contains(l.Verdict.Sentence, "its policy drop") || !strings.Contains(l.Verdict.Sentence, "not pontoon's") {
		t.Errorf("sentence: %s", l.Verdict.Sentence)
	}
	var kinds []string
	for _, h := range tr.Hops {
		if h.Kind == model.HopNft {
			kinds = append(kinds, h.Table+" "+h.Chain+" "+h.Seen)
		}
	}
	want := "pontoon anti-spoof yes|pontoon loopback-guard yes|pontoon prerouting yes|pontoon forward yes|blocker fwdchain yes|pontoon postrouting no"
	if got := strings.Join(kinds, "|"); got != want {
		t.Errorf("nft hops\n got %s\nwant %s", got, want)
	}
}

// pontoon's table dropped what its state accepts: drift, with the rule.
func TestCompareDrift(t *testing.T) {
	obs := observed()
	obs[3].Rules = []LiveRule{{Chain: "forward", Handle: 9, Comment: "(d) networks are isolated from each other", Verdict: "drop"}}
	obs[3].Verdict = "drop"
	tr := liveTrace(t, obs[:4], "none")
	l := tr.Live
	if l.Agrees || l.Verdict == nil || l.Verdict.Rule != "isolation" || !strings.Contains(l.Verdict.Sentence, "drift") {
		t.Fatalf("live %+v", l)
	}
	if !strings.Contains(strings.Join(l.Differences, "\n"), "the prediction is intra → accept, the kernel did isolation → drop") {
		t.Errorf("differences %q", l.Differences)
	}
}

// A predicted chain the kernel never showed, with no drop before it.
func TestCompareMissingChain(t *testing.T) {
	obs := observed()
	obs = append(obs[:2], obs[3:]...) // no prerouting
	tr := liveTrace(t, obs, "refused")
	if tr.Live.Agrees || !strings.Contains(strings.Join(tr.Live.Differences, "\n"), "does not show inet pontoon prerouting") {
		t.Errorf("live %+v", tr.Live)
	}
}

// Docker's FORWARD accepts through pontoon's DOCKER-USER rule: shown as
// what it is, and it changes nothing in the verdict.
func TestCompareDockerUser(t *testing.T) {
	obs := observed()
	docker := Traversal{Family: "ip", Table: "filter", Chain: "FORWARD", Hook: "forward", IIF: "pontoon0", OIF: "pontoon0", Verdict: "accept",
		Rules: []LiveRule{{Chain: "FORWARD", Handle: 3, Verdict: "jump DOCKER-USER"},
			{Chain: "DOCKER-USER", Handle: 7, Comment: "pontoon: network pontoon (managed by pontoon; removed with the network)", Verdict: "accept"}}}
	obs = append(obs[:4], append([]Traversal{docker}, obs[4:]...)...)
	tr := liveTrace(t, obs, "refused")
	if !tr.Live.Agrees {
		t.Fatalf("live %+v", tr.Live)
	}
	var found bool
	for _, h := range tr.Hops {
		if h.Foreign && h.Table == "filter" {
			found = true
			if !strings.Contains(h.Text, "DOCKER-USER rule handle 7 → accept") || !strings.Contains(h.Text, "pontoon's DOCKER-USER exception") {
				t.Errorf("text: %s", h.Text)
			}
		}
	}
	if !found {
		t.Error("no hop for ip filter FORWARD")
	}
}

// The destination answered a probe the prediction drops.
func TestCompareAnswerContradicts(t *testing.T) {
	tr := predict(t, from("a").to("c:80"), nil)
	tr.Live = &model.TraceLive{}
	obs := observed()
	obs[3].OIF = "ptbr-00000001"
	Compare(tr, obs[:4], "reply")
	if tr.Live.Agrees {
		t.Errorf("live %+v", tr.Live)
	}
}
