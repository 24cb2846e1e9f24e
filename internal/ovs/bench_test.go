package ovs

import (
	"context"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// BenchmarkAddPort measures attaching an existing veth end to a netdev
// bridge until ovs-vswitchd reports its ofport (add-ns/op), and deleting
// it until vswitchd reports the configuration applied (delete-ns/op); ns/op
// is the two together.
//
//	go test ./internal/ovs/ -run '^$' -bench AddPort -benchtime 200x
func BenchmarkAddPort(b *testing.B) {
	h := newHost(b)
	ctx := context.Background()
	if _, err := h.c.EnsureBridge(ctx, Bridge{Name: br}); err != nil {
		b.Fatal(err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vbench"}, PeerName: "vbenchp"}
	if err := h.h.LinkAdd(v); err != nil {
		b.Fatal(err)
	}
	if err := h.h.LinkSetUp(v); err != nil {
		b.Fatal(err)
	}
	p := Port{Name: "vbench", Bridge: br, VLAN: 10, ExternalIDs: map[string]string{"pontoon-endpoint": "bench"}}
	var add, del time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := h.c.AddPort(ctx, p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := h.c.DeletePorts(ctx, p.Name); err != nil {
			b.Fatal(err)
		}
		add += t1.Sub(t0)
		del += time.Since(t1)
	}
	b.ReportMetric(float64(add.Nanoseconds())/float64(b.N), "add-ns/op")
	b.ReportMetric(float64(del.Nanoseconds())/float64(b.N), "delete-ns/op")
}
