package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"pontoon/internal/model"
)

// printRouting prints, under a sandbox's endpoints, the routing table of
// each interface and the policy-routing rules that send replies out of
// the interface their request came in on (see model.Endpoint.SourceRules),
// from the records: what `ip rule` and `ip route show table N` in the
// sandbox would show of pontoon's. Only for sandboxes with such rules: on
// one network, everything is in the main table.
func printRouting(cmd *cobra.Command, sb *model.SandboxInfo) error {
	tables := false
	for _, ep := range sb.Endpoints {
		tables = tables || ep.Table != 0
	}
	if !tables {
		return nil
	}
	fmt.Fprintln(cmd.OutOrStdout(), "Routing (replies leave by the interface their request came in on):")
	t := newTable(cmd)
	for _, ep := range sb.Endpoints {
		if ep.Table == 0 {
			what := "table main"
			if ep.Primary {
				what += "  (its gateways are the default routes)"
			}
			t.row("  "+ep.IfName, what)
			continue
		}
		table := "table " + strconv.Itoa(ep.Table)
		rules := ep.SourceRules()
		if len(rules) == 0 {
			t.row("  "+ep.IfName, table, "no rule: no address")
		}
		for i, r := range rules {
			if i == 0 {
				t.row("  "+ep.IfName, table, "rule: "+r)
			} else {
				t.row("  ", "", "rule: "+r)
			}
		}
	}
	return t.flush()
}

// printCounters prints one line per endpoint with its counters, as the
// sandbox sees them (the daemon reads them from the host end, turned
// round). An endpoint without a host end (link, macvlan) has none: the
// sandbox's own are a command away.
func printCounters(cmd *cobra.Command, sb *model.SandboxInfo) error {
	if len(sb.Endpoints) == 0 {
		return nil
	}
	fmt.Fprintln(cmd.OutOrStdout(), "Counters (as the sandbox sees them, counted by the host end):")
	t := newTable(cmd)
	for _, ep := range sb.Endpoints {
		s := ep.Stats
		switch {
		case s != nil:
			t.row("  "+ep.IfName,
				"RX "+humanBytes(s.RxBytes), count(s.RxPackets, "packet"), count(s.RxDropped, "dropped"), count(s.RxErrors, "error"),
				"TX "+humanBytes(s.TxBytes), count(s.TxPackets, "packet"), count(s.TxDropped, "dropped"), count(s.TxErrors, "error"))
		case ep.HostIf == "":
			t.row("  "+ep.IfName, fmt.Sprintf("none: no host end to count on (pontoon exec %s -- ip -s link show %s)", sb.Name, ep.IfName))
		default:
			t.row("  "+ep.IfName, "-")
		}
	}
	return t.flush()
}

// counterCell is one direction's counters as one table cell (`network
// inspect`): "1.5 KiB, 12 packets", with drops and errors only when there
// are some: "3 MiB, 2200 packets, 2 dropped, 1 error".
func counterCell(bytes, packets, dropped, errors uint64) string {
	s := humanBytes(bytes) + ", " + count(packets, "packet")
	if dropped > 0 {
		s += ", " + count(dropped, "dropped")
	}
	if errors > 0 {
		s += ", " + count(errors, "error")
	}
	return s
}

// count is "1 packet", "2 packets", "0 dropped".
func count(n uint64, what string) string {
	if n != 1 && what != "dropped" {
		what += "s"
	}
	return strconv.FormatUint(n, 10) + " " + what
}

// humanBytes renders a byte count in binary units, as `ip -h -s link`
// does: "980 B", "1.2 KiB", "3.4 MiB", "15 GiB" (three significant
// digits at most).
func humanBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, u := float64(n), -1
	for v >= 1023.5 && u < len(units)-1 { // 1023.7 KiB would print as 1024 KiB
		v /= 1024
		u++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if v >= 10 {
		s = strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strings.TrimSuffix(s, ".0") + " " + units[u:u+1] + "iB"
}
