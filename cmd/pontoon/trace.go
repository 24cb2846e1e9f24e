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
		format, fromLAN, srcIP, wait, via string
		predict, ipv6                     bool
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

The path is predicted from pontoon's state and its firewall rules, and
each lookup is checked against the kernel (ip route get, ip neigh, the
bridge port, bridge fdb): a hop where the kernel disagrees is marked "!".

Then a real probe follows it: a TCP SYN, a UDP datagram or a ping, sent
from inside the source sandbox (or the host), with the kernel's nftables
tracing switched on for that one packet (a match on its addresses and
ports, in a table made for the trace and deleted after it, also when the
command is interrupted). Every chain of every table that saw it is shown —
other firewalls' included, named by table and chain — next to the
prediction, and any disagreement is listed: another firewall's drop, or
rules that drifted from pontoon's state. --predict skips the probe. A
packet from --from-lan cannot be sent by pontoon: with --wait the trace is
armed for that long, and you send the packet from the outside host.

SOURCE is a sandbox or "host"; with --from-lan ADDRESS the packet comes
from that outside address instead, and only DEST is given. DEST is a
sandbox, "host" (the host's address towards the source) or an IPv4 address,
with an optional port (a port means TCP unless /udp, /sctp) — no port is a
ping (ICMP). The exit status is 1 when the packet is dropped or cannot be
sent, as ping's.`,
		Example: `  pontoon trace a b:80/tcp
  pontoon trace a 198.51.100.2:53/udp
  pontoon trace --from-lan 203.0.113.2 host:8080/tcp
  pontoon trace --from-lan 203.0.113.2 --via ptvx-1234 a:80   # injected into an overlay's tunnel
  pontoon trace a c:80
  pontoon trace a b --src-ip 10.88.0.99      # a forged source: anti-spoofing
  pontoon trace a b --format json
  pontoon trace --from-lan 203.0.113.2 host:8080 --wait 30s   # then connect from 203.0.113.2`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fromLAN != "" {
				return exactArgs(1, "a DEST (the source is --from-lan)")(cmd, args)
			}
			return exactArgs(2, "a SOURCE and a DEST")(cmd, args)
		},
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := model.TraceSpec{FromLAN: fromLAN, Via: via, SrcIP: srcIP, Dst: args[len(args)-1], Wait: wait, IPv6: ipv6}
			if fromLAN == "" {
				spec.Src = args[0]
				spec.Live = !predict
			} else {
				spec.Live = wait != ""
			}
			if predict && wait != "" {
				return fmt.Errorf("--predict sends nothing, so it takes no --wait")
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
			v := tr.Verdict
			if tr.Live != nil && tr.Live.Verdict != nil {
				v = *tr.Live.Verdict
			}
			if v.Result == model.VerdictDropped || v.Result == model.VerdictUnreachable {
				return exitError{code: 1}
			}
			return nil
		},
	}
	addFormatFlag(cmd, &format)
	cmd.Flags().StringVar(&fromLAN, "from-lan", "", "trace a packet arriving from this outside address (then give only DEST)")
	cmd.Flags().StringVar(&via, "via", "", "with --from-lan: the host interface the packet arrives on (an overlay's VXLAN device: a packet out of the tunnel)")
	cmd.Flags().StringVar(&srcIP, "src-ip", "", "a forged source address for the packet from SOURCE (anti-spoofing drops it)")
	cmd.Flags().BoolVar(&predict, "predict", false, "predict only: send no probe")
	cmd.Flags().BoolVarP(&ipv6, "ipv6", "6", false, "trace an IPv6 packet between sandboxes named by name (an address given anywhere decides by itself); IPv6 is predicted only: use with --predict")
	cmd.Flags().StringVar(&wait, "wait", "", "how long the probe's fate is awaited (default 1s); with --from-lan, how long the trace waits for the packet to arrive")
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
	// The last line is the verdict: the kernel's, when it differs from
	// the prediction.
	if l := tr.Live; l != nil && l.Verdict != nil {
		fmt.Fprintf(w, "predicted %s: %s\n", tr.Verdict.Result, tr.Verdict.Sentence)
		fmt.Fprintf(w, "%s: %s\n", strings.ToUpper(l.Verdict.Result), l.Verdict.Sentence)
		return
	}
	fmt.Fprintf(w, "%s: %s\n", strings.ToUpper(tr.Verdict.Result), tr.Verdict.Sentence)
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
