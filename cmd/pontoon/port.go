package main

import (
	"github.com/spf13/cobra"
)

func newPortCmd(g *globals) *cobra.Command {
	var format string
	list := func(cmd *cobra.Command, sandbox string) error {
		ps, err := g.client().Ports(cmd.Context(), sandbox)
		if err != nil {
			return err
		}
		if format == "json" {
			return printJSON(cmd, ps)
		}
		t := newTable(cmd, "SANDBOX", "NETWORK", "MAPPING", "TO", "REACHABLE FROM")
		for _, p := range ps {
			t.row(p.Sandbox, p.Network, p.Mapping.String(), joinIPs(p.IPs), p.Reachable)
		}
		return t.flush()
	}
	cmd := &cobra.Command{
		Use:   "port [SANDBOX]",
		Short: "Show published ports (of one sandbox, or `port ls` for all)",
		Long: `Show published ports: each mapping, the sandbox address it leads to, and
from where it is reachable (the LAN, the host, other sandboxes; a mapping
bound to 127.0.0.1 only from the host), as the firewall's rules decide it.
Sandboxes on --internal networks reach no published port, and ports are
not published from --internal networks.`,
		Example:           "  pontoon port web\n  pontoon port ls",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb := ""
			if len(args) == 1 {
				sb = args[0]
			}
			return list(cmd, sb)
		},
	}
	addFormatFlag(cmd, &format)
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List every published port on the host",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return list(cmd, "") },
	}
	addFormatFlag(ls, &format)
	cmd.AddCommand(ls)
	return cmd
}
