package model

import (
	"errors"
	"net/netip"
	"regexp"
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
		if _, err := BuildNetwork(NetworkSpec{Name: name}, netip.MustParsePrefix("10.90.1.0/24"), NewID()); !errors.Is(err, ErrInvalid) {
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
		{"fd00::/64", false, "not IPv4"},
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
	f := false
	for _, c := range []struct {
		name string
		spec NetworkSpec
		want string // error substring; "" = ok
		chk  func(*Network) string
	}{
		{"defaults", NetworkSpec{Name: "n"}, "", func(n *Network) string {
			if n.Gateway.String() != "10.90.1.1" || !n.ICC || !n.Masquerade || n.MTU != 1500 || !strings.HasPrefix(n.Bridge, BridgePrefix) || len(n.Bridge) > MaxIfNameLen {
				return "unexpected defaults"
			}
			return ""
		}},
		{"default network bridge", NetworkSpec{Name: DefaultNetwork}, "", func(n *Network) string {
			if n.Bridge != DefaultBridge {
				return "bridge " + n.Bridge
			}
			return ""
		}},
		{"internal implies no masquerade", NetworkSpec{Name: "n", Internal: true}, "", func(n *Network) string {
			if n.Masquerade {
				return "masquerade on an internal network"
			}
			return ""
		}},
		{"icc off", NetworkSpec{Name: "n", ICC: &f}, "", func(n *Network) string {
			if n.ICC {
				return "icc"
			}
			return ""
		}},
		{"gateway given", NetworkSpec{Name: "n", Gateway: "10.90.1.254"}, "", func(n *Network) string {
			if n.Gateway.String() != "10.90.1.254" {
				return n.Gateway.String()
			}
			return ""
		}},
		{"gateway outside", NetworkSpec{Name: "n", Gateway: "10.90.2.1"}, "outside subnet", nil},
		{"gateway network addr", NetworkSpec{Name: "n", Gateway: "10.90.1.0"}, "network address", nil},
		{"gateway broadcast", NetworkSpec{Name: "n", Gateway: "10.90.1.255"}, "broadcast", nil},
		{"gateway not ip", NetworkSpec{Name: "n", Gateway: "x"}, "not an IPv4", nil},
		{"range inside", NetworkSpec{Name: "n", IPRange: "10.90.1.128/25"}, "", nil},
		{"range outside", NetworkSpec{Name: "n", IPRange: "10.90.2.0/25"}, "not inside", nil},
		{"range larger", NetworkSpec{Name: "n", IPRange: "10.90.0.0/16"}, "not inside", nil},
		{"mtu low", NetworkSpec{Name: "n", MTU: 100}, "mtu", nil},
		{"mtu ok", NetworkSpec{Name: "n", MTU: 9000}, "", nil},
		{"driver", NetworkSpec{Name: "n", Driver: "overlay"}, "not supported", nil},
		{"bridge long", NetworkSpec{Name: "n", Bridge: "abcdefghijklmnop"}, "at most 15", nil},
		{"label empty key", NetworkSpec{Name: "n", Labels: map[string]string{"": "v"}}, "empty key", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := BuildNetwork(c.spec, sub, "0123456789abcdef")
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
	n := &Network{Name: "n", Subnet: netip.MustParsePrefix("10.90.1.0/24"), Gateway: netip.MustParseAddr("10.90.1.1"), IPRange: netip.MustParsePrefix("10.90.1.0/25")}
	for _, c := range []struct {
		ip, want string
	}{
		{"10.90.1.10", ""},
		{"10.90.1.1", "gateway"},
		{"10.90.1.0", "network address"},
		{"10.90.1.255", "broadcast"},
		{"10.90.1.200", ""}, // outside the ip-range: it limits only automatic allocation
		{"10.90.1.254", ""},
		{"10.90.2.10", "outside subnet"},
	} {
		err := CheckStaticIP(n, netip.MustParseAddr(c.ip))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckStaticIP(%s) = %v, want %q", c.ip, err, c.want)
		}
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
