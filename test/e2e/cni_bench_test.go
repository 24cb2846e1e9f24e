package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"pontoon/internal/testutil"
)

// BenchmarkCNIAddDel measures ADD and DEL latency through libcni over 200
// namespaces for pontoon and for the reference bridge plugin with
// host-local, in the same run, and reports p50/p99 and the ratios:
//
//	go test ./test/e2e -run XXX -bench CNIAddDel -benchtime 1x
func BenchmarkCNIAddDel(b *testing.B) {
	const n = 200
	h := NewHost(b)
	h.P("network", "create", "cninet", "--subnet", "10.99.0.0/16")
	c := newCNIEnv(b, h)
	pontoon := c.conflist(b, "1.1.0", false)
	refData, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "refnet", "plugins": []any{map[string]any{
		"type": "bridge", "bridge": "cnibr0", "isGateway": true, "ipMasq": true,
		"ipam": map[string]any{"type": "host-local", "subnet": "10.98.0.0/16", "dataDir": filepath.Join(b.TempDir(), "ipam")},
	}}})
	ref, err := libcni.ConfListFromBytes(refData)
	if err != nil {
		b.Fatal(err)
	}
	type result struct{ add, del []time.Duration }
	run := func(list *libcni.NetworkConfigList) result {
		var r result
		nss := make([]string, n)
		for i := range nss {
			nss[i] = testutil.NewNetns(b)
		}
		if err := c.in(b, func(ctx context.Context) error {
			for i, ns := range nss {
				t0 := time.Now()
				if _, err := c.cni.AddNetworkList(ctx, list, rt(fmt.Sprintf("%s-%d", list.Name, i), ns)); err != nil {
					return fmt.Errorf("ADD %d: %w", i, err)
				}
				r.add = append(r.add, time.Since(t0))
			}
			for i, ns := range nss {
				t0 := time.Now()
				if err := c.cni.DelNetworkList(ctx, list, rt(fmt.Sprintf("%s-%d", list.Name, i), ns)); err != nil {
					return fmt.Errorf("DEL %d: %w", i, err)
				}
				r.del = append(r.del, time.Since(t0))
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		return r
	}
	for b.Loop() {
		p, rf := run(pontoon), run(ref)
		q := func(d []time.Duration, pc int) float64 {
			s := slices.Clone(d)
			slices.Sort(s)
			return float64(s[min(len(s)*pc/100, len(s)-1)].Microseconds()) / 1000
		}
		fmt.Printf("\nCNI through libcni, %d namespaces (ms)\n", n)
		fmt.Printf("%-22s %8s %8s %8s %8s\n", "plugin", "ADD p50", "ADD p99", "DEL p50", "DEL p99")
		fmt.Printf("%-22s %8.2f %8.2f %8.2f %8.2f\n", "pontoon", q(p.add, 50), q(p.add, 99), q(p.del, 50), q(p.del, 99))
		fmt.Printf("%-22s %8.2f %8.2f %8.2f %8.2f\n", "bridge + host-local", q(rf.add, 50), q(rf.add, 99), q(rf.del, 50), q(rf.del, 99))
		fmt.Printf("ratio reference/pontoon: ADD p50 %.1f×, DEL p50 %.1f×\n", q(rf.add, 50)/q(p.add, 50), q(rf.del, 50)/q(p.del, 50))
		b.ReportMetric(q(p.add, 50), "pontoon-add-p50-ms")
		b.ReportMetric(q(p.del, 50), "pontoon-del-p50-ms")
		b.ReportMetric(q(rf.add, 50), "ref-add-p50-ms")
		b.ReportMetric(q(rf.del, 50), "ref-del-p50-ms")
	}
}
