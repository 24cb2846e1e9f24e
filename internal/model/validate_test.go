package model

import (
	"encoding/json"
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
		want string
	}{
		{"a", true, ""},
		{"web-1.prod_x", true, ""},
		{"", false, "empty"},
		{"-x", false, "not allowed"},
		{"a b", false, "not allowed"},
		{"a/b", false, "not allowed"},
		{"é", false, "not allowed"},
		{strings.Repeat("x", 63), true, ""},
		{strings.Repeat("x", 64), false, "at most 63"},
	} {
		err := ValidateName("sandbox", c.name)
		if (err == nil) != c.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ValidateName(%q) = %v, want ErrInvalid saying %q", c.name, err, c.want)
			}
		}
	}
}

func TestValidateNetworkNameRefusesReserved(t *testing.T) {
	for _, name := range []string{"none", "host", "None", "HOST"} {
		err := ValidateNetworkName(name)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("ValidateNetworkName(%q) = %v, want ErrInvalid saying reserved", name, err)
		}
		if _, err := BuildNetwork(NetworkSpec{Name: name}, []netip.Prefix{netip.MustParsePrefix("10.90.1.0/24")}, NewID()); !errors.Is(err, ErrInvalid) {
			t.Errorf("BuildNetwork(%q) = %v, want ErrInvalid", name, err)
		}
	}
	// "sandbox:x" means another sandbox's namespace to --network.
	if err := ValidateNetworkName("sandbox:x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ValidateNetworkName(sandbox:x) = %v, want ErrInvalid", err)
	}
	for _, name := range []string{"hosts", "nonesuch", "my-host", "pontoon"} {
		if err := ValidateNetworkName(name); err != nil {
			t.Errorf("ValidateNetworkName(%q) = %v, want ok", name, err)
		}
	}
}

func TestValidateIfName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"br0", true}, {"pontoon0", true}, {strings.Repeat("b", 15), true},
		{strings.Repeat("b", 16), false}, {"", false}, {"a/b", false}, {"a b", false}, {"..", false}, {"a:1", false},
	} {
		if err := ValidateIfName("bridge", c.name); (err == nil) != c.ok {
			t.Errorf("ValidateIfName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want string
	}{
		{"10.90.1.0/24", true, ""},
		{"10.0.0.0/8", true, ""},
		{"10.90.1.0/30", true, ""},
		{"10.90.1.0/31", false, "too small"},
		{"10.0.0.0/7", false, "too large"},
		{"10.90.1.5/24", false, "host bits"},
		{"10.90.1.0/33", false, "not a CIDR"},
		{"fd00::/64", true, ""},
		{"2001:db8::/48", true, ""},
		{"fd00::/125", false, "too small"},
		{"fd00::1/64", false, "host bits"},
		{"fe80::/64", false, "link-local"},
		{"nonsense", false, "not a CIDR"},
	} {
		_, err := ParsePrefix("subnet", c.in)
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("ParsePrefix(%q) = %v, want ok=%v %q", c.in, err, c.ok, c.want)
		}
	}
}

