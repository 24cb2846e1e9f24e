package link

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"pontoon/internal/testutil/vmstub"
)

// openFds counts this process's open file descriptors.
func openFds(t testing.TB) int {
	t.Helper()
	e, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

// tunOf looks a tap up with the netlink library, as an outsider would.
func tunOf(t *testing.T, h *netlink.Handle, name string) *netlink.Tuntap {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	tun, ok := l.(*netlink.Tuntap)
	if !ok {
		t.Fatalf("%s is a %s, not a tuntap", name, l.Type())
	}
	return tun
}

func TestKernelTap(t *testing.T) {
	l, host := newKernelHost(t)
	n := l.(*netlinkLinks)
	h := nsHandle(t, host)
	brIdx, _ := l.LinkIndex("br0")
	fds := openFds(t)

	mq := Tap{Name: "ptt-mq", Bridge: "br0", MTU: 1400, Owner: 1000, Group: 1001, MultiQueue: true}
	plain := Tap{Name: "ptt-plain", Bridge: "br0", Owner: -1, Group: -1, Isolated: true, NoHairpin: true}
	for _, tp := range []Tap{mq, plain} {
		idx, err := l.AddTap(tp)
		if err != nil {
			t.Fatal(err)
		}
		tun := tunOf(t, h, tp.Name)
		a := tun.Attrs()
		if a.Index != idx || tun.Mode != unix.IFF_TAP || tun.NonPersist || a.MasterIndex != brIdx || a.Flags&net.FlagUp == 0 {
			t.Errorf("%s: index %d (AddTap said %d) mode %v persistent %v master %d (br0 %d) flags %v", tp.Name, a.Index, idx, tun.Mode, !tun.NonPersist, a.MasterIndex, brIdx, a.Flags)
		}
		if got := tun.Flags&netlink.TUNTAP_MULTI_QUEUE != 0; got != tp.MultiQueue {
			t.Errorf("%s: multi-queue %v, want %v", tp.Name, got, tp.MultiQueue)
		}
		if wantMTU := cmp.Or(tp.MTU, 1500); a.MTU != wantMTU {
			t.Errorf("%s: MTU %d, want %d", tp.Name, a.MTU, wantMTU)
		}
		// The library reads "no owner" as owner 0: read the raw state.
		st, ok, err := n.linkState(tp.Name)
		if err != nil || !ok || st.owner != tp.Owner || st.group != tp.Group {
			t.Errorf("%s: owner %d group %d (%v, %v), want %d %d", tp.Name, st.owner, st.group, ok, err, tp.Owner, tp.Group)
		}
		// No process has it open: up, but no carrier.
		if st.carrier || a.OperState == netlink.OperUp {
			t.Errorf("%s has carrier (operstate %s) with no process attached", tp.Name, a.OperState)
		}
		p, err := h.LinkGetProtinfo(tun)
		if err != nil || p.Isolated != tp.Isolated || p.Hairpin == tp.NoHairpin {
			t.Errorf("%s: port isolated %v hairpin %v (%v), want %v %v", tp.Name, p.Isolated, p.Hairpin, err, tp.Isolated, !tp.NoHairpin)
		}
		if probs := l.CheckTap(tp); len(probs) != 0 {
			t.Errorf("CheckTap(%s) = %q", tp.Name, probs)
		}
	}
	if got := openFds(t); got > fds {
		t.Errorf("open fds %d after AddTap, %d before: AddTap leaks", got, fds)
	}
	// Made in the adapter's namespace, whatever thread called AddTap: not
	// in the machine's own.
	if _, err := netlink.LinkByName("ptt-mq"); !notFound(err) {
		t.Errorf("ptt-mq is visible outside the test's host namespace (err %v)", err)
	}

	// A VM opens the tap: carrier, no IPv6 address of its own
	// (addrgenmode none), and Check still finds nothing wrong.
	vm, err := vmstub.Open(host, plain.Name, net.HardwareAddr{2, 0x42, 10, 70, 0, 9}, netip.MustParsePrefix("10.70.0.9/24"), gw0.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	if st, _, _ := n.linkState(plain.Name); !st.carrier {
		t.Errorf("%s has no carrier with the VM attached", plain.Name)
	}
	if probs := l.CheckTap(plain); len(probs) != 0 {
		t.Errorf("CheckTap(open %s) = %q", plain.Name, probs)
	}
	if err := vm.Ping(gw0.Addr(), 2*time.Second); err != nil {
		t.Errorf("VM on %s pings the bridge's address: %v", plain.Name, err)
	}
	if addrs, _ := h.AddrList(tunOf(t, h, plain.Name), netlink.FAMILY_V6); len(addrs) != 0 {
		t.Errorf("%s has IPv6 addresses %v: addrgenmode none was not set", plain.Name, addrs)
	}

	// Broken from outside: off the bridge and down. Check says so,
	// Repair puts it back (port flags included: leaving the bridge lost
	// them), and the VM's traffic flows again.
	tun := tunOf(t, h, plain.Name)
	if err := h.LinkSetNoMaster(tun); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(tun); err != nil {
		t.Fatal(err)
	}
	probs := l.CheckTap(plain)
	if len(probs) != 2 || !strings.Contains(probs[0], "not a port of bridge br0") || !strings.Contains(probs[1], "down") {
		t.Errorf("CheckTap(broken) = %q, want off the bridge and down", probs)
	}
	idx, fixes, err := l.RepairTap(plain)
	if err != nil || idx != tun.Attrs().Index || len(fixes) != 3 {
		t.Errorf("RepairTap = %d, %v, %v; want index %d and 3 fixes (bridge, port flags, up)", idx, fixes, err, tun.Attrs().Index)
	}
	if probs := l.CheckTap(plain); len(probs) != 0 {
		t.Errorf("CheckTap(repaired) = %q", probs)
	}
	if err := vm.Ping(gw0.Addr(), 2*time.Second); err != nil {
		t.Errorf("VM pings the bridge after the repair: %v", err)
	}
	// What cannot change in place (multi-queue, owner) is made again.
	mq2 := mq
	mq2.MultiQueue, mq2.Owner = false, -1
	if probs := l.CheckTap(mq2); len(probs) != 2 {
		t.Errorf("CheckTap(other multi-queue and owner) = %q", probs)
	}
	if _, fixes, err := l.RepairTap(mq2); err != nil || len(fixes) != 1 || fixes[0].Kind != "tap" {
		t.Errorf("RepairTap(other multi-queue and owner) = %v, %v", fixes, err)
	}
	if probs := l.CheckTap(mq2); len(probs) != 0 {
		t.Errorf("CheckTap(remade) = %q", probs)
	}
	// A deleted tap is made again.
	if err := h.LinkDel(tunOf(t, h, mq2.Name)); err != nil {
		t.Fatal(err)
	}
	if probs := l.CheckTap(mq2); len(probs) != 1 || !strings.Contains(probs[0], "missing") {
		t.Errorf("CheckTap(deleted) = %q", probs)
	}
	if _, fixes, err := l.RepairTap(mq2); err != nil || len(fixes) != 1 {
		t.Errorf("RepairTap(deleted) = %v, %v", fixes, err)
	}
	// Something else with the tap's name is reported, and left alone.
	if probs := l.CheckTap(Tap{Name: "br0", Bridge: "br0"}); len(probs) != 1 || !strings.Contains(probs[0], "is a bridge, not a tap") {
		t.Errorf("CheckTap(br0) = %q", probs)
	}
	if _, _, err := l.RepairTap(Tap{Name: "br0", Bridge: "br0"}); err == nil {
		t.Error("RepairTap(br0) succeeded")
	}

	// DeleteVeths deletes taps by name, the open one too: the VM's
	// reader ends.
	if err := l.DeleteVeths([]string{mq2.Name, plain.Name, "ptt-none"}); err != nil {
		t.Fatal(err)
	}
	if left := hostLinks(t, l); slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, "ptt-") }) {
		t.Errorf("links left after DeleteVeths: %v", left)
	}
	if ls, _ := l.ListLinks("ptt-"); len(ls) != 0 {
		t.Errorf("taps left after DeleteVeths: %v", ls)
	}
	select {
	case <-vm.Done():
		t.Logf("the VM's reader ended: %v", vm.Err())
	case <-time.After(5 * time.Second):
		t.Error("the VM's reader still runs 5 s after its tap was deleted")
	}
	if got := openFds(t); got > fds+1 { // the VM's, until Close
		t.Errorf("open fds %d, want %d (before, and the VM's)", got, fds+1)
	}
}

