package main

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"pontoon/internal/model"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "The nodes of the cluster this daemon is part of (pontoon daemon --cluster)",
	}
	cmd.AddCommand(newNodeLsCmd(g), newNodeInspectCmd(g), newNodeRmCmd(g))
	return cmd
}

func newNodeLsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the cluster's nodes: underlay address, VTEP MAC, slices of the overlay networks, last seen",
		Long: `List the cluster's live nodes (those whose record in etcd is kept alive):
their underlay address (the VXLAN tunnels' endpoint), their VTEP MAC (the
MAC of all of their VXLAN devices, as their record has it), their slice of each
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
			t := newTable(cmd, "NODE", "UNDERLAY", "VTEP MAC", "SLICES", "STARTED", "LAST SEEN", "HEALTH")
			for _, n := range nodes {
				var sl []string
				for _, net := range slices.Sorted(maps.Keys(n.Slices)) {
					sl = append(sl, net+"="+prefixesString(n.Slices[net]))
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
				t.row(name, n.Underlay.String(), orDash(n.VTEPMAC), orDash(strings.Join(sl, " ")), n.Started.Format(time.RFC3339), seen, health)
			}
			return t.flush()
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newNodeInspectCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect NAME...",
		Short: "Show cluster nodes in detail: underlay, VTEP MAC, slices per overlay network, static addresses",
		Long: `Show live nodes of the cluster: their underlay address, their VTEP MAC
(one per node: the MAC of all of their VXLAN devices, as their record in
etcd has it, which the other nodes program), when they started and were
last seen, and per overlay network their slice and the addresses their
sandboxes hold by a static --ip.
A node that is not live is an error that says whether it still holds
slices.`,
		Args: minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectEach(cmd, args, g.client().Node, func(all []*model.ClusterNodeInfo) error {
				if format == "json" {
					return printJSON(cmd, all)
				}
				return printNodes(cmd, all)
			})
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

// printNodes prints node inspect's text: one block per node.
func printNodes(cmd *cobra.Command, all []*model.ClusterNodeInfo) error {
	w := cmd.OutOrStdout()
	for i, n := range all {
		if i > 0 {
			fmt.Fprintln(w)
		}
		kv := newTable(cmd)
		name := n.Name
		if n.Self {
			name += " (this)"
		}
		kv.row("Name:", name)
		kv.row("Underlay:", n.Underlay.String())
		kv.row("VTEP MAC:", orDash(n.VTEPMAC))
		kv.row("Started:", n.Started.Format(time.RFC3339))
		seen := "-"
		if !n.LastSeen.IsZero() {
			seen = n.LastSeen.Format(time.RFC3339)
		}
		kv.row("Last seen:", seen)
		nets := map[string]bool{}
		for k := range n.Slices {
			nets[k] = true
		}
		for k := range n.StaticIPs {
			nets[k] = true
		}
		for _, net := range slices.Sorted(maps.Keys(nets)) {
			line := "slice " + orDash(prefixesString(n.Slices[net]))
			if st := n.StaticIPs[net]; len(st) > 0 {
				var l []string
				for _, ip := range slices.SortedFunc(maps.Keys(st), func(a, b netip.Addr) int { return a.Compare(b) }) {
					l = append(l, ip.String()+"="+st[ip])
				}
				line += "  static " + strings.Join(l, " ")
			}
			kv.row("Network "+net+":", line)
		}
		if err := kv.flush(); err != nil {
			return err
		}
	}
	return nil
}

// prefixesString is a node's slices in one word, IPv4 first:
// "10.200.1.0/24,fd00:200:0:1::/64"; "" for none.
func prefixesString(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}

// clusterRows adds an overlay network's cluster part to `network inspect`
// (its overlay line is the network's own): each node holding a slice, its
// static addresses.
func clusterRows(kv *table, n *model.NetworkInfo) {
	c := n.Cluster
	if c == nil {
		return
	}
	if c.Error != "" {
		kv.row("Cluster:", "✗ "+c.Error)
	}
	for _, cn := range c.Nodes {
		name := cn.Node
		if cn.Self {
			name += " (this)"
		}
		line := name + "  slice " + prefixesString(cn.Slices)
		if cn.Live {
			line += "  underlay " + cn.Underlay.String()
			if cn.VTEPMAC != "" {
				line += "  vtep " + cn.VTEPMAC
			}
		} else {
			line += "  not live"
		}
		kv.row("Node:", line)
	}
	for _, ip := range slices.SortedFunc(maps.Keys(c.StaticIPs), func(a, b netip.Addr) int { return a.Compare(b) }) {
		kv.row("Static:", ip.String()+"  "+c.StaticIPs[ip])
	}
}

func newNodeRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "forget"},
		Short:   "Forget nodes gone for good: release their slices, names and static addresses",
		Long: `Forget nodes that will not come back. A node whose daemon stops stays
in the cluster until its lease expires (--node-ttl), and its slice of each
overlay network, its sandboxes' names and its static addresses stay in
etcd after that, for when it returns (its containers may still be
running). node rm releases them: another node may then claim the slices,
and no resolver answers with the node's addresses any more. A live node
(or this one) is refused.`,
		Args: minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachName(cmd, args, func(name string) error {
				f, err := g.client().ForgetNode(cmd.Context(), name)
				if err != nil {
					return err
				}
				var sl []string
				for _, net := range slices.Sorted(maps.Keys(f.Slices)) {
					sl = append(sl, net+"="+strings.Join(f.Slices[net], ","))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: released slices %s, %d names, %d static addresses\n", name, orDash(strings.Join(sl, " ")), f.Names, f.Static)
				return nil
			})
		},
	}
}