func TestBuildNetwork(t *testing.T) {
	sub := netip.MustParsePrefix("10.90.1.0/24")
	ula := netip.MustParsePrefix("fd00:1::/64")
	global := netip.MustParsePrefix("2001:db8:1::/64")
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	f, tr := false, true
	v4 := func(n *Network) Subnet { s, _ := n.Subnet4(); return s }
	v6 := func(n *Network) Subnet { s, _ := n.Subnet6(); return s }
	for _, c := range []struct {
		name     string
		spec     NetworkSpec
		prefixes []netip.Prefix // default: sub
		want     string         // error substring; "" = ok
		chk      func(*Network) string
	}{
		{"defaults", NetworkSpec{Name: "n"}, nil, "", func(n *Network) string {
			if len(n.Subnets) != 1 || v4(n).Gateway.String() != "10.90.1.1" || !n.ICC || !v4(n).Masquerade || n.MTU != 1500 || !strings.HasPrefix(n.Bridge, BridgePrefix) || len(n.Bridge) > MaxIfNameLen {
				return "unexpected defaults"
			}
			return ""
		}},
		{"default network bridge", NetworkSpec{Name: DefaultNetwork}, nil, "", func(n *Network) string {
			if n.Bridge != DefaultBridge {
				return "bridge " + n.Bridge
			}
			return ""
		}},
		{"internal implies no masquerade", NetworkSpec{Name: "n", Internal: true}, []netip.Prefix{sub, ula}, "", func(n *Network) string {
			if v4(n).Masquerade || v6(n).Masquerade {
				return "masquerade on an internal network"
			}
			return ""
		}},
		{"icc off", NetworkSpec{Name: "n", ICC: &f}, nil, "", func(n *Network) string {
			if n.ICC {
				return "icc"
			}
			return ""
		}},
		{"gateway given", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub, Gateway: a("10.90.1.254")}}}, nil, "", func(n *Network) string {
			if v4(n).Gateway.String() != "10.90.1.254" {
				return v4(n).Gateway.String()
			}
			return ""
		}},
		{"gateway outside", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub, Gateway: a("10.90.2.1")}}}, nil, "outside subnet", nil},
		{"gateway network addr", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub, Gateway: a("10.90.1.0")}}}, nil, "network address", nil},
		{"gateway broadcast", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub, Gateway: a("10.90.1.255")}}}, nil, "broadcast", nil},
		{"gateway without subnet", NetworkSpec{Name: "n", Subnets: []Subnet{{Gateway: a("10.90.1.5")}}}, nil, "without the subnet", nil},
		{"range inside", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub, IPRange: p("10.90.1.128/25")}}}, nil, "", func(n *Network) string {
			if v4(n).AllocRange() != p("10.90.1.128/25") {
				return "range " + v4(n).AllocRange().String()
			}
			return ""
		}},
		{"range outside", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub, IPRange: p("10.90.2.0/25")}}}, nil, "not inside", nil},
		{"range larger", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub, IPRange: p("10.90.0.0/16")}}}, nil, "not inside", nil},
		{"two of a family", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: sub}, {Prefix: p("10.91.0.0/24")}}}, nil, "at most one subnet per address family", nil},
		{"dual stack", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: ula, Gateway: a("fd00:1::fe")}, {Prefix: sub}}}, []netip.Prefix{ula, sub}, "", func(n *Network) string {
			if len(n.Subnets) != 2 || !n.Subnets[0].Prefix.Addr().Is4() || v6(n).Gateway != a("fd00:1::fe") || !v6(n).Masquerade {
				return "want v4 first, the v6 gateway given and ULA masqueraded"
			}
			return ""
		}},
		{"v6 anycast gateway", NetworkSpec{Name: "n", Subnets: []Subnet{{Prefix: ula, Gateway: a("fd00:1::")}}}, []netip.Prefix{sub, ula}, "subnet-router anycast", nil},
		{"global v6 not masqueraded", NetworkSpec{Name: "n"}, []netip.Prefix{sub, global}, "", func(n *Network) string {
			if !v4(n).Masquerade || v6(n).Masquerade {
				return "want v4 masqueraded and the global v6 subnet routed"
			}
			return ""
		}},
		{"global v6 masquerade asked", NetworkSpec{Name: "n", Masquerade: &tr}, []netip.Prefix{sub, global}, "", func(n *Network) string {
			if !v6(n).Masquerade {
				return "masquerade asked for"
			}
			return ""
		}},
		{"mtu below v6 minimum", NetworkSpec{Name: "n", IPv6: true, MTU: 1000}, []netip.Prefix{sub, ula}, "1280", nil},
		{"mtu low", NetworkSpec{Name: "n", MTU: 100}, nil, "mtu", nil},
		{"mtu ok", NetworkSpec{Name: "n", MTU: 9000}, nil, "", nil},
		{"driver name", NetworkSpec{Name: "n", Driver: "bad driver"}, nil, "not allowed", nil},
		{"bridge long", NetworkSpec{Name: "n", Bridge: "abcdefghijklmnop"}, nil, "at most 15", nil},
		{"label empty key", NetworkSpec{Name: "n", Labels: map[string]string{"": "v"}}, nil, "empty key", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := c.prefixes
			if ps == nil {
				ps = []netip.Prefix{sub}
			}
			n, err := BuildNetwork(c.spec, ps, "0123456789abcdef")
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid saying %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.chk != nil {
				if msg := c.chk(n); msg != "" {
					t.Fatalf("%s: %+v", msg, n)
				}
			}
		})
	}
}

func TestCheckStaticIP(t *testing.T) {
	n := &Network{Name: "n", Subnets: []Subnet{
		{Prefix: netip.MustParsePrefix("10.90.1.0/24"), Gateway: netip.MustParseAddr("10.90.1.1"), IPRange: netip.MustParsePrefix("10.90.1.0/25")},
		{Prefix: netip.MustParsePrefix("fd00:1::/64"), Gateway: netip.MustParseAddr("fd00:1::1")},
	}}
	v4only := &Network{Name: "four", Subnets: n.Subnets[:1]}
	for _, c := range []struct {
		n        *Network
		ip, want string
	}{
		{n, "10.90.1.10", ""},
		{n, "10.90.1.1", "gateway"},
		{n, "10.90.1.0", "network address"},
		{n, "10.90.1.255", "broadcast"},
		{n, "10.90.1.200", ""}, // outside the ip-range: it limits only automatic allocation
		{n, "10.90.1.254", ""},
		{n, "10.90.2.10", "outside subnet"},
		{n, "fd00:1::10", ""},
		{n, "fd00:1::ffff:ffff:ffff:ffff", ""}, // no broadcast in IPv6
		{n, "fd00:1::1", "gateway"},
		{n, "fd00:1::", "subnet-router anycast"},
		{n, "fd00:2::10", "outside subnet"},
		{v4only, "fd00:1::10", "no IPv6 subnet"},
	} {
		err := CheckStaticIP(c.n, netip.MustParseAddr(c.ip))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckStaticIP(%s, %s) = %v, want %q", c.n.Name, c.ip, err, c.want)
		}
	}
}