// Bad input is refused with a clear error and creates nothing; a failure
// after the tap was made leaves nothing either.
func TestKernelTapRefusals(t *testing.T) {
	l, host := newKernelHost(t)
	h := nsHandle(t, host)
	ok := Tap{Name: "ptt-a", Bridge: "br0", Owner: -1, Group: -1}
	if _, err := l.AddTap(ok); err != nil {
		t.Fatal(err)
	}
	before, _ := h.LinkList()
	fds := openFds(t)
	for _, tc := range []struct {
		name string
		tap  func(Tap) Tap
		want string
	}{
		{"empty name", func(t Tap) Tap { t.Name = ""; return t }, "no name given"},
		{"long name", func(t Tap) Tap { t.Name = "ptt-0123456789ab"; return t }, "at most 15"},
		{"template", func(t Tap) Tap { t.Name = "ptt%d"; return t }, "not a valid interface name"},
		{"missing bridge", func(t Tap) Tap { t.Name, t.Bridge = "ptt-b", "br9"; return t }, "create the network first"},
		{"existing tap", func(t Tap) Tap { return t }, "an interface with this name exists"},
		{"the bridge's name", func(t Tap) Tap { t.Name = "br0"; return t }, "an interface with this name exists"},
		// Made, then refused by the kernel: rolled back.
		{"MTU too large", func(t Tap) Tap { t.Name, t.MTU = "ptt-c", 70000; return t }, "join tap ptt-c to bridge br0"},
		{"VLAN without filtering", func(t Tap) Tap { t.Name, t.VLAN = "ptt-d", 10; return t }, "VLAN 10"},
	} {
		if _, err := l.AddTap(tc.tap(ok)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: AddTap err = %v, want one saying %q", tc.name, err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	after, _ := h.LinkList()
	if len(after) != len(before) {
		var names []string
		for _, a := range after {
			names = append(names, a.Attrs().Name)
		}
		t.Errorf("links after refused AddTaps: %v (%d before)", names, len(before))
	}
	if got := openFds(t); got > fds {
		t.Errorf("open fds %d after refused AddTaps, %d before", got, fds)
	}
	// The existing tap was not taken over: still persistent, on br0.
	if probs := l.CheckTap(ok); len(probs) != 0 {
		t.Errorf("CheckTap(existing) after the refusals = %q", probs)
	}
}

// BenchmarkAddTap measures making a VM's tap (AddTap) and deleting it
// (DeleteVeths of one name), per op, reporting each step's median and
// 99th percentile besides the mean of the pair.
//
//	go test -run '^$' -bench AddTap -benchtime 200x ./internal/link/
func BenchmarkAddTap(b *testing.B) {
	for _, mode := range []struct {
		name  string
		apply func(*Tap)
	}{
		{"default", func(*Tap) {}},
		{"owner", func(t *Tap) { t.Owner, t.Group = 1000, 1000 }},
		// 256 queues where a single-queue tap has one (tun_set_iff:
		// MAX_TAP_QUEUES), each with its sysfs entries.
		{"multiqueue", func(t *Tap) { t.MultiQueue = true }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			l := benchHost(b)
			adds := make([]time.Duration, 0, b.N)
			dels := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				tp := Tap{Name: fmt.Sprintf("ptt-b%d", i), Bridge: "br0", MTU: 1500, Owner: -1, Group: -1}
				mode.apply(&tp)
				start := time.Now()
				if _, err := l.AddTap(tp); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := l.DeleteVeths([]string{tp.Name}); err != nil {
					b.Fatal(err)
				}
				adds = append(adds, mid.Sub(start))
				dels = append(dels, time.Since(mid))
			}
			b.StopTimer()
			for _, m := range []struct {
				name string
				d    []time.Duration
			}{{"add", adds}, {"del", dels}} {
				slices.Sort(m.d)
				b.ReportMetric(float64(m.d[len(m.d)/2].Nanoseconds()), m.name+"-p50-ns")
				b.ReportMetric(float64(m.d[len(m.d)*99/100].Nanoseconds()), m.name+"-p99-ns")
			}
		})
	}
}
