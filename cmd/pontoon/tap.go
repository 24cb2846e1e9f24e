package main

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"pontoon/internal/model"
)

// Taps for VMs: a VM's sandbox (kind vm) has no namespace; its endpoint is
// a tap device on the network's bridge, which the hypervisor opens. The
// address and MAC are reserved for the VM and reported for its
// configuration; anti-spoofing and DNS cover it as they cover a sandbox.

func newTapCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tap",
		Short: "Create, list and remove tap devices for virtual machines",
		Long: `A tap device puts a virtual machine on a pontoon network beside the
sandboxes: a port of the network's bridge that the hypervisor opens
(QEMU: -netdev tap,ifname=TAP,script=no,downscript=no). pontoon reserves
the VM's address and MAC and reports them; configure them in the guest
(or let its DHCP client fail: pontoon runs no DHCP server). The VM's name
resolves on the network like a sandbox's, and anti-spoofing drops frames
from the tap that carry another MAC or address.`,
	}
	cmd.AddCommand(newTapCreateCmd(g), newTapLsCmd(g), newTapRmCmd(g))
	return cmd
}

// lookupID resolves a user or group given by name or number; "" is -1
// (anyone).
func lookupID(what, s string, byName func(string) (string, error)) (int, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < -1 {
			return 0, fmt.Errorf("%s %d: give a name, an ID, or -1 for anyone", what, n)
		}
		return n, nil
	}
	id, err := byName(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", what, s, err)
	}
	return strconv.Atoi(id)
}

func newTapCreateCmd(g *globals) *cobra.Command {
	var (
		tap          model.TapSpec
		a            model.AttachSpec
		owner, group string
		ip, ip6, mac string
	)
	cmd := &cobra.Command{
		Use:   "create NAME --network NET",
		Short: "Create a tap device for a VM on a bridge network",
		Long: `Create a tap device for the VM NAME on a bridge network: the tap is a port
of the network's bridge (with its isolation, hairpin and VLAN settings),
persistent until 'pontoon tap rm NAME', owned by --owner and --group
(default root only; -1: anyone who can open /dev/net/tun). The VM's
address (--ip, else the next free one) and MAC (--mac, else derived from
the address) are reserved and printed, with the gateway and the resolver.`,
		Example: `  pontoon tap create vm1 --network app
  pontoon tap create vm1 --network app --owner qemu --multi-queue --ip 10.90.1.50
  qemu-system-x86_64 ... -netdev tap,id=n0,ifname=ptt-1a2b3c4d5e,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=02:42:0a:5a:01:32`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if tap.Owner, err = lookupID("owner", owner, func(s string) (string, error) {
				u, err := user.Lookup(s)
				if err != nil {
					return "", err
				}
				return u.Uid, nil
			}); err != nil {
				return err
			}
			if tap.Group, err = lookupID("group", group, func(s string) (string, error) {
				gr, err := user.LookupGroup(s)
				if err != nil {
					return "", err
				}
				return gr.Gid, nil
			}); err != nil {
				return err
			}
			if a.Network == "" {
				return errors.New("give the network: pontoon tap create NAME --network NET")
			}
			if a.IPs, err = parseIPs(ip, ip6); err != nil {
				return err
			}
			a.MAC = mac
			sb, err := g.client().CreateSandbox(cmd.Context(), model.SandboxSpec{Name: args[0], Tap: &tap, Networks: []model.AttachSpec{a}})
			if err != nil {
				return err
			}
			printTap(cmd, sb)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.Network, "network", "", "the bridge network to put the VM on")
	f.StringVar(&tap.Name, "name", "", "name of the tap device (default ptt-<hash>)")
	f.StringVar(&owner, "owner", "", "user (name or ID) the hypervisor runs as; -1: anyone (default root only)")
	f.StringVar(&group, "group", "", "group (name or ID) that may open the tap; -1: anyone (default root only)")
	f.BoolVar(&tap.MultiQueue, "multi-queue", false, "one queue per vCPU (QEMU's queues=N); the hypervisor must ask for it too")
	f.StringVar(&ip, "ip", "", "the VM's IPv4 address (default: the next free one)")
	f.StringVar(&ip6, "ip6", "", "the VM's IPv6 address (default: the next free one)")
	f.StringVar(&mac, "mac", "", "the VM's MAC (default: derived from its address)")
	f.IntVar(&a.VLAN, "vlan", 0, "VLAN (1-4094) of the tap, on a network created with --vlan-filtering")
	return cmd
}

// printTap prints what a VM needs: the tap, MAC, address, gateway and
// resolver.
func printTap(cmd *cobra.Command, sb *model.SandboxInfo) {
	t := newTable(cmd)
	t.row("Name:", sb.Name)
	for _, ep := range sb.Endpoints {
		t.row("Tap:", ep.HostIf)
		t.row("Network:", ep.Network)
		t.row("MAC:", ep.MAC)
		for _, a := range ep.Addresses {
			t.row("Address:", a.Addr.String())
			if a.Gateway.IsValid() {
				t.row("Gateway:", a.Gateway.String())
				t.row("DNS:", a.Gateway.String())
			}
		}
		if o := ep.Tap; o != nil {
			t.row("Owner:", idString(o.Owner)+":"+idString(o.Group))
			t.row("Multi-queue:", strconv.FormatBool(o.MultiQueue))
		}
	}
	_ = t.flush()
}

func idString(id int) string {
	if id < 0 {
		return "anyone"
	}
	return strconv.Itoa(id)
}

func newTapLsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List VMs' tap devices",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := g.client().Sandboxes(cmd.Context())
			if err != nil {
				return err
			}
			vms := []*model.SandboxInfo{}
			for _, sb := range all {
				if sb.Kind == model.KindVM {
					vms = append(vms, sb)
				}
			}
			if format == "json" {
				return printJSON(cmd, vms)
			}
			t := newTable(cmd, "NAME", "TAP", "NETWORK", "MAC", "IP", "GATEWAY", "OWNER")
			for _, sb := range vms {
				for _, ep := range sb.Endpoints {
					own := "-"
					if o := ep.Tap; o != nil {
						own = idString(o.Owner) + ":" + idString(o.Group)
					}
					gws := make([]string, 0, len(ep.Addresses))
					for _, a := range ep.Addresses {
						if a.Gateway.IsValid() {
							gws = append(gws, a.Gateway.String())
						}
					}
					t.row(sb.Name, ep.HostIf, ep.Network, ep.MAC, addrList(ep.Addresses), orDash(strings.Join(gws, ",")), own)
				}
			}
			return t.flush()
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newTapRmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:               "rm NAME...",
		Aliases:           []string{"remove"},
		Short:             "Remove VMs' tap devices (a VM still holding one loses its network)",
		Args:              minArgs(1, "NAME"),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachName(cmd, args, func(name string) error {
				sb, err := g.client().Sandbox(cmd.Context(), name)
				if err != nil {
					return err
				}
				if sb.Kind != model.KindVM {
					return fmt.Errorf("%s is a sandbox, not a VM's tap: remove it with `pontoon sandbox rm %s`", name, name)
				}
				if err := g.client().RemoveSandbox(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
				return nil
			})
		},
	}
	return cmd
}
