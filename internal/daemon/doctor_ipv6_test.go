package daemon

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"pontoon/internal/api"
	"pontoon/internal/link"
	"pontoon/internal/model"
)

func TestIPv6Findings(t *testing.T) {
	ra := link.IPv6Uplink{Name: "eth0", AcceptRA: 1, Forwarding: true, DefaultRoute6: "ra"}
	type want struct{ check, level, says string }
	for _, c := range []struct {
		name  string
		h     link.IPv6Host
		nets  []string
		wants []want
	}{
		{"healthy dual-stack host",
			link.IPv6Host{Available: true, Forwarding: true, Uplinks: []link.IPv6Uplink{{Name: "eth0", AcceptRA: 2, Forwarding: true, DefaultRoute6: "ra"}}},
			[]string{"app"},
			[]want{{"ipv6", api.LevelOK, "IPv6 is on"}, {"ipv6_forward", api.LevelOK, "is 1 (network app has an IPv6 subnet)"}, {"accept_ra", api.LevelOK, "eth0 accept_ra=2 forwarding=1"}}},
		{"forwarding off: error with the fix, accept_ra first",
			link.IPv6Host{Available: true, Uplinks: []link.IPv6Uplink{{Name: "eth0.100", AcceptRA: 1, DefaultRoute6: "ra"}, {Name: "wan", AcceptRA: 0}}},
			[]string{"app", "six"},
			[]want{{"ipv6_forward", api.LevelError, "networks app, six have an IPv6 subnet"},
				{"ipv6_forward", api.LevelError, "sysctl -w net.ipv6.conf.eth0/100.accept_ra=2; sysctl -w net.ipv6.conf.all.forwarding=1"},
				{"accept_ra", api.LevelOK, "no uplink ignores"}}},
		{"forwarding off, no uplink takes RAs: only the forwarding command",
			link.IPv6Host{Available: true, Uplinks: []link.IPv6Uplink{{Name: "wan", AcceptRA: 0}}},
			[]string{"app"},
			[]want{{"ipv6_forward", api.LevelError, "turn it on: sysctl -w net.ipv6.conf.all.forwarding=1"}}},
		{"RAs ignored on an uplink whose route comes from them",
			link.IPv6Host{Available: true, Forwarding: true, Uplinks: []link.IPv6Uplink{ra}},
			[]string{"app"},
			[]want{{"accept_ra", api.LevelWarn, "uplink eth0 has accept_ra=1 and forwards IPv6"}, {"accept_ra", api.LevelWarn, "sysctl -w net.ipv6.conf.eth0.accept_ra=2"}}},
		{"RAs ignored, route from them, no IPv6 network: still a warning (the host's own route expires)",
			link.IPv6Host{Available: true, Forwarding: true, Uplinks: []link.IPv6Uplink{ra}},
			nil,
			[]want{{"accept_ra", api.LevelWarn, "not renewed and expires"}, {"ipv6_forward", api.LevelOK, "not needed"}}},
		{"RAs ignored, no IPv6 default route",
			link.IPv6Host{Available: true, Forwarding: true, Uplinks: []link.IPv6Uplink{{Name: "eth0", AcceptRA: 1, Forwarding: true}}},
			[]string{"app"},
			[]want{{"accept_ra", api.LevelWarn, "that is why it has none"}}},
		{"RAs ignored, no IPv6 default route, no IPv6 network",
			link.IPv6Host{Available: true, Forwarding: true, Uplinks: []link.IPv6Uplink{{Name: "eth0", AcceptRA: 1, Forwarding: true}}},
			nil,
			[]want{{"accept_ra", api.LevelInfo, "that is why it has none"}}},
		{"RAs ignored, static default route: a router set up so",
			link.IPv6Host{Available: true, Forwarding: true, Uplinks: []link.IPv6Uplink{{Name: "eth0", AcceptRA: 1, Forwarding: true, DefaultRoute6: "static"}}},
			[]string{"app"},
			[]want{{"accept_ra", api.LevelInfo, `set by "static"`}}},
		{"IPv6 disabled while a network wants it",
			link.IPv6Host{Available: true, Disabled: true, DisabledForNew: true},
			[]string{"app"},
			[]want{{"ipv6", api.LevelError, "sysctl -w net.ipv6.conf.all.disable_ipv6=0"}}},
		{"IPv6 disabled, no network wants it",
			link.IPv6Host{Available: true, Disabled: true},
			nil,
			[]want{{"ipv6", api.LevelInfo, "disabled"}}},
		{"IPv6 disabled for new links",
			link.IPv6Host{Available: true, DisabledForNew: true, Forwarding: true},
			[]string{"app"},
			[]want{{"ipv6", api.LevelWarn, "sysctl -w net.ipv6.conf.default.disable_ipv6=0"}}},
		{"no IPv6 in the kernel",
			link.IPv6Host{},
			[]string{"app"},
			[]want{{"ipv6", api.LevelError, "network app has an IPv6 subnet but the kernel has no IPv6"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ipv6Findings(c.h, c.nets)
			for _, w := range c.wants {
				found := false
				for _, f := range got {
					if f.Check == w.check && f.Level == w.level && strings.Contains(f.Message, w.says) {
						found = true
					}
				}
				if !found {
					t.Errorf("no %s %s finding saying %q in:\n%s", w.level, w.check, w.says, dumpFindings(got))
				}
			}
			// Every check speaks once at least, and only the three names.
			seen := map[string]bool{}
			for _, f := range got {
				seen[f.Check] = true
			}
			for name := range seen {
				if name != "ipv6" && name != "ipv6_forward" && name != "accept_ra" {
					t.Errorf("unexpected check %q", name)
				}
			}
			if c.h.Available && len(seen) != 3 {
				t.Errorf("checks %v, want ipv6, ipv6_forward and accept_ra:\n%s", seen, dumpFindings(got))
			}
		})
	}
}

func dumpFindings(fs []api.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.Level + " " + f.Check + ": " + f.Message + "\n")
	}
	return b.String()
}

