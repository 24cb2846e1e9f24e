package firewall

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// A trace session in a fresh namespace: it arms tracing for one 5-tuple,
// reads the kernel's trace events of pontoon's chains (parsed from
// NFT_MSG_TRACE), leaves other packets alone, and Stop leaves the ruleset
// as it found it. SweepTraces removes what a dead daemon left.
func TestKernelTraceSession(t *testing.T) {
	ns := testutil.NewNetns(t)
	syncIn(t, ns, State{Networks: []Network{defaultNet}})
	before := runIn(t, ns, "nft", "list", "ruleset")
	lo := netip.MustParseAddr("127.0.0.1")

	var evs []TraceEvent
	var name, during string
	if err := testutil.InNetns(t, ns, func() error {
		sess, err := NewFake().StartTrace(context.Background(), TraceMatch{Dst: lo, Proto: "udp", DPort: 9999})
		if err != ErrNoTracing || sess != nil {
			return fmt.Errorf("the fake traced: %v", err)
		}
		var f nft
		sess, err = f.StartTrace(context.Background(), TraceMatch{Src: lo, Dst: lo, Proto: "udp", DPort: 9999})
		if err != nil {
			return err
		}
		defer sess.Stop()
		name = sess.Name()
		send := func(port int) error {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: lo.AsSlice(), Port: port})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("probe"))
			return err
		}
		// Another port first: it must not be traced.
		if err := send(9998); err != nil {
			return err
		}
		if err := send(9999); err != nil {
			return err
		}
		deadline := time.After(2 * time.Second)
	read:
		for {
			select {
			case ev := <-sess.Events():
				evs = append(evs, ev)
				if ev.Table == TableName && ev.Chain == chainGuard && ev.Type == "policy" {
					break read // the packet came back in through lo: the last chain
				}
			case <-deadline:
				break read
			}
		}
		out, err := osexec.Command("nft", "list", "tables").CombinedOutput() // inherits this thread's namespace
		during = string(out)
		if err != nil {
			return err
		}
		return sess.Stop()
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(during, "table inet "+name) || !strings.Contains(during, "table bridge "+name) {
		t.Errorf("trace tables %s not in the ruleset while tracing:\n%s", name, during)
	}
	var lines []string
	for _, ev := range evs {
		if src, _, proto, _, ok := ev.IPv4(); ok {
			if _, dport, _ := ev.Ports(); src != lo || proto != 17 || dport != 9999 {
				t.Errorf("an event of another packet: %+v", ev)
			}
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s", ev.Family, ev.Table, ev.Chain, ev.Type, ev.Verdict))
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"inet " + name + " output rule continue", // the trace rule itself
		"inet pontoon output policy accept",      // published ports: no mapping for 9999
		"inet pontoon postrouting policy accept",
		"inet pontoon loopback-guard policy accept", // back in through lo: lo may carry 127.0.0.1
	} {
		if !strings.Contains(got, want) {
			t.Errorf("trace events lack %q:\n%s", want, got)
		}
	}
	if after := runIn(t, ns, "nft", "list", "ruleset"); after != before {
		t.Errorf("ruleset after the trace:\n%s\nbefore:\n%s", after, before)
	}

	// Tables a dead daemon left are swept; others are not touched.
	runIn(t, ns, "nft", "add", "table", "inet", TraceTablePrefix+"dead")
	runIn(t, ns, "nft", "add", "table", "bridge", TraceTablePrefix+"dead")
	var n int
	if err := testutil.InNetns(t, ns, func() (err error) {
		var f nft
		n, err = f.SweepTraces(context.Background())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if after := runIn(t, ns, "nft", "list", "ruleset"); n != 2 || after != before {
		t.Errorf("sweep deleted %d tables; ruleset:\n%s", n, after)
	}
}
