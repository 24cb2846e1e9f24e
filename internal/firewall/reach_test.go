package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

func mapping(t *testing.T, spec string) model.PortMapping {
	t.Helper()
	m, err := model.ParsePortMapping(spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReachable(t *testing.T) {
	open := Network{Name: "front"}
	internal := Network{Name: "back", Internal: true}
	apart := Network{Name: "apart", Isolated: true}
	quiet := Network{Name: "quiet", Internal: true, Isolated: true}
	all := []string{FromLAN, FromHost, FromSandboxes}
	for _, c := range []struct {
		spec string
		n    Network
		from []string
		text string
	}{
		{"8080:80", open, all, "LAN, host, sandboxes (every host address; not from sandboxes of --internal networks)"},
		{"198.51.100.1:8080:80", open, all, "LAN, host, sandboxes (through 198.51.100.1 only;"},
		{"127.0.0.1:8080:80", open, []string{FromHost}, "host only (127.0.0.1)"},
		{"8080:80", internal, []string{FromHost, FromSandboxes}, "host through 127.0.0.1, sandboxes of network back through its gateway"},
		{"127.0.0.1:8080:80", internal, []string{FromHost}, "host only (127.0.0.1; network back is --internal)"},
		{"198.51.100.1:8080:80", internal, []string{}, "nowhere (network back is --internal"},
		{"8080:80", apart, all, "LAN, host, sandboxes (every host address; not from sandboxes of --internal networks nor of network apart itself (icc=false))"},
		{"198.51.100.1:8080:80", apart, all, "LAN, host, sandboxes (through 198.51.100.1 only; not from sandboxes of --internal networks nor of network apart itself"},
		{"127.0.0.1:8080:80", apart, []string{FromHost}, "host only (127.0.0.1)"},
		{"8080:80", quiet, []string{FromHost}, "host through 127.0.0.1 only (network quiet is --internal, and has icc=false"},
	} {
		r := Reachable(mapping(t, c.spec), c.n)
		if !slices.Equal(r.From, c.from) || !strings.HasPrefix(r.Text, c.text) {
			t.Errorf("%s on %s: %v %q, want %v %q", c.spec, c.n.Name, r.From, r.Text, c.from, c.text)
		}
	}
}

// TestKernelReachable publishes ports in a throwaway host and checks what
// Reachable claims against real connections from every place: a LAN
// client, the host, and sandboxes on the target's network, on another
// network and on an internal one, through each address they could use.
// What is claimed must connect; what is not claimed must not.
//
//	f1 (target), f2 ── ptbr-ffff 10.202.1.1/24 "front"
//	s1             ── ptbr-gggg 10.202.3.1/24 "side"
//	i1 (target), i2 ── ptbr-iiii 10.202.2.1/24 "back", --internal (no default route)
//	a1 (target), a2 ── ptbr-aaaa 10.202.4.1/24 "apart", icc=false (ports isolated)
//	host ── vout 198.51.100.1/24 ── outside 198.51.100.2, LAN client 203.0.113.2
func TestKernelReachable(t *testing.T) {
	host, outside := testutil.NewNetns(t), testutil.NewNetns(t)
	ns := map[string]string{}
	for _, n := range []string{"f1", "f2", "s1", "i1", "i2", "a1", "a2"} {
		ns[n] = testutil.NewNetns(t)
	}
	ip := func(where, args string) {
		t.Helper()
		runIn(t, where, append([]string{"ip"}, strings.Fields(args)...)...)
	}
	type sandbox struct{ name, bridge, addr, gw string }
	sbs := []sandbox{
		{"f1", "ptbr-ffff", "10.202.1.2", "10.202.1.1"}, {"f2", "ptbr-ffff", "10.202.1.3", "10.202.1.1"},
		{"s1", "ptbr-gggg", "10.202.3.2", "10.202.3.1"},
		{"i1", "ptbr-iiii", "10.202.2.2", "10.202.2.1"}, {"i2", "ptbr-iiii", "10.202.2.3", "10.202.2.1"},
		{"a1", "ptbr-aaaa", "10.202.4.2", "10.202.4.1"}, {"a2", "ptbr-aaaa", "10.202.4.3", "10.202.4.1"},
	}
	for _, br := range []struct{ name, gw string }{{"ptbr-ffff", "10.202.1.1/24"}, {"ptbr-gggg", "10.202.3.1/24"}, {"ptbr-iiii", "10.202.2.1/24"}, {"ptbr-aaaa", "10.202.4.1/24"}} {
		ip(host, "link add "+br.name+" type bridge")
		ip(host, "addr add "+br.gw+" dev "+br.name)
		ip(host, "link set "+br.name+" up")
	}
	// As the link adapter makes them: ports in hairpin mode, internal
	// networks without a default route, route_localnet on the bridges.
	for _, sb := range sbs {
		v := "ptv-" + sb.name
		ip(host, "link add "+v+" type veth peer name eth0 netns "+ns[sb.name])
		ip(host, "link set "+v+" master "+sb.bridge+" up")
		runIn(t, host, "bridge", "link", "set", "dev", v, "hairpin", "on")
		if sb.bridge == "ptbr-aaaa" {
			runIn(t, host, "bridge", "link", "set", "dev", v, "isolated", "on")
		}
		ip(ns[sb.name], "addr add "+sb.addr+"/24 dev eth0")
		ip(ns[sb.name], "link set eth0 up")
		ip(ns[sb.name], "link set lo up")
		if sb.bridge != "ptbr-iiii" {
			ip(ns[sb.name], "route add default via "+sb.gw)
		}
	}
	ip(host, "link set lo up")
	ip(host, "link add vout type veth peer name eth0 netns "+outside)
	ip(host, "addr add 198.51.100.1/24 dev vout")
	ip(host, "link set vout up")
	ip(host, "route add default via 198.51.100.2")
	ip(outside, "addr add 198.51.100.2/24 dev eth0")
	ip(outside, "link set eth0 up")
	ip(outside, "link set lo up")
	ip(outside, "addr add 203.0.113.2/32 dev lo")
	if err := testutil.InNetns(t, host, func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/ptbr-ffff/route_localnet",
			"/proc/sys/net/ipv4/conf/ptbr-gggg/route_localnet", "/proc/sys/net/ipv4/conf/ptbr-iiii/route_localnet",
			"/proc/sys/net/ipv4/conf/ptbr-aaaa/route_localnet"} {
			if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"f1", "i1", "a1"} {
		var ln net.Listener
		if err := testutil.InNetns(t, ns[target], func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:80"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
	}

	front := Network{Name: "front", Bridge: "ptbr-ffff", Subnets: v4(netip.MustParsePrefix("10.202.1.0/24"), true)}
	side := Network{Name: "side", Bridge: "ptbr-gggg", Subnets: v4(netip.MustParsePrefix("10.202.3.0/24"), true)}
	back := Network{Name: "back", Bridge: "ptbr-iiii", Subnets: v4(netip.MustParsePrefix("10.202.2.0/24"), false), Internal: true}
	apart := Network{Name: "apart", Bridge: "ptbr-aaaa", Subnets: v4(netip.MustParsePrefix("10.202.4.0/24"), true), Isolated: true}
	type mapped struct {
		m      model.PortMapping
		n      Network
		target netip.Addr
	}
	var cases []mapped
	var s State
	for i, c := range []struct {
		spec   string
		n      Network
		target string
	}{
		{"8001:80", front, "10.202.1.2"}, {"127.0.0.1:8002:80", front, "10.202.1.2"}, {"198.51.100.1:8003:80", front, "10.202.1.2"},
		{"8004:80", back, "10.202.2.2"}, {"127.0.0.1:8005:80", back, "10.202.2.2"}, {"198.51.100.1:8006:80", back, "10.202.2.2"},
		{"8007:80", apart, "10.202.4.2"},
	} {
		m := mapping(t, c.spec)
		if int(m.HostPort) != 8001+i {
			t.Fatal("host ports must differ")
		}
		cases = append(cases, mapped{m, c.n, netip.MustParseAddr(c.target)})
		s.Ports = append(s.Ports, Published{PortMapping: m, Targets: []netip.Addr{netip.MustParseAddr(c.target)}})
	}
	s.Networks = []Network{front, side, back, apart}
	syncIn(t, host, s)

	// A place, the class of claim it stands for, its network (for
	// sandboxes), and the addresses it would use to reach a host port.
	type place struct {
		name, ns, class string
		net             Network
		src             string // source address to bind ("" any)
		addrs           []string
	}
	places := []place{
		{name: "LAN client", ns: outside, class: FromLAN, src: "203.0.113.2", addrs: []string{"198.51.100.1"}},
		{name: "host", ns: host, class: FromHost, addrs: []string{"127.0.0.1", "198.51.100.1"}},
		{name: "f2 (same network)", ns: ns["f2"], class: FromSandboxes, net: front, addrs: []string{"198.51.100.1", "10.202.1.1"}},
		{name: "s1 (other network)", ns: ns["s1"], class: FromSandboxes, net: side, addrs: []string{"198.51.100.1", "10.202.3.1"}},
		{name: "i2 (internal network)", ns: ns["i2"], class: FromSandboxes, net: back, addrs: []string{"198.51.100.1", "10.202.2.1"}},
		{name: "a2 (icc=false network)", ns: ns["a2"], class: FromSandboxes, net: apart, addrs: []string{"198.51.100.1", "10.202.4.1"}},
	}
	// claimed reads a Reach the way its words say: a class in From, on the
	// addresses the mapping answers on; sandboxes of --internal networks
	// excepted, and those of an icc=false target's own network; for an
	// internal target, the host through 127.0.0.1 and sandboxes of that
	// network through its gateway only.
	claimed := func(r Reach, c mapped, p place, addr string) bool {
		if !slices.Contains(r.From, p.class) {
			return false
		}
		a := netip.MustParseAddr(addr)
		if c.m.HostIP.IsValid() && c.m.HostIP != a {
			return false
		}
		if !c.n.Internal {
			return !(p.class == FromSandboxes && (p.net.Internal || c.n.Isolated && p.net.Name == c.n.Name))
		}
		if p.class == FromHost {
			return a.IsLoopback()
		}
		return p.class == FromSandboxes && p.net.Name == c.n.Name && c.n.Subnets[0].Prefix.Contains(a)
	}
	dial := func(p place, addr string, port uint16) bool {
		ok := false
		_ = testutil.InNetns(t, p.ns, func() error {
			d := net.Dialer{Timeout: 800 * time.Millisecond}
			if p.src != "" {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.src)}
			}
			c, err := d.Dial("tcp4", net.JoinHostPort(addr, strconv.Itoa(int(port))))
			if err != nil {
				return nil
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(800 * time.Millisecond))
			b := make([]byte, 2)
			n, _ := c.Read(b)
			ok = string(b[:n]) == "hi"
			return nil
		})
		return ok
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	positives := 0
	for _, c := range cases {
		r := Reachable(c.m, c.n)
		tried := map[string]bool{}
		for _, p := range places {
			for _, addr := range p.addrs {
				want := claimed(r, c, p, addr)
				if want {
					positives++
					tried[p.class] = true
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					got := false
					for range 2 { // a first miss may be ARP
						if got = dial(p, addr, c.m.HostPort); got || !want {
							break
						}
					}
					if got != want {
						mu.Lock()
						errs = append(errs, fmt.Sprintf("%s on %s (%q, %v): %s → %s:%d connected=%v, claimed=%v",
							c.m, c.n.Name, r.Text, r.From, p.name, addr, c.m.HostPort, got, want))
						mu.Unlock()
					}
				}()
			}
		}
		for _, class := range r.From {
			if !tried[class] {
				t.Errorf("%s on %s claims %q, but no place of that kind has an address it answers on: a claim this test cannot try", c.m, c.n.Name, class)
			}
		}
	}
	wg.Wait()
	slices.Sort(errs)
	for _, e := range errs {
		t.Error(e)
	}
	if positives < 10 {
		t.Fatalf("only %d claimed paths: the matrix proves little", positives)
	}
}
