package main

import (
	"fmt"
	"maps"
	"net/netip"
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
		newNetworkRmCmd(g), newNetworkConnectCmd(g), newNetworkDisconnectCmd(g), newNetworkFDBCmd(g))
	return cmd
}

func newNetworkCreateCmd(g *globals) *cobra.Command {
	var (
		spec     model.NetworkSpec
		icc      bool
		masq     bool
		labels   []string
		subnets  []string
		gateways []string
		ranges   []string
		bo       model.BridgeOptions
		hairpin  bool
		mv       model.MacvlanOptions
		ov       model.OverlayOptions
		slice4   int
		slice6   int
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a network (bridge, direct link, macvlan or Open vSwitch)",
		Long: `Create a network: a Linux bridge holding the gateway address, a subnet
to hand addresses out from, NAT to the outside unless --internal.
Without an IPv4 --subnet, a free /24 is picked from the daemon's pool,
skipping prefixes that overlap the host's addresses and routes or another
network. Give --subnet once per family for a dual-stack network (an IPv4
and an IPv6 subnet), or --ipv6 for an IPv6 /64 from the daemon's ULA pool;
--gateway and --ip-range go to the subnet of their family.
A --subnet that overlaps another network, an address of the host or a
connected route of the host (its LAN) is refused: the host would lose its
way to that network and sandboxes would get its addresses. An --internal
network publishes no ports.

Bridge options (--stp, --forward-delay, --ageing, --vlan-filtering,
--hairpin, --multicast-snooping) are set at creation and cannot be changed
on an existing network: remove it and create it again. With --bridge of an
existing bridge they are applied to that bridge. --hairpin=false means a
sandbox can no longer reach its own published ports through the host.
--vlan-filtering needs a kernel with CONFIG_BRIDGE_VLAN_FILTERING; then
'network connect --vlan N' (and sandbox create --vlan) puts an interface in
VLAN N: sandboxes reach at L2 only those of their VLAN, and every sandbox
keeps its gateway.

Drivers (--driver):
  bridge   (default) a Linux bridge per network, a veth pair per sandbox,
           NAT, published ports, anti-spoofing, names on the gateway.
  link     exactly two sandboxes joined by one veth pair: no bridge and
           nothing on the host, a /30 from the pool unless --subnet, no
           gateway unless --gateway names one of the two members (which
           then routes for the other). A third sandbox is refused. Names
           resolve inside each sandbox (127.0.0.11). No ports, no NAT.
  macvlan  each sandbox gets a macvlan of --parent, on that link's own
           segment (the LAN): --subnet is the LAN's, --gateway its router,
           --ip-range the part pontoon may hand out. --macvlan-mode
           bridge|private|vepa|passthru, --vlan N puts the members on an
           802.1Q sub-interface PARENT.N (made and removed with the
           network). The host cannot reach its own macvlans unless --shim
           gives it one of its own. Frames between members and to the LAN
           never pass the host's firewall: no isolation, anti-spoofing,
           --internal or published ports.
  overlay  a network across the hosts of a cluster (pontoon daemon
           --cluster): made on any host, on every host; each host hands
           out addresses from its slice of each --subnet (one per family:
           IPv4 --slice-size, /24; IPv6 --slice-size6, /64) on a bridge of
           its own, and reaches the other hosts' slices through a VXLAN
           device (--vni, default derived from the name), without NAT; the
           underlay is IPv4. --mode host-gw: no VXLAN device, a route per
           host through its underlay address (the hosts share an L2
           segment; a host that does not is reported, not reached; IPv4
           subnets only). Names resolve on every host.
  ovs      an Open vSwitch bridge (userspace datapath) with the same
           endpoint semantics as a Linux bridge — isolation, NAT, ports,
           names, taps, --vlan per sandbox — but no anti-spoofing and no
           --icc=false. The daemon needs --ovsdb.
See docs/drivers.md.`,
		Example: `  pontoon network create app --subnet 10.90.1.0/24 --subnet fd00:1::/64
  pontoon network create web --driver overlay --subnet 10.200.0.0/16 --subnet fd00:200::/48
  pontoon network create wire --driver link
  pontoon network create sw --driver ovs --subnet 10.93.0.0/24
  pontoon network create lan --driver macvlan --parent eth0 --subnet 192.168.1.0/24 --gateway 192.168.1.1 --ip-range 192.168.1.192/27
  pontoon network create six --ipv6
  pontoon network create back --subnet 10.90.1.0/24 --internal
  pontoon network create front --subnet 10.90.2.0/24 --ip-range 10.90.2.128/25 --icc=false
  pontoon network create app --stp --forward-delay 4 --ageing 30`,
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
			if spec.Subnets, err = parseSubnets(subnets, gateways, ranges); err != nil {
				return err
			}
			fs := cmd.Flags()
			if fs.Changed("hairpin") {
				bo.Hairpin = &hairpin
			}
			for _, name := range []string{"stp", "forward-delay", "ageing", "vlan-filtering", "hairpin", "multicast-snooping"} {
				if fs.Changed(name) {
					spec.BridgeOptions = &bo
				}
			}
			if fs.Changed("vni") || fs.Changed("slice-size") || fs.Changed("slice-size6") || fs.Changed("mode") {
				spec.Overlay = &ov
			}
			for _, sz := range []struct {
				flag string
				v6   bool
				bits int
			}{{"slice-size", false, slice4}, {"slice-size6", true, slice6}} {
				if !fs.Changed(sz.flag) || spec.Driver != model.DriverOverlay {
					continue // another driver: the daemon refuses the overlay options
				}
				i := slices.IndexFunc(spec.Subnets, func(s model.Subnet) bool { return s.Prefix.Addr().Is6() == sz.v6 })
				if i < 0 {
					return model.Invalidf("--%s is the size of each host's slice of the %s --subnet: give that --subnet too", sz.flag, map[bool]string{false: "IPv4", true: "IPv6"}[sz.v6])
				}
				ov.Subnets = append(ov.Subnets, model.OverlaySubnet{Prefix: spec.Subnets[i].Prefix, SliceBits: sz.bits})
			}
			for _, name := range []string{"parent", "macvlan-mode", "vlan", "shim"} {
				if fs.Changed(name) {
					spec.Macvlan = &mv
				}
			}
			n, err := g.client().CreateNetwork(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", n.Name, strings.ReplaceAll(n.SubnetString(), " ", ""), strings.ReplaceAll(n.Where(), " ", "-"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&subnets, "subnet", nil, "subnet in CIDR form, e.g. 10.90.1.0/24 or fd00:1::/64 (once per family)")
	f.StringArrayVar(&gateways, "gateway", nil, "gateway address of the subnet of its family (default: the subnet's first host address)")
	f.StringArrayVar(&ranges, "ip-range", nil, "pick addresses automatically only from this sub-range (CIDR) of the subnet of its family; --ip may still ask for any address of the subnet")
	f.BoolVar(&spec.IPv6, "ipv6", false, "give the network an IPv6 subnet too: a /64 of the daemon's ULA pool unless --subnet gives one")
	f.BoolVar(&spec.Internal, "internal", false, "no route out, no NAT, no published ports: sandboxes reach only each other")
	f.IntVar(&spec.MTU, "mtu", 0, "MTU of the bridge and the endpoints (default 1500)")
	f.BoolVar(&icc, "icc", true, "let sandboxes on this network reach each other (false: only the gateway and the outside)")
	f.BoolVar(&masq, "masquerade", true, "source-NAT traffic that leaves the host (default: IPv4 and ULA IPv6 subnets yes, global IPv6 subnets no)")
	f.StringVar(&spec.Bridge, "bridge", "", "name of the bridge (default: ptbr-<id>; an existing bridge is reused and kept)")
	f.StringArrayVar(&labels, "label", nil, "label as key=value (repeatable)")
	f.StringVar(&spec.Driver, "driver", model.DriverBridge, "network driver: bridge, link, macvlan, ovs or overlay")
	f.IntVar(&ov.VNI, "vni", 0, "overlay: the VXLAN network identifier, 1-16777215 (default derived from the name)")
	f.IntVar(&slice4, "slice-size", 0, "overlay: prefix length of each host's slice of the IPv4 --subnet (default 24)")
	f.IntVar(&slice6, "slice-size6", 0, "overlay: prefix length of each host's slice of the IPv6 --subnet (default 64)")
	f.StringVar(&ov.Mode, "mode", "", "overlay: how hosts reach each other's slices: vxlan (default, a VXLAN device) or host-gw (a route per host through its underlay address; the hosts must share an L2 segment)")
	f.StringVar(&mv.Parent, "parent", "", "macvlan: the host link whose segment the sandboxes join (e.g. eth0)")
	f.StringVar(&mv.Mode, "macvlan-mode", "", "macvlan: bridge (default), private, vepa or passthru")
	f.IntVar(&mv.VLAN, "vlan", 0, "macvlan: put the members on the 802.1Q sub-interface PARENT.VLAN (1-4094)")
	f.BoolVar(&mv.Shim, "shim", false, "macvlan: give the host a macvlan of its own on the segment, so that it reaches the members")
	f.BoolVar(&bo.STP, "stp", false, "spanning tree protocol on the bridge (for bridges joined to others; ports forward after 2x the forward delay)")
	f.IntVar(&bo.ForwardDelay, "forward-delay", 0, "STP forward delay in seconds, 2-30 (default 15; needs --stp)")
	f.IntVar(&bo.AgeingTime, "ageing", 0, "seconds a learned MAC address is kept, 10-1000000 (default 300)")
	f.BoolVar(&bo.VLANFiltering, "vlan-filtering", false, "VLAN-aware bridge: interfaces connected with --vlan N reach only their VLAN")
	f.BoolVar(&hairpin, "hairpin", true, "hairpin mode on each port, so that a sandbox reaches its own published ports (false breaks that)")
	f.BoolVar(&bo.MulticastSnooping, "multicast-snooping", false, "IGMP/MLD snooping (each attach then costs more the more sandboxes the network has)")
	return cmd
}

// parseSubnets turns --subnet, --gateway and --ip-range into subnets,
// pairing each gateway and range with the subnet of its family.
func parseSubnets(subnets, gateways, ranges []string) ([]model.Subnet, error) {
	var out []model.Subnet
	for _, s := range subnets {
		p, err := model.ParsePrefix("subnet", s)
		if err != nil {
			return nil, err
		}
		out = append(out, model.Subnet{Prefix: p})
	}
	of := func(what string, a netip.Addr) (*model.Subnet, error) {
		for i := range out {
			if out[i].Prefix.Addr().Is6() == a.Is6() {
				return &out[i], nil
			}
		}
		return nil, model.Invalidf("%s %s has no --subnet of its family: give the subnet it belongs to", what, a)
	}
	for _, g := range gateways {
		a, err := model.ParseAddr("gateway", g)
		if err != nil {
			return nil, err
		}
		sub, err := of("--gateway", a)
		if err != nil {
			return nil, err
		}
		if sub.Gateway.IsValid() {
			return nil, model.Invalidf("two gateways for subnet %s: give one --gateway per subnet", sub.Prefix)
		}
		sub.Gateway = a
	}
	for _, r := range ranges {
		p, err := model.ParsePrefixLoose("ip-range", r)
		if err != nil {
			return nil, err
		}
		sub, err := of("--ip-range", p.Addr())
		if err != nil {
			return nil, err
		}
		if sub.IPRange.IsValid() {
			return nil, model.Invalidf("two ip ranges for subnet %s: give one --ip-range per subnet", sub.Prefix)
		}
		sub.IPRange = p
	}
	return out, nil
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
			t := newTable(cmd, "NAME", "DRIVER", "SUBNET", "GATEWAY", "ON", "INTERNAL", "ICC", "ENDPOINTS")
			for _, n := range nets {
				driver := n.Driver
				if n.Overlay.HostGW() {
					driver += "/" + n.Overlay.Mode // vxlan, the default, is left unsaid
				}
				t.row(n.Name, driver, strings.ReplaceAll(n.SubnetString(), " ", ""), orDash(joinIPs(n.Gateways())), strings.ReplaceAll(n.Where(), " ", "-"),
					strconv.FormatBool(n.Internal), strconv.FormatBool(n.ICC), strconv.Itoa(len(n.Endpoints)))
			}
			if err := t.flush(); err != nil {
				return err
			}
			for _, n := range nets {
				printDrift(cmd, "network "+n.Name, n.Drift)
			}
			return nil
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
		Short:             "Show networks in detail: settings, drift, and every endpoint with its counters",
		Args:              minArgs(1, "NAME"),
		ValidArgsFunction: completeNetworks(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectEach(cmd, args, g.client().Network, func(all []*model.NetworkInfo) error {
				if format == "json" {
					return printJSON(cmd, all)
				}
				return printNetworks(cmd, all)
			})
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

// printNetworks prints networks as `network inspect` does: the network's
// settings and drift, then a table of its endpoints with their counters
// ("-" without a host end to count on).
func printNetworks(cmd *cobra.Command, all []*model.NetworkInfo) error {
	w := cmd.OutOrStdout()
	for i, n := range all {
		if i > 0 {
			fmt.Fprintln(w)
		}
		kv := newTable(cmd)
		kv.row("Name:", n.Name)
		kv.row("ID:", n.ID)
		kv.row("Driver:", n.Driver)
		if n.Overlay != nil {
			line := "mode " + n.Overlay.ModeName()
			for _, s := range n.Overlay.Subnets {
				line += fmt.Sprintf("  subnet %s slice /%d", s.Prefix, s.SliceBits)
			}
			kv.row("Overlay:", fmt.Sprintf("%s  vni %d", line, n.Overlay.VNI))
		}
		if n.Bridge != "" {
			kv.row("Bridge:", n.Bridge+map[bool]string{true: " (adopted, kept on rm)", false: ""}[n.BridgeAdopted])
		}
		if m := n.Macvlan; m != nil {
			line := "parent " + m.Parent + "  mode " + m.Mode
			if m.VLAN != 0 {
				line += fmt.Sprintf("  vlan %d (%s)", m.VLAN, m.Link)
			}
			if m.Shim {
				line += "  shim " + model.ShimName(n.ID) + " " + joinIPs(m.ShimAddrs)
			}
			kv.row("Macvlan:", line)
		}
		for _, sub := range n.Subnets {
			gw := "none"
			if sub.Gateway.IsValid() {
				gw = sub.Gateway.String()
			}
			line := sub.Prefix.String() + "  gateway " + gw
			if sub.IPRange.IsValid() {
				line += "  ip-range " + sub.IPRange.String()
			}
			line += "  masquerade " + strconv.FormatBool(sub.Masquerade)
			kv.row("Subnet:", line)
		}
		kv.row("Internal:", strconv.FormatBool(n.Internal))
		kv.row("ICC:", strconv.FormatBool(n.ICC))
		kv.row("MTU:", strconv.Itoa(n.MTU))
		if n.Driver == model.DriverBridge {
			kv.row("Bridge options:", n.BridgeOptions.String())
		}
		for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
			kv.row("Label:", k+"="+n.Labels[k])
		}
		for _, d := range n.Drift {
			kv.row("Drift:", "✗ "+d)
		}
		clusterRows(kv, n)
		if err := kv.flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, "Endpoints (RX and TX as the sandbox sees them, counted by the host end):")
		cols := []string{"  SANDBOX", "IFACE", "IP", "MAC", "HOST-IF", "HOST-IFINDEX"}
		if n.BridgeOptions.VLANs() {
			cols = append(cols, "VLAN")
		}
		t := newTable(cmd, append(cols, "RX", "TX")...)
		for _, ep := range n.Endpoints {
			row := []string{"  " + ep.Sandbox, ep.IfName, addrList(ep.Addresses), ep.MAC, orDash(ep.HostIf), strconv.Itoa(ep.HostIfIndex)}
			if n.BridgeOptions.VLANs() {
				row = append(row, strconv.Itoa(max(ep.VLAN, 1)))
			}
			rx, tx := "-", "-"
			if s := ep.Stats; s != nil {
				rx, tx = counterCell(s.RxBytes, s.RxPackets, s.RxDropped, s.RxErrors), counterCell(s.TxBytes, s.TxPackets, s.TxDropped, s.TxErrors)
			}
			t.row(append(row, rx, tx)...)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return nil
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
  pontoon network connect app db --alias database
  pontoon network connect back a --mac 02:42:0a:5a:01:0a`,
		Args:              exactArgs(2, "NETWORK SANDBOX"),
		ValidArgsFunction: completeNetworkThenSandbox(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Sandbox = args[1]
			ep, err := g.client().Connect(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", ep.IfName, addrList(ep.Addresses), ep.MAC)
			return nil
		},
	}
	var ip, ip6 string
	var ports []string
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) (err error) {
		if err := checkVLANFlag(cmd.Flags(), req.VLAN); err != nil {
			return err
		}
		if req.MAC, err = parseMACFlag(cmd.Flags(), req.MAC); err != nil {
			return err
		}
		if req.IPs, err = parseIPs(ip, ip6); err != nil {
			return err
		}
		req.Ports, err = parsePorts(ports)
		return err
	}
	cmd.Flags().StringVar(&ip, "ip", "", "static IPv4 address, anywhere in the subnet (default: the next free one in the ip-range)")
	cmd.Flags().StringVar(&ip6, "ip6", "", "static IPv6 address, anywhere in the IPv6 subnet")
	cmd.Flags().StringArrayVar(&req.Aliases, "alias", nil, "extra DNS name on this network (repeatable)")
	cmd.Flags().IntVar(&req.VLAN, "vlan", 0, "VLAN (1-4094) of the interface, on a network created with --vlan-filtering")
	addMACFlag(cmd, &req.MAC, "MAC of the interface (as Docker's --mac-address, also accepted), unique on the network (default: derived from its address)")
	cmd.Flags().StringArrayVarP(&ports, "publish", "p", nil, "publish a port on the host: [hostIP:]hostPort[-end]:port[-end][/tcp|udp|sctp], [::1]:8080:80 for IPv6 (repeatable)")
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

// joinIPs renders addresses as one table cell: "10.90.1.1,fd00:1::1".
// joinIPs renders addresses as one table cell, leaving out zero ones (a
// subnet without a gateway).
func joinIPs(ips []netip.Addr) string {
	out := make([]string, 0, len(ips))
	for _, a := range ips {
		if a.IsValid() {
			out = append(out, a.String())
		}
	}
	return strings.Join(out, ",")
}

// orDash is s, or "-" for an empty table cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// addrList renders an endpoint's addresses with their lengths as one
// table cell: "10.90.1.5/24,fd00:1::5/64".
func addrList(as []model.Address) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Addr.String()
	}
	return strings.Join(out, ",")
}

// parseIPs parses --ip (IPv4) and --ip6 (IPv6); empty ones are left out.
func parseIPs(ip, ip6 string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range []struct {
		flag, val string
		v6        bool
	}{{"--ip", ip, false}, {"--ip6", ip6, true}} {
		if f.val == "" {
			continue
		}
		a, err := model.ParseAddr(f.flag, f.val)
		if err != nil {
			return nil, err
		}
		if a.Is6() != f.v6 {
			other := map[bool]string{true: "--ip", false: "--ip6"}[f.v6]
			return nil, model.Invalidf("%s %s is of the other family: give it with %s", f.flag, a, other)
		}
		out = append(out, a)
	}
	return out, nil
}

// parsePorts parses -p specs once, at the edge: the API carries them
// structured.
func parsePorts(specs []string) ([]model.PortMapping, error) {
	var out []model.PortMapping
	for _, s := range specs {
		m, err := model.ParsePortMapping(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