// The doctor reads the host through link.Interface, and only networks with
// an IPv6 subnet count.
func TestDoctorIPv6(t *testing.T) {
	f := link.NewFake()
	f.IPv6.Uplinks = []link.IPv6Uplink{{Name: "eth0", AcceptRA: 1, DefaultRoute6: "ra"}}
	d := &doctor{link: f}
	v4 := &model.NetworkInfo{Network: model.Network{Name: "four", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.90.1.0/24")}}}}
	v6 := &model.NetworkInfo{Network: model.Network{Name: "six", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("fd00:1::/64")}}}}
	check := func(nets []*model.NetworkInfo, check, level, says string) {
		t.Helper()
		for _, fi := range d.ipv6(nets) {
			if fi.Check == check && fi.Level == level && strings.Contains(fi.Message, says) {
				return
			}
		}
		t.Errorf("no %s %s finding saying %q:\n%s", level, check, says, dumpFindings(d.ipv6(nets)))
	}
	check([]*model.NetworkInfo{v4}, "ipv6_forward", api.LevelOK, "no network has an IPv6 subnet")
	check([]*model.NetworkInfo{v4, v6}, "ipv6_forward", api.LevelError, "network six has an IPv6 subnet")
	// After the adapter turned forwarding on, all is well.
	if _, err := f.SetIPv6Forward(); err != nil {
		t.Fatal(err)
	}
	check([]*model.NetworkInfo{v4, v6}, "ipv6_forward", api.LevelOK, "is 1")
	check([]*model.NetworkInfo{v4, v6}, "accept_ra", api.LevelOK, "eth0 accept_ra=2 forwarding=1")
	// Someone put accept_ra back to 1.
	f.IPv6.Uplinks[0].AcceptRA = 1
	check([]*model.NetworkInfo{v4, v6}, "accept_ra", api.LevelWarn, "sysctl -w net.ipv6.conf.eth0.accept_ra=2")

	f.InjectError("IPv6Host", errors.New("boom"))
	check(nil, "ipv6", api.LevelWarn, "cannot read the host's IPv6 settings: boom")
}
