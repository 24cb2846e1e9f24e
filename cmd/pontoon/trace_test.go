package main

import (
	"strings"
	"testing"

	"pontoon/internal/model"
)

// The text form: numbered hops, the kernel's answer where it adds to the
// prediction, a mark where it contradicts it, the verdict last.
func TestPrintTrace(t *testing.T) {
	tr := &model.Trace{
		Probe: model.TraceProbe{From: "sandbox a", To: "sandbox c", Src: "10.88.0.2", Dst: "10.95.0.2", Proto: "tcp", DstPort: 80},
		Hops: []model.TraceHop{
			{Kind: model.HopRoute, Where: "sandbox a", Text: "10.95.0.2 via 10.88.0.1 dev eth0 src 10.88.0.2", Kernel: "10.95.0.2 via 10.88.0.1 dev eth0 src 10.88.0.2"},
			{Kind: model.HopNeigh, Where: "sandbox a", Text: "ARP 10.88.0.1 is at 02:42:0a:58:00:01", Kernel: "10.88.0.1 dev eth0 lladdr 02:42:0a:58:00:09 REACHABLE", Differs: true},
			{Kind: model.HopNft, Where: "host", Text: `inet pontoon forward (forward, iif pontoon0, oif ptbr-1): rule isolation "iifname @bridges oifname @bridges drop" → drop`},
		},
		Verdict: model.TraceVerdict{Result: model.VerdictDropped, Rule: "isolation", Sentence: "dropped by pontoon's isolation rule"},
	}
	var b strings.Builder
	printTrace(&b, tr)
	want := `trace sandbox a (10.88.0.2) → sandbox c (10.95.0.2:80/tcp)
  1  sandbox a  route    10.95.0.2 via 10.88.0.1 dev eth0 src 10.88.0.2
! 2  sandbox a  neigh    ARP 10.88.0.1 is at 02:42:0a:58:00:01
                         the kernel differs: 10.88.0.1 dev eth0 lladdr 02:42:0a:58:00:09 REACHABLE
  3  host       nft      inet pontoon forward (forward, iif pontoon0, oif ptbr-1): rule isolation "iifname @bridges oifname @bridges drop" → drop
DROPPED: dropped by pontoon's isolation rule
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTraceArgs(t *testing.T) {
	for _, args := range [][]string{{"trace", "a"}, {"trace", "--from-lan", "203.0.113.2", "a", "b"}, {"trace", "a", "b", "c"}} {
		if _, _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), "needs") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
