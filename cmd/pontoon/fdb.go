package main

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"pontoon/internal/model"
)

// `network fdb` is its own command rather than a flag of `network
// inspect`: it reads something else (the kernel's live tables, not the
// records), prints other tables, has its own JSON shape and route, and
// is named as bridge(8) names the table it shows.
func newNetworkFDBCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "fdb NETWORK",
		Short: "Show what a network's bridge learned: MACs by port and sandbox, and the host's neighbours",
		Long: `Show a network's layer 2 tables on this host, as brctl showmacs, bridge
fdb and ip neigh would, with the sandbox behind each entry:

- the MACs its bridge learned from frames (and static ones), each with the
  port it is behind (a sandbox's host end, a VM's tap), that port's sandbox
  and interface, and how long ago the bridge last saw a frame from it
  (entries are forgotten after the bridge's ageing time, 300 s unless
  network create --ageing said otherwise);
- the host's neighbour entries (ARP, NDP) on the bridge: address, MAC,
  state and the sandbox that has the address.

An overlay network in VXLAN mode also shows its VXLAN device: one entry
per other node (its VTEP MAC and underlay address), and the neighbour
entry of each node's slice. Everything is read from the host's namespace;
nothing is changed and no sandbox is entered. A network without a bridge
of its own (driver link, macvlan or ovs) is refused with where to look.`,
		Example: `  pontoon network fdb pontoon
  pontoon network fdb app --format json`,
		Args:              exactArgs(1, "NETWORK"),
		ValidArgsFunction: completeNetworks(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			fdb, err := g.client().NetworkFDB(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(cmd, fdb)
			}
			return printFDB(cmd, fdb)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func printFDB(cmd *cobra.Command, fdb *model.NetworkFDB) error {
	w := cmd.OutOrStdout()
	for i, d := range fdb.Devices {
		if i > 0 {
			fmt.Fprintln(w)
		}
		vxlan := d.Kind == "vxlan"
		if vxlan {
			fmt.Fprintf(w, "VXLAN device %s: the other nodes' VTEPs\n", d.Name)
		} else {
			fmt.Fprintf(w, "Bridge %s: MACs by port\n", d.Name)
		}
		if len(d.Entries) == 0 {
			if vxlan {
				fmt.Fprintln(w, "  (none: no other node has a slice of the network)")
			} else {
				fmt.Fprintln(w, "  (none learned: a MAC shows once its sandbox sent a frame, and goes after the ageing time)")
			}
		} else if vxlan {
			t := newTable(cmd, "  MAC", "DST", "NODE", "STATE")
			for _, e := range d.Entries {
				dst := "-"
				if e.Dst.IsValid() {
					dst = e.Dst.String()
				}
				t.row("  "+e.MAC, dst, dash(e.Node), e.State)
			}
			if err := t.flush(); err != nil {
				return err
			}
		} else {
			vlans := slices.ContainsFunc(d.Entries, func(e model.FDBEntry) bool { return e.VLAN != 0 })
			head := []string{"  MAC", "PORT", "SANDBOX", "IFACE"}
			if vlans {
				head = append(head, "VLAN")
			}
			t := newTable(cmd, append(head, "STATE", "AGE")...)
			for _, e := range d.Entries {
				row := []string{"  " + e.MAC, e.Port, dash(e.Sandbox), dash(e.IfName)}
				if vlans {
					vlan := "-"
					if e.VLAN != 0 {
						vlan = strconv.Itoa(e.VLAN)
					}
					row = append(row, vlan)
				}
				age := "-"
				if e.State == "dynamic" || e.State == "stale" {
					age = (time.Duration(e.AgeSeconds * float64(time.Second))).Round(time.Second).String()
				}
				t.row(append(row, e.State, age)...)
			}
			if err := t.flush(); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "Neighbours of the host on %s:\n", d.Name)
		if len(d.Neighbours) == 0 {
			fmt.Fprintln(w, "  (none)")
			continue
		}
		var t *table
		if vxlan {
			t = newTable(cmd, "  IP", "MAC", "STATE", "NODE")
		} else {
			t = newTable(cmd, "  IP", "MAC", "STATE", "SANDBOX", "IFACE")
		}
		for _, n := range d.Neighbours {
			if vxlan {
				t.row("  "+n.IP.String(), dash(n.MAC), n.State, dash(n.Node))
			} else {
				t.row("  "+n.IP.String(), dash(n.MAC), n.State, dash(n.Sandbox), dash(n.IfName))
			}
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return nil
}
