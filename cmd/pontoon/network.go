package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

func newNetworkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "network",
		Aliases: []string{"net"},
		Short:   "Create, list, inspect and remove networks; connect sandboxes to them",
	}
	cmd.AddCommand(newNetworkCreateCmd(g), newNetworkLsCmd(g), newNetworkInspectCmd(g),
		newNetworkRmCmd(g), newNetworkConnectCmd(g), newNetworkDisconnectCmd(g))
	return cmd
}

func newNetworkCreateCmd(g *globals) *cobra.Command {
	var (
		spec   model.NetworkSpec
		icc    bool
		masq   bool
		labels []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a bridge network",
		Long: `Create a network: a Linux bridge holding the gateway address, a subnet
to hand addresses out from, NAT to the outside unless --internal.
Without --subnet, a free /24 is picked from the daemon's pool, skipping
prefixes that overlap the host's addresses and routes or another network.
A --subnet that overlaps another network, an address of the host or a
connected route of the host (its LAN) is refused: the host would lose its
way to that network and sandboxes would get its addresses. An --internal
network publishes no ports.`,
		Example: `  pontoon network create back --subnet 10.90.1.0/24 --internal
  pontoon network create front --subnet 10.90.2.0/24 --ip-range 10.90.2.128/25 --icc=false`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			if cmd.Flags().Changed("icc") {
				spec.ICC = &icc
			}
			if cmd.Flags().Changed("masquerade") {
				spec.Masquerade = &masq
			}
			var err error
			if spec.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			n, err := g.client().CreateNetwork(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", n.Name, n.Subnet, n.Bridge)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Subnet, "subnet", "", "IPv4 subnet in CIDR form, e.g. 10.90.1.0/24")
	f.StringVar(&spec.Gateway, "gateway", "", "gateway address (default: the subnet's first address)")
	f.StringVar(&spec.IPRange, "ip-range", "", "pick addresses automatically only from this sub-range (CIDR); --ip may still ask for any address of the subnet")
	f.BoolVar(&spec.Internal, "internal", false, "no route out, no NAT, no published ports: sandboxes reach only each other")
	f.IntVar(&spec.MTU, "mtu", 0, "MTU of the bridge and the endpoints (default 1500)")
	f.BoolVar(&icc, "icc", true, "let sandboxes on this network reach each other (false: only the gateway and the outside)")
	f.BoolVar(&masq, "masquerade", true, "source-NAT traffic that leaves the host")
	f.StringVar(&spec.Bridge, "bridge", "", "name of the bridge (default: ptbr-<id>; an existing bridge is reused and kept)")
	f.StringArrayVar(&labels, "label", nil, "label as key=value (repeatable)")
	f.StringVar(&spec.Driver, "driver", model.DriverBridge, "network driver (bridge)")
	return cmd
}

func parseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not key=value", l)
		}
		out[k] = v
	}
	return out, nil
}

func newNetworkLsCmd(g *globals) *cobra.Command {
	var (
		format   string
		quiet    bool
		filterIn []string
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilters(filterIn, "name", "label", "driver")
			if err != nil {
				return err
			}
			all, err := g.client().Networks(cmd.Context())
			if err != nil {
				return err
			}
			nets := []*model.NetworkInfo{}
			for _, n := range all {
				if f.match("name", func(v string) bool { return strings.Contains(n.Name, v) }) &&
					f.match("label", matchLabel(n.Labels)) &&
					f.match("driver", func(v string) bool { return n.Driver == v }) {
					nets = append(nets, n)
				}
			}
			if quiet {
				for _, n := range nets {
					fmt.Fprintln(cmd.OutOrStdout(), n.Name)
				}
				return nil
			}
			if format == "json" {
				return printJSON(cmd, nets)
			}
			t := newTable(cmd, "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE", "INTERNAL", "ICC", "ENDPOINTS")
			for _, n := range nets {
				t.row(n.Name, n.Driver, n.Subnet.String(), n.Gateway.String(), n.Bridge,
					strconv.FormatBool(n.Internal), strconv.FormatBool(n.ICC), strconv.Itoa(len(n.Endpoints)))
			}
			return t.flush()
		},
	}
	addFormatFlag(cmd, &format)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the names")
	addFilterFlag(cmd, &filterIn, "only networks that match: name=PART, label=KEY[=VALUE], driver=D (repeatable: one key's values are alternatives, keys must all match)")
	return cmd
}

func newNetworkInspectCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:               "inspect NAME...",
		Short:             "Show networks in detail",
		Args:              minArgs(1, "NAME"),
		ValidArgsFunction: completeNetworks(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			all := []*model.NetworkInfo{}
			failed := forEachName(cmd, args, func(name string) error {
				n, err := g.client().Network(cmd.Context(), name)
				if err == nil {
					all = append(all, n)
				}
				return err
			})
			if stop := stopped(failed); stop != nil {
				return stop
			}
			if format == "json" {
				if err := printJSON(cmd, all); err != nil {
					return err
				}
				return failed
			}
			w := cmd.OutOrStdout()
			for i, n := range all {
				if i > 0 {
					fmt.Fprintln(w)
				}
				kv := newTable(cmd)
				kv.row("Name:", n.Name)
				kv.row("ID:", n.ID)
				kv.row("Driver:", n.Driver)
				kv.row("Bridge:", n.Bridge+map[bool]string{true: " (adopted, kept on rm)", false: ""}[n.BridgeAdopted])
				kv.row("Subnet:", n.Subnet.String())
				kv.row("Gateway:", n.Gateway.String())
				if n.IPRange.IsValid() {
					kv.row("IP range:", n.IPRange.String())
				}
				kv.row("Internal:", strconv.FormatBool(n.Internal))
				kv.row("ICC:", strconv.FormatBool(n.ICC))
				kv.row("Masquerade:", strconv.FormatBool(n.Masquerade))
				kv.row("MTU:", strconv.Itoa(n.MTU))
				for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
					kv.row("Label:", k+"="+n.Labels[k])
				}
				if err := kv.flush(); err != nil {
					return err
				}
				fmt.Fprintln(w, "Endpoints:")
				t := newTable(cmd, "  SANDBOX", "IFACE", "IP", "MAC", "HOST-IF", "HOST-IFINDEX")
				for _, ep := range n.Endpoints {
					t.row("  "+ep.Sandbox, ep.IfName, fmt.Sprintf("%s/%d", ep.IP, ep.Prefix), ep.MAC, ep.HostIf, strconv.Itoa(ep.HostIfIndex))
				}
				if err := t.flush(); err != nil {
					return err
				}
			}
			return failed
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newNetworkRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove networks (refused while sandboxes are connected, unless --force)",
		Long: `Remove networks: the bridge (unless it was adopted with --bridge), the
firewall rules and the DNS resolver go with it. A network with connected
sandboxes is refused unless --force, which disconnects them first. With
several names, each one that can be is removed; each failure is reported,
and the exit status is 1 if any failed.`,
		Args:              minArgs(1, "NAME"),
		ValidArgsFunction: completeNetworks(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachName(cmd, args, func(name string) error {
				err := g.client().RemoveNetwork(cmd.Context(), name, force)
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), name)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "disconnect every sandbox first")
	return cmd
}

func newNetworkConnectCmd(g *globals) *cobra.Command {
	var req api.ConnectRequest
	cmd := &cobra.Command{
		Use:   "connect NETWORK SANDBOX",
		Short: "Attach a sandbox to a network (a new interface ethN inside it)",
		Example: `  pontoon network connect back a --ip 10.90.1.10
  pontoon network connect app db --alias database`,
		Args:              exactArgs(2, "NETWORK SANDBOX"),
		ValidArgsFunction: completeNetworkThenSandbox(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Sandbox = args[1]
			ep, err := g.client().Connect(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s/%d\t%s\n", ep.IfName, ep.IP, ep.Prefix, ep.MAC)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.IP, "ip", "", "static address, anywhere in the subnet (default: the next free one in the ip-range)")
	cmd.Flags().StringArrayVar(&req.Aliases, "alias", nil, "extra DNS name on this network (repeatable)")
	cmd.Flags().StringArrayVarP(&req.Ports, "publish", "p", nil, "publish a port on the host: [hostIP:]hostPort[-end]:port[-end][/tcp|udp|sctp] (repeatable)")
	return cmd
}

func newNetworkDisconnectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "disconnect NETWORK SANDBOX",
		Short:             "Detach a sandbox from a network",
		Args:              exactArgs(2, "NETWORK SANDBOX"),
		ValidArgsFunction: completeNetworkThenSandbox(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().Disconnect(cmd.Context(), args[0], args[1])
		},
	}
}
