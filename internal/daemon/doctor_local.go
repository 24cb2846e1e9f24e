package daemon

import (
	"context"
	"strings"
	"time"

	"github.com/google/nftables"

	"pontoon/internal/api"
	"pontoon/internal/firewall"
)

// upstreams checks that the upstream resolvers answer: without them,
// sandboxes resolve pontoon's names but nothing else.
func (d *doctor) upstreams() []api.Finding {
	if d.dns == nil {
		return nil
	}
	hs := d.dns.ProbeUpstreams()
	if len(hs) == 0 {
		return []api.Finding{finding(api.LevelWarn, "dns-upstreams", "no upstream resolver is configured: sandboxes resolve pontoon's names only; give --dns ip[:port],… or a --resolv-conf with nameservers")}
	}
	var out []api.Finding
	var ok []string
	for _, h := range hs {
		if h.Err != nil {
			out = append(out, finding(api.LevelWarn, "dns-upstreams", "upstream resolver %s does not answer (%v): names outside pontoon's networks fail or are slow in sandboxes; fix --dns or the host's resolv.conf, then send the daemon SIGHUP", h.Upstream, h.Err))
			continue
		}
		ok = append(ok, h.Upstream+" ("+h.RTT.Round(time.Millisecond/10).String()+")")
	}
	if len(ok) > 0 {
		out = append(out, finding(api.LevelOK, "dns-upstreams", "upstream resolvers answer: %s", strings.Join(ok, ", ")))
	}
	return out
}

// LocalDoctor runs, in the caller's network namespace, the checks that need
// no daemon, for when none answers on socket: it says so, and what it can
// see of the host — forwarding, br_netfilter, other firewalls' forward
// drops, pontoon's tables left by an earlier run.
func LocalDoctor(ctx context.Context, socket string) []api.Finding {
	d := &doctor{}
	out := []api.Finding{finding(api.LevelError, "daemon", "no daemon answers on %s: start it with `pontoon daemon` (its log says why an earlier start failed); the checks below ran without it, in this shell's network namespace", socket)}
	for _, f := range d.forwarding() {
		if f.Level == api.LevelError {
			f.Level = api.LevelInfo
			f.Message = "net.ipv4.ip_forward is off: the daemon turns it on when it starts"
		}
		out = append(out, f)
	}
	out = append(out, d.brNetfilter()...)
	if chains, err := firewall.ForeignForwardDrop(ctx); err != nil {
		out = append(out, finding(api.LevelWarn, "foreign-firewall", "cannot list nftables chains: %v (are you root?)", err))
	} else {
		for _, c := range chains {
			out = append(out, finding(api.LevelWarn, "foreign-firewall", "%s drops forwarded traffic by policy: pontoon's networks cannot reach each other or the outside unless the daemon finds Docker's DOCKER-USER chain there", c))
		}
	}
	if conn, err := nftables.New(); err == nil {
		if t, err := conn.ListTableOfFamily(firewall.TableName, nftables.TableFamilyINet); err == nil && t != nil {
			out = append(out, finding(api.LevelInfo, "firewall", "table inet %s from an earlier run is in place: sandboxes keep their network while the daemon is down", firewall.TableName))
		}
	}
	return out
}