// A state file written by the IPv4-only layout (singular subnet, gateway,
// ip_range and masquerade on the network; ip, prefix_len and gateway on
// the endpoint) reads into today's plural shapes.
func TestOldLayoutMigrates(t *testing.T) {
	var n Network
	old := []byte(`{"id":"x","name":"app","driver":"bridge","bridge":"ptbr-1","subnet":"10.90.1.0/24","gateway":"10.90.1.1","ip_range":"10.90.1.128/25","internal":false,"icc":true,"masquerade":false,"mtu":1500}`)
	if err := json.Unmarshal(old, &n); err != nil {
		t.Fatal(err)
	}
	if err := n.UpgradeFrom(old); err != nil {
		t.Fatal(err)
	}
	want := []Subnet{{Prefix: netip.MustParsePrefix("10.90.1.0/24"), Gateway: netip.MustParseAddr("10.90.1.1"), IPRange: netip.MustParsePrefix("10.90.1.128/25"), Masquerade: false}}
	if !slices.Equal(n.Subnets, want) || n.Name != "app" || !n.ICC || n.MTU != 1500 {
		t.Fatalf("network %+v, want subnets %+v", n, want)
	}
	var ep Endpoint
	oldEp := []byte(`{"id":"e","network":"app","sandbox":"a","ifname":"eth0","host_if":"ptv-1","ip":"10.90.1.5","mac":"02:42:0a:5a:01:05","gateway":"10.90.1.1","prefix_len":24,"mtu":1500,"primary":true,"state":"ready"}`)
	if err := json.Unmarshal(oldEp, &ep); err != nil {
		t.Fatal(err)
	}
	if err := ep.UpgradeFrom(oldEp); err != nil {
		t.Fatal(err)
	}
	wantA := []Address{{Addr: netip.MustParsePrefix("10.90.1.5/24"), Gateway: netip.MustParseAddr("10.90.1.1")}}
	if !slices.Equal(ep.Addresses, wantA) || ep.Sandbox != "a" || !ep.Primary || ep.State != StateReady {
		t.Fatalf("endpoint %+v, want addresses %+v", ep, wantA)
	}
	// Today's layout round-trips and is not read as the old one.
	b, _ := json.Marshal(&ep)
	var back Endpoint
	if err := json.Unmarshal(b, &back); err != nil || back.UpgradeFrom(b) != nil || !slices.Equal(back.Addresses, wantA) {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func TestNamesAreDeterministicAndShort(t *testing.T) {
	id := NewID()
	if HostVethName(id) != HostVethName(id) || BridgeName(id) != BridgeName(id) {
		t.Fatal("names not deterministic")
	}
	if len(HostVethName(id)) > MaxIfNameLen || len(BridgeName(id)) > MaxIfNameLen {
		t.Fatalf("names too long: %s %s", HostVethName(id), BridgeName(id))
	}
	if HostVethName(id) == HostVethName(NewID()) {
		t.Fatal("two IDs, one name")
	}
	if got := MACFromIP(netip.MustParseAddr("10.88.0.2")).String(); got != "02:42:0a:58:00:02" {
		t.Fatalf("MAC %s", got)
	}
	if got := MACFromIP(netip.MustParseAddr("fd00:1::a:5")).String(); got != "02:42:00:0a:00:05" {
		t.Fatalf("MAC of an IPv6 address %s", got)
	}
	if Broadcast(netip.MustParsePrefix("fd00:1::/120")).String() != "fd00:1::ff" {
		t.Fatal("last address of a v6 prefix")
	}
	if Broadcast(netip.MustParsePrefix("10.90.1.0/24")).String() != "10.90.1.255" {
		t.Fatal("broadcast")
	}
}

// A CNI container's sandbox name is a valid name whatever the runtime's
// container ID, and the same as the plugin made before the daemon did.
func TestCNISandboxName(t *testing.T) {
	for id, want := range map[string]string{
		"ctr1":                     "cni-ctr1",
		"k8s_pod/ns:a b":           "cni-k8s_pod-ns-a-b",
		"é€x":                      "cni---x",
		strings.Repeat("0123", 20): "cni-" + strings.Repeat("0123", 20)[:MaxNameLen-4],
	} {
		got := CNISandboxName(id)
		if got != want {
			t.Errorf("CNISandboxName(%q) = %q, want %q", id, got, want)
		}
		if err := ValidateName("sandbox", got); err != nil {
			t.Errorf("CNISandboxName(%q) = %q: %v", id, got, err)
		}
	}
}

// validName accepts exactly what the regular expression it replaced did.
func TestValidNameMatchesItsRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	alphabet := []string{"a", "Z", "0", "9", "_", ".", "-", " ", "/", "é", "\x00", ":", "\n"}
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		if got, want := validName(prefix), re.MatchString(prefix); got != want {
			t.Errorf("validName(%q) = %v, the regexp says %v", prefix, got, want)
		}
		if depth == 0 {
			return
		}
		for _, c := range alphabet {
			walk(prefix+c, depth-1)
		}
	}
	walk("", 3)
}
