package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"

	"pontoon/internal/api"
	"pontoon/internal/dns"
	"pontoon/internal/engine"
	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/netns"
)

// doctor checks the host for what breaks pontoon's networks, without
// changing anything. Each check says what it found and, when something is
// wrong, what to do.
type doctor struct {
	eng      *engine.Engine
	link     link.Interface
	netnsDir string
	dns      *dns.Server // nil: no upstream check
}

func finding(level, check, msg string, a ...any) api.Finding {
	return api.Finding{Level: level, Check: check, Message: fmt.Sprintf(msg, a...)}
}

func (d *doctor) run(ctx context.Context) ([]api.Finding, error) {
	nets, err := d.eng.Networks()
	if err != nil {
		return nil, err
	}
	sbs, err := d.eng.Sandboxes()
	if err != nil {
		return nil, err
	}
	var out []api.Finding
	out = append(out, d.firewall(ctx)...)
	out = append(out, d.bridges(nets)...)
	out = append(out, d.hostGW()...)
	out = append(out, d.endpoints(ctx, sbs)...)
	out = append(out, d.forwarding()...)
	out = append(out, d.ipv6(nets)...)
	out = append(out, d.brNetfilter()...)
	out = append(out, d.mtu(nets)...)
	out = append(out, d.rpFilter(ctx, sbs)...)
	out = append(out, d.leaks()...)
	out = append(out, d.healing()...)
	out = append(out, d.hostOverlap(nets)...)
	out = append(out, d.upstreams()...)
	out = append(out, d.cluster()...)
	return out, nil
}

// cluster: this node's standing in its cluster (nothing on a single host).
func (d *doctor) cluster() []api.Finding {
	in, health := d.eng.ClusterHealth()
	switch {
	case !in:
		return nil
	case health != "":
		return []api.Finding{finding(api.LevelError, "cluster", "%s; check that etcd runs and this host reaches it (the --cluster endpoints)", health)}
	}
	return []api.Finding{finding(api.LevelOK, "cluster", "a member of the cluster; etcd answers")}
}

func (d *doctor) firewall(ctx context.Context) []api.Finding {
	var out []api.Finding
	conn, err := nftables.New()
	if err != nil {
		return []api.Finding{finding(api.LevelError, "firewall", "cannot read nftables: %v", err)}
	}
	if reason := d.eng.FirewallDrift(ctx); reason != "" {
		out = append(out, finding(api.LevelError, "firewall", "drift: %s; self-healing restores it when nftables reports changes — if this persists, see the daemon's log and restart it", reason))
	} else {
		out = append(out, finding(api.LevelOK, "firewall", "table inet %s is in place", firewall.TableName))
	}
	chains, err := firewall.ForeignForwardDrop(ctx)
	if err != nil {
		return append(out, finding(api.LevelWarn, "foreign-firewall", "cannot list other tables' chains: %v", err))
	}
	for _, c := range chains {
		if c == "ip filter FORWARD" && dockerUserExists(conn) {
			out = append(out, finding(api.LevelInfo, "foreign-firewall", "%s drops forwarded traffic by policy (Docker); pontoon keeps accept rules for its networks in DOCKER-USER", c))
			continue
		}
		out = append(out, finding(api.LevelWarn, "foreign-firewall", "%s drops forwarded traffic by policy and has no user hook pontoon knows: pontoon's networks cannot reach each other or the outside through it; accept traffic in and out of pontoon's bridges there", c))
	}
	return out
}

func dockerUserExists(conn *nftables.Conn) bool {
	t, err := conn.ListTableOfFamily("filter", nftables.TableFamilyIPv4)
	if err != nil {
		return false
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false
	}
	for _, c := range chains {
		if c.Table.Name == t.Name && c.Name == "DOCKER-USER" {
			return true
		}
	}
	return false
}

