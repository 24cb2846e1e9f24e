package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"pontoon/internal/model"
)

func newTraceCmd(g *globals) *cobra.Command {
	var (
		format, fromLAN, srcIP string
	)
	cmd := &cobra.Command{
		Use:   "trace SOURCE DEST[:PORT][/PROTO]",
		Short: "Show where a packet goes, hop by hop, and which rule decides its fate",
		Long: `Show the path of a packet: the source sandbox's route and ARP entry, its
eth0 and the host end of its veth (name, ifindex), the bridge port and the
bridge's FDB lookup, every netfilter hook it crosses (the bridge hooks, and
the IP hooks br_netfilter sends bridged frames through) with the rule that
decided and any NAT rewrite, the host's routing decision and the
destination. The last line is the verdict: where the packet ends, why, and
for a drop what would change it.

The path is predicted from pontoon's state and its firewall rules (no
packet is sent), and each lookup is checked against the kernel (ip route
get, ip neigh, the bridge port, bridge fdb): a hop where the kernel
disagrees is marked.

SOURCE is a sandbox or "host"; with --from-lan ADDRESS the packet comes
from that outside address instead, and only DEST is given. DEST is a
sandbox, "host" (the host's address towards the source) or an IPv4 address,
with an optional port (a port means TCP unless /udp, /sctp) — no port is a
ping (ICMP).`,
		Example: `  pontoon trace a b:80/tcp
  pontoon trace a 198.51.100.2:53/udp
  pontoon trace --from-lan 203.0.113.2 host:8080/tcp
  pontoon trace a c:80
  pontoon trace a b --src-ip 10.88.0.99      # a forged source: anti-spoofing
  pontoon trace a b --format json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fromLAN != "" {
				return exactArgs(1, "a DEST (the source is --from-lan)")(cmd, args)
			}
			return exactArgs(2, "a SOURCE and a DEST")(cmd, args)
		},
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := model.TraceSpec{FromLAN: fromLAN, SrcIP: srcIP, Dst: args[len(args)-1]}
			if fromLAN == "" {
				spec.Src = args[0]
			}
			tr, err := g.client().Trace(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if format == "json" {
				err = printJSON(cmd, tr)
			} else {
				printTrace(cmd.OutOrStdout(), tr)
			}
			if err != nil {
				return err
			}
			// Like ping: a packet that does not arrive is a failure.
			if tr.Verdict.Result == model.VerdictDropped || tr.Verdict.Result == model.VerdictUnreachable {
				return exitError{code: 1}
			}
			return nil
		},
	}
	addFormatFlag(cmd, &format)
	cmd.Flags().StringVar(&fromLAN, "from-lan", "", "trace a packet arriving from this outside address (then give only DEST)")
	cmd.Flags().StringVar(&srcIP, "src-ip", "", "a forged source address for the packet from SOURCE (anti-spoofing drops it)")
	return cmd
}

// printTrace prints the hops, numbered, then the verdict.
func printTrace(w io.Writer, tr *model.Trace) {
	p := tr.Probe
	dst := p.Dst
	if p.DstPort != 0 {
		dst = fmt.Sprintf("%s:%d", p.Dst, p.DstPort)
	}
	fmt.Fprintf(w, "trace %s (%s) → %s (%s/%s)\n", p.From, p.Src, p.To, dst, p.Proto)
	width := 0
	for _, h := range tr.Hops {
		width = max(width, len(h.Where))
	}
	for i, h := range tr.Hops {
		mark := " "
		if h.Differs || h.Seen == "differs" {
			mark = "!"
		}
		fmt.Fprintf(w, "%s%2d  %-*s  %-7s  %s%s\n", mark, i+1, width, h.Where, h.Kind, h.Text, seen(h.Seen))
		indent := strings.Repeat(" ", 5+width+2+7+2)
		switch {
		case h.Differs:
			fmt.Fprintf(w, "%sthe kernel differs: %s\n", indent, h.Kernel)
		case h.Kernel != "" && h.Kernel != h.Text:
			fmt.Fprintf(w, "%skernel: %s\n", indent, h.Kernel)
		}
	}
	if l := tr.Live; l != nil {
		printLive(w, l)
	}
	fmt.Fprintf(w, "%s: %s\n", strings.ToUpper(tr.Verdict.Result), tr.Verdict.Sentence)
	if l := tr.Live; l != nil && l.Verdict != nil {
		fmt.Fprintf(w, "LIVE %s: %s\n", strings.ToUpper(l.Verdict.Result), l.Verdict.Sentence)
	}
}

func seen(s string) string {
	switch s {
	case "yes":
		return "  (seen)"
	case "no":
		return "  (not seen)"
	case "differs":
		return "  (the kernel did otherwise)"
	}
	return ""
}

func printLive(w io.Writer, l *model.TraceLive) {
	fmt.Fprintf(w, "live: %s; answer: %s (%.1f ms)\n", l.Probe, l.Answer, l.TookMS)
	if l.Error != "" {
		fmt.Fprintf(w, "live: %s\n", l.Error)
	}
	if len(l.Tables) > 0 {
		fmt.Fprintf(w, "live: tables that saw it: %s\n", strings.Join(l.Tables, ", "))
	}
	for _, e := range l.Events {
		fmt.Fprintf(w, "  trace: %s\n", e)
	}
	switch {
	case l.Agrees:
		fmt.Fprintln(w, "live: the kernel agrees with the prediction")
	default:
		for _, d := range l.Differences {
			fmt.Fprintf(w, "live: differs: %s\n", d)
		}
	}
}
