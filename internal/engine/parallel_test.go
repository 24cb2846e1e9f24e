package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// 32 sandboxes attach at once (some asking for the same static address,
// with aliases and published ports), then some of them detach, over the
// memory store and over bbolt with its group commit; run with -race (the
// suite does). Every address is held once, by an endpoint that has its
// veth, its anti-spoofing elements and its port; nothing is left of the
// losers and of the detached.
func TestParallelAttachDetach(t *testing.T) {
	for _, kind := range []string{"memory", "bolt"} {
		t.Run(kind, func(t *testing.T) {
			st := store.NewMemory()
			if kind == "bolt" {
				s, err := store.Open(filepath.Join(t.TempDir(), "state.db"), nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				st = s
			}
			env := newEnv(t, func(c *Config) { c.Store = st })
			e, ctx := env.e, context.Background()
			if _, err := e.CreateNetwork(ctx, model.NetworkSpec{Name: "n", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.0.0/24")}}}); err != nil {
				t.Fatal(err)
			}
			const n = 32
			errs := make([]error, n)
			eps := make([]*model.Endpoint, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					name := fmt.Sprintf("s%02d", i)
					if _, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: name}); err != nil {
						errs[i] = err
						return
					}
					a := model.AttachSpec{Network: "n", Aliases: []string{fmt.Sprintf("a%02d", i)},
						Ports: tPorts(fmt.Sprintf("%d:80/tcp", 20000+i))}
					if i%4 == 0 {
						a.IPs = tIPs(fmt.Sprintf("10.90.0.%d", 200+i/4%4)) // two sandboxes want each
					}
					eps[i], errs[i] = e.Connect(ctx, name, a)
					// The winners of a static address stay: a detach would free
					// it for the loser.
					if errs[i] == nil && i%3 == 0 && i%4 != 0 {
						errs[i] = e.Disconnect(ctx, "n", name)
						eps[i] = nil
					}
				})
			}
			wg.Wait()
			e.Flush()
			lost := 0
			for i, err := range errs {
				switch {
				case err == nil:
				case i%4 == 0 && errors.Is(err, model.ErrConflict):
					lost++
				default:
					t.Errorf("s%02d: %v", i, err)
				}
			}
			if lost != 4 {
				t.Errorf("%d attaches lost the race for a static address, want 4 (8 wanted 4 addresses)", lost)
			}
			live := map[string]*model.Endpoint{} // host veth → endpoint
			for _, ep := range eps {
				if ep != nil {
					live[ep.HostIf] = ep
				}
			}
			if err := st.View(ctx, func(tx store.Tx) error {
				nw, err := tx.Network("n")
				if err != nil {
					return err
				}
				res, err := tx.Reservations(nw.ID)
				if err != nil {
					return err
				}
				all, err := tx.Endpoints()
				if err != nil {
					return err
				}
				if len(all) != len(live) || len(res) != len(live) {
					t.Errorf("store: %d endpoints and %d reservations, want %d", len(all), len(res), len(live))
				}
				for _, ep := range all {
					want, ok := live[ep.HostIf]
					if !ok || ep.State != model.StateReady || ep.FirstIP() != want.FirstIP() || res[ep.FirstIP()] != ep.ID {
						t.Errorf("store: endpoint %s/%s %s %s (reserved by %s), want %v", ep.Sandbox, ep.Network, ep.FirstIP(), ep.State, res[ep.FirstIP()], want)
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			veths := env.link.Veths()
			guards, ports := env.fw.Bridge.Dump(), env.fw.Fake.Dump()
			if len(veths) != len(live) {
				t.Errorf("%d veths, want %d: %v", len(veths), len(live), veths)
			}
			for i, ep := range eps {
				port := fmt.Sprintf("tcp . %d", 20000+i)
				if ep == nil {
					if strings.Contains(ports, port+" ") {
						t.Errorf("s%02d: port %d still published", i, 20000+i)
					}
					continue
				}
				if _, ok := live[ep.HostIf]; !ok || !strings.Contains(guards, ep.HostIf) || !strings.Contains(guards, ep.FirstIP().String()) {
					t.Errorf("s%02d: %s %s missing from the veths or the anti-spoofing elements", i, ep.HostIf, ep.FirstIP())
				}
				if !strings.Contains(ports, port+" : "+ep.FirstIP().String()) {
					t.Errorf("s%02d: port %d not published to %s:\n%s", i, 20000+i, ep.FirstIP(), ports)
				}
			}
			if strings.Count(guards, "ptv-") != 3*len(live) {
				t.Errorf("%d anti-spoofing elements, want 3 per live endpoint (%d):\n%s", strings.Count(guards, "ptv-"), len(live), guards)
			}
		})
	}
}
