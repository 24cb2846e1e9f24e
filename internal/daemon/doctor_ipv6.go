package daemon

import (
	"strconv"
	"strings"

	"pontoon/internal/api"
	"pontoon/internal/link"
	"pontoon/internal/model"
)

// wantsIPv6 reports whether a network has an IPv6 subnet.
func wantsIPv6(n *model.Network) bool { _, ok := n.Subnet6(); return ok }

// ipv6 checks what networks with an IPv6 subnet need from the host: IPv6
// there and on, IPv6 forwarding, and uplinks that still take router
// advertisements while the host forwards (see link's SetIPv6Forward for
// why forwarding and RAs are tied).
func (d *doctor) ipv6(nets []*model.NetworkInfo) []api.Finding {
	var want []string
	for _, n := range nets {
		if wantsIPv6(&n.Network) {
			want = append(want, n.Name)
		}
	}
	h, err := d.link.IPv6Host()
	if err != nil {
		return []api.Finding{finding(api.LevelWarn, "ipv6", "cannot read the host's IPv6 settings: %v", err)}
	}
	return ipv6Findings(h, want)
}

// ipv6Findings judges host h for the networks named in want (those with
// an IPv6 subnet).
func ipv6Findings(h link.IPv6Host, want []string) []api.Finding {
	nets := "networks " + strings.Join(want, ", ") + " have"
	if len(want) == 1 {
		nets = "network " + want[0] + " has"
	}
	// Problems that only matter when a network wants IPv6 are reported
	// as info otherwise.
	level := func(l string) string {
		if len(want) == 0 {
			return api.LevelInfo
		}
		return l
	}

	if !h.Available {
		if len(want) == 0 {
			return []api.Finding{finding(api.LevelInfo, "ipv6", "the kernel has no IPv6 (booted with ipv6.disable=1?): networks can have IPv4 subnets only")}
		}
		return []api.Finding{finding(api.LevelError, "ipv6", "%s an IPv6 subnet but the kernel has no IPv6 (booted with ipv6.disable=1?): their sandboxes have no IPv6; boot without ipv6.disable=1, or recreate them without an IPv6 subnet", nets)}
	}
	var out []api.Finding
	switch {
	case h.Disabled && len(want) > 0:
		out = append(out, finding(api.LevelError, "ipv6", "%s an IPv6 subnet but IPv6 is disabled on the host (net.ipv6.conf.all.disable_ipv6 is 1): no link has IPv6, their bridges and sandboxes neither; sysctl -w net.ipv6.conf.all.disable_ipv6=0", nets))
	case h.Disabled:
		out = append(out, finding(api.LevelInfo, "ipv6", "IPv6 is disabled on the host (net.ipv6.conf.all.disable_ipv6 is 1): a network with an IPv6 subnet would not work"))
	case h.DisabledForNew:
		out = append(out, finding(level(api.LevelWarn), "ipv6", "net.ipv6.conf.default.disable_ipv6 is 1: links made from now on have no IPv6, so a bridge made for a network with an IPv6 subnet (a new one, or one self-healing makes again) gets no IPv6 gateway; sysctl -w net.ipv6.conf.default.disable_ipv6=0"))
	default:
		out = append(out, finding(api.LevelOK, "ipv6", "IPv6 is on"))
	}

	// Forwarding. Turned on without accept_ra=2 on the uplinks first, the
	// kernel deletes the host's RA-learned default routes: the fix says so.
	switch {
	case len(want) == 0:
		out = append(out, finding(api.LevelOK, "ipv6_forward", "no network has an IPv6 subnet: IPv6 forwarding is not needed (net.ipv6.conf.all.forwarding is %s)", sysctlBool(h.Forwarding)))
	case !h.Forwarding:
		var cmds []string
		for _, u := range h.Uplinks {
			if u.AcceptRA == 1 {
				cmds = append(cmds, "sysctl -w "+link.IPv6ConfName(u.Name, "accept_ra")+"=2")
			}
		}
		first := ""
		if len(cmds) > 0 {
			first = ", after accept_ra=2 on the uplinks that take router advertisements (or the kernel deletes the default routes the host learned from them)"
		}
		cmds = append(cmds, "sysctl -w net.ipv6.conf.all.forwarding=1")
		out = append(out, finding(api.LevelError, "ipv6_forward", "net.ipv6.conf.all.forwarding is 0 but %s an IPv6 subnet: their sandboxes cannot reach beyond their bridge over IPv6; pontoon turns it on for them, so something turned it off; turn it on%s: %s", nets, first, strings.Join(cmds, "; ")))
	default:
		out = append(out, finding(api.LevelOK, "ipv6_forward", "net.ipv6.conf.all.forwarding is 1 (%s an IPv6 subnet)", nets))
	}

	// Router advertisements on the uplinks.
	n := len(out)
	for _, u := range h.Uplinks {
		if !u.RAsIgnored() {
			continue
		}
		fix := "sysctl -w " + link.IPv6ConfName(u.Name, "accept_ra") + "=2"
		switch u.DefaultRoute6 {
		case "ra":
			out = append(out, finding(api.LevelWarn, "accept_ra", "uplink %s has accept_ra=1 and forwards IPv6, so the kernel ignores router advertisements on it: its IPv6 default route, learned from them, is not renewed and expires, and the host and IPv6 sandboxes lose their way out; %s", u.Name, fix))
		case "":
			out = append(out, finding(level(api.LevelWarn), "accept_ra", "uplink %s has accept_ra=1 and forwards IPv6, so the kernel ignores router advertisements on it: if its IPv6 default route is meant to come from them, that is why it has none; %s", u.Name, fix))
		default:
			out = append(out, finding(api.LevelInfo, "accept_ra", "uplink %s ignores router advertisements (accept_ra=1 while it forwards IPv6); its IPv6 default route is set by %q, not learned from them, so nothing depends on them (to take them anyway: %s)", u.Name, u.DefaultRoute6, fix))
		}
	}
	if len(out) == n {
		switch {
		case len(h.Uplinks) == 0:
			out = append(out, finding(api.LevelOK, "accept_ra", "no uplink with IPv6 (no link has a default route)"))
		default:
			var each []string
			for _, u := range h.Uplinks {
				each = append(each, u.Name+" accept_ra="+strconv.Itoa(u.AcceptRA)+" forwarding="+sysctlBool(u.Forwarding))
			}
			out = append(out, finding(api.LevelOK, "accept_ra", "no uplink ignores router advertisements (%s)", strings.Join(each, ", ")))
		}
	}
	return out
}

func sysctlBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
