package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"pontoon/internal/topoview"
)

func newTopologyCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "topology [--format text|json|dot|svg]",
		Short: "Draw the host: networks → bridge → ports → veth pairs → sandboxes",
		Long: `Draw the host as pontoon sees it now: every network with its bridge (and
ifindex), each bridge port — the host end of a veth pair — with its peer
inside a sandbox, addresses, MACs, DNS names and published ports. Where the
kernel disagrees with pontoon's state (a bridge down, a host end missing or
off its bridge, a namespace gone, the firewall incomplete) the object is
marked ✗ (red in dot and svg). It reads the host side only; ` + "`pontoon doctor`" + `
also looks inside every sandbox.

--format dot prints Graphviz input (dot -Tpng); --format svg draws the
picture itself, without Graphviz. Each port's counters (bytes, packets,
drops and errors as its sandbox sees them) are in --format json only, as
"stats": the drawings show what is connected to what, which does not
change with traffic; ` + "`pontoon network inspect NAME`" + ` shows them per endpoint.`,
		Example: "  pontoon topology\n  pontoon topology --format svg > host.svg",
		Args:    cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			switch format {
			case "text", "json", "dot", "svg":
				return nil
			}
			return fmt.Errorf("--format %q is not known: use text, json, dot or svg", format)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := g.client().Topology(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				return printJSON(cmd, t)
			case "dot":
				return topoview.DOT(out, t)
			case "svg":
				return topoview.SVG(out, t)
			}
			return topoview.Text(out, t)
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text, json, dot or svg")
	return cmd
}
