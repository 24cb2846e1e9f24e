package link

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// ipLinkDetails reads `ip -d -j link show NAME` in the namespace at ns:
// the kernel's view of a link's bridge settings (info_data) and, for a
// bridge port, its port settings (info_slave_data).
func ipLinkDetails(t *testing.T, ns, name string) (data, slave map[string]any) {
	t.Helper()
	out, err := run(t, ns, "ip", "-d", "-j", "link", "show", "dev", name)
	if err != nil {
		t.Fatalf("ip -d link show %s: %v\n%s", name, err, out)
	}
	var links []struct {
		LinkInfo struct {
			Data  map[string]any `json:"info_data"`
			Slave map[string]any `json:"info_slave_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -d -j link show %s: %v\n%s", name, err, out)
	}
	return links[0].LinkInfo.Data, links[0].LinkInfo.Slave
}

// num reads a number of ip's JSON.
func num(m map[string]any, k string) int {
	f, _ := m[k].(float64)
	return int(f)
}

func TestKernelBridgeOptions(t *testing.T) {
	l, host := newKernelHost(t)
	o := &BridgeOptions{STP: true, ForwardDelay: 4, AgeingTime: 30, VLANFiltering: true, MulticastSnooping: true}
	b := Bridge{Name: "br1", Gateways: []netip.Prefix{gw1}, MTU: 1500, Options: o}
	_, err := l.EnsureBridge(b)
	want := map[string]int{"stp_state": 1, "forward_delay": 400, "ageing_time": 3000, "vlan_filtering": 1, "mcast_snooping": 1}
	if errors.Is(err, ErrNoVLANFiltering) {
		// A kernel without CONFIG_BRIDGE_VLAN_FILTERING (this project's
		// CI kernel): refused clearly; the rest is checked without it.
		t.Logf("EnsureBridge: %v", err)
		o.VLANFiltering = false
		delete(want, "vlan_filtering")
		_, err = l.EnsureBridge(b)
	}
	if err != nil {
		t.Fatal(err)
	}
	d, _ := ipLinkDetails(t, host, "br1")
	// ip prints the kernel's clock_t values: centiseconds.
	for k, want := range want {
		if got := num(d, k); got != want {
			t.Errorf("br1 %s = %d, want %d (info_data %v)", k, got, want, d)
		}
	}
	if p := l.CheckBridge(b); p != nil {
		t.Errorf("CheckBridge after EnsureBridge = %q", p)
	}

	// Someone changes them behind pontoon's back: CheckBridge says what,
	// EnsureBridge (what healing calls) puts them back.
	drift := []string{"ip", "link", "set", "br1", "type", "bridge", "stp_state", "0", "ageing_time", "1000", "mcast_snooping", "0"}
	wantDrift := []string{"STP off, want on", "ageing time 10s, want 30s", "multicast snooping off, want on"}
	if o.VLANFiltering {
		drift = append(drift, "vlan_filtering", "0")
		wantDrift = append(wantDrift, "VLAN filtering off, want on")
	}
	if out, err := run(t, host, drift...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := strings.Join(l.CheckBridge(b), "\n")
	for _, want := range wantDrift {
		if !strings.Contains(got, want) {
			t.Errorf("CheckBridge after drift = %q, want it to say %q", got, want)
		}
	}
	if _, err := l.EnsureBridge(b); err != nil {
		t.Fatal(err)
	}
	if p := l.CheckBridge(b); p != nil {
		t.Errorf("CheckBridge after repair = %q", p)
	}

	// Defaults spelled out: STP off, the kernel's ageing time, and a
	// forward delay that is not touched without STP.
	def := Bridge{Name: "br1", Gateways: []netip.Prefix{gw1}, MTU: 1500, Options: &BridgeOptions{}}
	if _, err := l.EnsureBridge(def); err != nil {
		t.Fatal(err)
	}
	d, _ = ipLinkDetails(t, host, "br1")
	for k, want := range map[string]int{"stp_state": 0, "ageing_time": 30000, "vlan_filtering": 0, "mcast_snooping": 0} {
		if _, ok := d[k]; !ok && k == "vlan_filtering" {
			continue
		}
		if got := num(d, k); got != want {
			t.Errorf("defaults: br1 %s = %d, want %d", k, got, want)
		}
	}
	if p := l.CheckBridge(def); p != nil {
		t.Errorf("CheckBridge with defaults = %q", p)
	}
}

// vlanOf is "bridge -j vlan show dev NAME" as vid → flags ("PVID",
// "Egress Untagged").
func vlanOf(t *testing.T, ns, name string) map[int][]string {
	t.Helper()
	out, err := run(t, ns, "bridge", "-j", "vlan", "show", "dev", name)
	if err != nil {
		t.Fatalf("bridge vlan show %s: %v\n%s", name, err, out)
	}
	var ports []struct {
		Vlans []struct {
			Vlan  int      `json:"vlan"`
			Flags []string `json:"flags"`
		} `json:"vlans"`
	}
	if err := json.Unmarshal([]byte(out), &ports); err != nil {
		t.Fatalf("bridge -j vlan show %s: %v\n%s", name, err, out)
	}
	m := map[int][]string{}
	for _, p := range ports {
		for _, v := range p.Vlans {
			m[v.Vlan] = v.Flags
		}
	}
	return m
}

func TestKernelHairpinOption(t *testing.T) {
	l, host := newKernelHost(t)
	on, off := testutil.NewNetns(t), testutil.NewNetns(t)
	von, voff := veth("ptv-on", on, "10.70.0.10"), veth("ptv-off", off, "10.70.0.11")
	voff.NoHairpin = true
	for _, v := range []Veth{von, voff} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
		if p := l.CheckVeth(v); p != nil {
			t.Errorf("CheckVeth %s = %q", v.HostName, p)
		}
	}
	if _, s := ipLinkDetails(t, host, "ptv-on"); s["hairpin"] != true {
		t.Errorf("ptv-on hairpin = %v, want on", s["hairpin"])
	}
	if _, s := ipLinkDetails(t, host, "ptv-off"); s["hairpin"] != false {
		t.Errorf("ptv-off hairpin = %v, want off", s["hairpin"])
	}
	// Drift is reported and repaired.
	if out, err := run(t, host, "ip", "link", "set", "ptv-on", "type", "bridge_slave", "hairpin", "off"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p := strings.Join(l.CheckVeth(von), "\n"); !strings.Contains(p, "hairpin mode false, want true") {
		t.Errorf("CheckVeth after hairpin off = %q", p)
	}
	if _, fixed, err := l.RepairVeth(von); err != nil || len(fixed) == 0 {
		t.Errorf("RepairVeth = %v, %v", fixed, err)
	}
	if _, s := ipLinkDetails(t, host, "ptv-on"); s["hairpin"] != true {
		t.Errorf("ptv-on hairpin after repair = %v, want on", s["hairpin"])
	}
}

func TestKernelVethVLAN(t *testing.T) {
	l, host := newKernelHost(t)
	_, err := l.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1500, Options: &BridgeOptions{VLANFiltering: true}})
	if errors.Is(err, ErrNoVLANFiltering) {
		t.Skipf("kernel without bridge VLAN filtering: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	type sb struct {
		port, ns, ip string
		vlan         int
	}
	sbs := []sb{
		{"ptv-a", "", "10.70.0.10", 10},
		{"ptv-b", "", "10.70.0.11", 10},
		{"ptv-c", "", "10.70.0.20", 20},
		{"ptv-d", "", "10.70.0.30", 0},
	}
	for i := range sbs {
		sbs[i].ns = testutil.NewNetns(t)
		v := veth(sbs[i].port, sbs[i].ns, sbs[i].ip)
		v.VLAN = sbs[i].vlan
		if _, err := l.AddVeth(v); err != nil {
			t.Fatalf("AddVeth %s: %v", sbs[i].port, err)
		}
		if p := l.CheckVeth(v); p != nil {
			t.Errorf("CheckVeth %s = %q", sbs[i].port, p)
		}
	}
	a, b, c, d := sbs[0], sbs[1], sbs[2], sbs[3]

	// The kernel's view: the port's PVID is its VLAN, untagged, and it
	// stays an untagged member of VLAN 1 (the host's frames); the bridge
	// itself is in every endpoint VLAN, untagged, and keeps PVID 1.
	if got := vlanOf(t, host, "ptv-a"); strings.Join(got[10], ",") != "PVID,Egress Untagged" || strings.Join(got[1], ",") != "Egress Untagged" {
		t.Errorf("ptv-a VLANs = %v, want 10 PVID untagged and 1 untagged", got)
	}
	if got := vlanOf(t, host, "ptv-d"); strings.Join(got[1], ",") != "PVID,Egress Untagged" || len(got) != 1 {
		t.Errorf("ptv-d VLANs = %v, want only 1 PVID untagged", got)
	}
	self := vlanOf(t, host, "br0")
	if strings.Join(self[1], ",") != "PVID,Egress Untagged" || strings.Join(self[10], ",") != "Egress Untagged" || strings.Join(self[20], ",") != "Egress Untagged" {
		t.Errorf("br0 self VLANs = %v, want 1 PVID untagged, 10 and 20 untagged", self)
	}
	// Traffic: same VLAN and the gateway reach each other; VLAN 20 does
	// not reach VLAN 10.
	for _, p := range []struct{ from, to string }{{a.ns, b.ip}, {b.ns, a.ip}, {a.ns, gw0.Addr().String()}, {c.ns, gw0.Addr().String()}, {d.ns, gw0.Addr().String()}} {
		if err := ping(t, p.from, p.to); err != nil {
			t.Error(err)
		}
	}
	if err := ping(t, c.ns, a.ip); err == nil {
		t.Errorf("a sandbox on VLAN 20 reached one on VLAN 10")
	}
	// The host's replies to a VLAN-10 sandbox go to its port alone (the
	// static VLAN-1 FDB entry), not flooded to the others.
	out, err := run(t, host, "bridge", "fdb", "show", "dev", "ptv-a")
	if err != nil || !strings.Contains(out, fmt.Sprintf("%s vlan 1 master br0 static", net.HardwareAddr{2, 0x42, 10, 70, 0, 10})) {
		t.Errorf("bridge fdb show dev ptv-a: %v\n%s\nwant a static entry in VLAN 1", err, out)
	}

	// A VLAN on a bridge without filtering is refused by the kernel and
	// leaves nothing behind.
	if _, err := l.EnsureBridge(Bridge{Name: "br9", Gateways: []netip.Prefix{gw1}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	e := testutil.NewNetns(t)
	v := veth("ptv-e", e, "10.71.0.5")
	v.Bridge, v.Addrs[0].Gateway, v.VLAN = "br9", gw1.Addr(), 10
	if _, err := l.AddVeth(v); err == nil || !strings.Contains(err.Error(), "VLAN 10") {
		t.Errorf("AddVeth with a VLAN on a bridge without filtering = %v, want an error about VLAN 10", err)
	}
	if idx, _ := l.LinkIndex("ptv-e"); idx != 0 {
		t.Errorf("ptv-e left behind after a refused VLAN")
	}
}

// rxPackets is a link's receive counter in the namespace at ns.
func rxPackets(t *testing.T, ns, name string) int {
	t.Helper()
	out, err := run(t, ns, "ip", "-s", "-j", "link", "show", "dev", name)
	if err != nil {
		t.Fatalf("ip -s link show %s: %v\n%s", name, err, out)
	}
	var links []struct {
		Stats struct {
			RX struct {
				Packets int `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show %s: %v\n%s", name, err, out)
	}
	return links[0].Stats.RX.Packets
}

// TestKernelSTPLoop joins two STP bridges twice (a loop): STP blocks one
// of the loop's ports, traffic between a sandbox on each bridge flows, and
// broadcasts do not circle (the loop links' receive counters stay small
// while the sandboxes send broadcasts). The storm case (STP off) is not
// run: it would load the shared machine's CPUs until torn down.
func TestKernelSTPLoop(t *testing.T) {
	l, host := newKernelHost(t)
	stp := &BridgeOptions{STP: true, ForwardDelay: 2}
	gwA := netip.MustParsePrefix("10.72.0.1/24")
	if _, err := l.EnsureBridge(Bridge{Name: "brA", Gateways: []netip.Prefix{gwA}, MTU: 1500, Options: stp}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "brB", MTU: 1500, Options: stp}); err != nil {
		t.Fatal(err)
	}
	loops := []string{"loopA1", "loopB1", "loopA2", "loopB2"}
	for i := 0; i < 4; i += 2 {
		for _, cmd := range [][]string{
			{"ip", "link", "add", loops[i], "type", "veth", "peer", "name", loops[i+1]},
			{"ip", "link", "set", loops[i], "master", "brA", "up"},
			{"ip", "link", "set", loops[i+1], "master", "brB", "up"},
		} {
			if out, err := run(t, host, cmd...); err != nil {
				t.Fatalf("%v: %v\n%s", cmd, err, out)
			}
		}
	}
	mk := func(port, br, ip string) string {
		ns := testutil.NewNetns(t)
		a := netip.MustParseAddr(ip)
		v := Veth{HostName: port, Bridge: br, Iface: Iface{MTU: 1500, Netns: ns, IfName: "eth0", MAC: net.HardwareAddr{2, 0x42, 10, 72, 0, a.As4()[3]}, Addrs: []Address{{Addr: netip.PrefixFrom(a, 24)}}}}
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
		return ns
	}
	a := mk("ptv-a", "brA", "10.72.0.10")
	mk("ptv-b", "brB", "10.72.0.11")

	// Ports forward after listening and learning, 2×forward delay = 4 s.
	deadline := time.Now().Add(20 * time.Second)
	for ping(t, a, "10.72.0.11") != nil {
		if time.Now().After(deadline) {
			t.Fatal("no traffic between the bridges within 20 s of STP")
		}
	}
	blocking := 0
	for _, p := range loops {
		if _, s := ipLinkDetails(t, host, p); s["state"] == "blocking" {
			blocking++
		}
	}
	if blocking != 1 {
		t.Errorf("%d loop ports blocking, want 1 (the loop cut once)", blocking)
	}

	before := 0
	for _, p := range loops {
		before += rxPackets(t, host, p)
	}
	// Ten broadcasts (plus the BPDUs every 2 s hello): a storm would be
	// hundreds of thousands of frames.
	_, _ = run(t, a, "ping", "-b", "-c10", "-i0.2", "10.72.0.255")
	after := 0
	for _, p := range loops {
		after += rxPackets(t, host, p)
	}
	if n := after - before; n > 200 {
		t.Errorf("loop links received %d frames in 2 s of 10 broadcasts: a storm", n)
	} else {
		t.Logf("loop links received %d frames in 2 s of 10 broadcasts", n)
	}
	if err := ping(t, a, "10.72.0.11"); err != nil {
		t.Errorf("after the broadcasts: %v", err)
	}
}