func readSysctl(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (d *doctor) forwarding() []api.Finding {
	if v := readSysctl("/proc/sys/net/ipv4/ip_forward"); v != "1" {
		return []api.Finding{finding(api.LevelError, "ip_forward", "net.ipv4.ip_forward is %q: sandboxes cannot reach the outside; pontoon turns it on at start-up, so something turned it off (sysctl -w net.ipv4.ip_forward=1, or restart the daemon)", v)}
	}
	return []api.Finding{finding(api.LevelOK, "ip_forward", "net.ipv4.ip_forward is 1")}
}

func (d *doctor) brNetfilter() []api.Finding {
	v := readSysctl("/proc/sys/net/bridge/bridge-nf-call-iptables")
	if v == "1" {
		return []api.Finding{finding(api.LevelInfo, "br_netfilter", "br_netfilter is on (bridge-nf-call-iptables=1): frames bridged between sandboxes also pass the ip/inet forward hooks; pontoon accepts them first, but another firewall's forward drop applies to them too")}
	}
	return []api.Finding{finding(api.LevelOK, "br_netfilter", "bridged frames do not pass the IP forward hooks (bridge-nf-call-iptables is %q)", v)}
}

func (d *doctor) mtu(nets []*model.NetworkInfo) []api.Finding {
	ups, err := d.link.Uplinks()
	if err != nil {
		return []api.Finding{finding(api.LevelWarn, "mtu", "cannot list uplinks: %v", err)}
	}
	if len(ups) == 0 {
		return []api.Finding{finding(api.LevelInfo, "mtu", "the host has no default route: nothing to compare network MTUs with")}
	}
	up := ups[0]
	for _, u := range ups[1:] {
		if u.MTU < up.MTU {
			up = u
		}
	}
	var out []api.Finding
	for _, n := range nets {
		if n.Internal || n.MTU <= up.MTU {
			continue
		}
		out = append(out, finding(api.LevelWarn, "mtu", "network %s has MTU %d but the uplink %s has %d: large packets to the outside are dropped or fragmented; recreate the network with --mtu %d", n.Name, n.MTU, up.Name, up.MTU, up.MTU))
	}
	if len(out) == 0 {
		out = append(out, finding(api.LevelOK, "mtu", "no network's MTU exceeds the uplink's (%s, %d)", up.Name, up.MTU))
	}
	return out
}

// rpFilter looks at sandboxes on several networks with strict
// reverse-path filtering. pontoon's source rules ("from IP lookup TABLE")
// make the reverse-path lookup succeed on every interface, so strict
// filtering is harmless while they are in place (checked with traffic: a
// routed source reaches both interfaces); it drops requests arriving on a
// secondary interface once a rule or table route is missing.
func (d *doctor) rpFilter(ctx context.Context, sbs []*model.SandboxInfo) []api.Finding {
	var out []api.Finding
	for _, sb := range sbs {
		if len(sb.Endpoints) < 2 || sb.Kind == model.KindHost {
			continue
		}
		strict := ""
		_ = netns.Do(sb.Netns, func() error {
			all := readSysctl("/proc/sys/net/ipv4/conf/all/rp_filter")
			for _, ep := range sb.Endpoints {
				dev := readSysctl(filepath.Join("/proc/sys/net/ipv4/conf", ep.IfName, "rp_filter"))
				if all == "1" || dev == "1" {
					strict = ep.IfName
					return nil
				}
			}
			return nil
		})
		if strict == "" {
			continue
		}
		var routing []string
		if probs, err := d.eng.CheckSandbox(ctx, sb.Name); err == nil {
			for _, p := range probs {
				if strings.Contains(p.Problem, "rule") || strings.Contains(p.Problem, "table") {
					routing = append(routing, p.Problem)
				}
			}
		}
		if len(routing) > 0 {
			out = append(out, finding(api.LevelWarn, "rp_filter", "sandbox %s is on %d networks with strict rp_filter (%s) and its source routing drifted (%s): requests from routed sources are dropped; reconnect the network, or set rp_filter to 2 (loose) in the sandbox", sb.Name, len(sb.Endpoints), strict, strings.Join(routing, "; ")))
		} else {
			out = append(out, finding(api.LevelInfo, "rp_filter", "sandbox %s is on %d networks with strict rp_filter (%s); pontoon's source rules keep every interface answering", sb.Name, len(sb.Endpoints), strict))
		}
	}
	if len(out) == 0 {
		out = append(out, finding(api.LevelOK, "rp_filter", "no multi-homed sandbox filters reverse paths strictly"))
	}
	return out
}

func (d *doctor) leaks() []api.Finding {
	var out []api.Finding
	known := d.eng.KnownKernelObjects()
	links, err := d.link.ListLinks(model.HostVethPrefix, model.BridgePrefix)
	if err != nil {
		return []api.Finding{finding(api.LevelWarn, "leaks", "cannot list links: %v", err)}
	}
	for _, l := range links {
		if !known[l.Name] {
			out = append(out, finding(api.LevelWarn, "leaks", "link %s has pontoon's name but is unknown to its state: the daemon deletes it at its next start (or: ip link del %s)", l.Name, l.Name))
		}
	}
	pins, _ := netns.Pins(d.netnsDir)
	for _, p := range pins {
		if !known[filepath.Clean(p)] {
			out = append(out, finding(api.LevelWarn, "leaks", "namespace pin %s is unknown to pontoon's state: the daemon removes it at its next start", p))
		}
	}
	if len(out) == 0 {
		out = append(out, finding(api.LevelOK, "leaks", "every pontoon link and namespace pin belongs to a network or sandbox"))
	}
	return out
}
