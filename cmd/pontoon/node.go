package main

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "The nodes of the cluster this daemon is part of (pontoon daemon --cluster)",
	}
	cmd.AddCommand(newNodeLsCmd(g))
	return cmd
}

func newNodeLsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the cluster's nodes: underlay address, slices of the overlay networks, last seen",
		Long: `List the cluster's live nodes (those whose record in etcd is kept alive):
their underlay address (the VXLAN tunnels' endpoint), their slice of each
overlay network, when they started and when they were last seen (their
lease's last renewal, to the second). A node that dies disappears once its
lease expires (--node-ttl, 15 s by default); its slices stay, for when it
comes back. When this node cannot reach etcd, or lost its membership, its
HEALTH says so and the list is the nodes as it last saw them; its routes,
neighbours and FDB entries stay as they were meanwhile.`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			nodes, err := g.client().Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(cmd, nodes)
			}
			t := newTable(cmd, "NODE", "UNDERLAY", "SLICES", "STARTED", "LAST SEEN", "HEALTH")
			for _, n := range nodes {
				var sl []string
				for _, net := range slices.Sorted(maps.Keys(n.Slices)) {
					sl = append(sl, net+"="+n.Slices[net].String())
				}
				name := n.Name
				if n.Self {
					name += " (this)"
				}
				seen := "-"
				if !n.LastSeen.IsZero() {
					seen = time.Since(n.LastSeen).Round(time.Second).String() + " ago"
				}
				health := "ok"
				if n.Health != "" {
					health = n.Health
				}
				t.row(name, n.Underlay.String(), orDash(strings.Join(sl, " ")), n.Started.Format(time.RFC3339), seen, health)
			}
			return t.flush()
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}
