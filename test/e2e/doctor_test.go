package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"pontoon/internal/api"
)

func (h *Host) doctor(t *testing.T) (map[string][]api.Finding, error) {
	t.Helper()
	out, err := h.TryP("doctor", "--format", "json")
	var fs []api.Finding
	if jerr := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &fs); jerr != nil {
		t.Fatalf("doctor output: %v\n%s", jerr, out)
	}
	by := map[string][]api.Finding{}
	for _, f := range fs {
		by[f.Check] = append(by[f.Check], f)
	}
	return by, err
}

func TestDoctor(t *testing.T) {
	// Self-healing off: the drift made below must stay for doctor to see.
	h := NewHost(t, "--self-heal=false")
	h.P("network", "create", "left", "--subnet", "10.96.1.0/24")
	h.P("sandbox", "create", "dual", "--network", "pontoon", "--network", "left")
	h.P("sandbox", "create", "pinless")
	by, err := h.doctor(t)
	if err != nil {
		t.Fatalf("doctor on a healthy host failed: %v %+v", err, by)
	}
	for _, c := range []string{"firewall", "ip_forward", "mtu", "rp_filter", "leaks", "bridges", "endpoints", "dns-upstreams"} {
		if len(by[c]) != 1 || by[c][0].Level != api.LevelOK {
			t.Errorf("%s on a healthy host: %+v", c, by[c])
		}
	}
	if f := by["br_netfilter"]; len(f) != 1 || f[0].Level != api.LevelInfo {
		t.Errorf("br_netfilter (built into this kernel): %+v", f)
	}

	// Now break things, one per check.
	h.In(h.NS, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	h.In(h.NS, "ip", "link", "set", "uplink0", "mtu", "1400")
	// Strict rp_filter alone is harmless with pontoon's source rules...
	h.In(h.SandboxNS("dual"), "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
	if by, _ = h.doctor(t); len(by["rp_filter"]) != 1 || by["rp_filter"][0].Level != api.LevelInfo {
		t.Errorf("strict rp_filter with the source rules in place: %+v", by["rp_filter"])
	}
	// ...and breaks the second interface once its rule is gone.
	h.In(h.SandboxNS("dual"), "ip", "rule", "del", "priority", "101")
	h.In(h.NS, "ip", "link", "add", "ptv-leaked0001", "type", "veth", "peer", "name", "leakpeer")
	h.In(h.NS, "iptables", "-P", "FORWARD", "DROP")
	h.In(h.NS, "ip", "link", "set", "pontoon0", "down")
	deleteNetns(t, h.SandboxNS("pinless"))
	silent := mdns.HandlerFunc(func(mdns.ResponseWriter, *mdns.Msg) {})
	h.dnsHandler.Store(&silent)
	by, err = h.doctor(t)
	if err == nil {
		t.Fatal("doctor exited 0 with problems")
	}
	want := map[string]string{
		"ip_forward":       "ip_forward is \"0\"",
		"mtu":              "uplink uplink0 has 1400",
		"rp_filter":        "source routing drifted (no rule from 10.96.1.2 lookup 101)",
		"leaks":            "link ptv-leaked0001",
		"foreign-firewall": "ip filter FORWARD drops forwarded traffic by policy and has no user hook",
		"bridges":          "bridge pontoon0 is down",
		"endpoints":        "sandbox pinless: namespace pin",
		"dns-upstreams":    "upstream resolver " + RouterIP + ":53 does not answer",
	}
	for c, msg := range want {
		found := false
		for _, f := range by[c] {
			if strings.Contains(f.Message, msg) && (f.Level == api.LevelWarn || f.Level == api.LevelError) {
				found = true
			}
		}
		if !found {
			t.Errorf("doctor %s: want a problem saying %q, got %+v", c, msg, by[c])
		}
	}
}

// Without a daemon, doctor says so and still checks the host.
func TestDoctorWithoutDaemon(t *testing.T) {
	h := NewHost(t)
	h.Stop()
	out, err := h.TryIn(h.NS, filepath.Join(binDir, "pontoon"), "--socket", h.Socket, "doctor")
	if err == nil {
		t.Fatalf("doctor without a daemon exited 0:\n%s", out)
	}
	for _, want := range []string{"no daemon answers on " + h.Socket, "ip_forward", "br_netfilter", "table inet pontoon from an earlier run"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor without a daemon does not say %q:\n%s", want, out)
		}
	}
}
