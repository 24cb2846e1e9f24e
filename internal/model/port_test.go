package model

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePortMapping(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{"8080:80", "8080:80/tcp", ""},
		{"127.0.0.1:9090:90/udp", "127.0.0.1:9090:90/udp", ""},
		{"0.0.0.0:53:53/UDP", "53:53/udp", ""},
		{"30000-30010:30000-30010", "30000-30010:30000-30010/tcp", ""},
		{"8000-8001:80-81/sctp", "8000-8001:80-81/sctp", ""},
		{"80", "", "not in the right form"},
		{"a:b:c:d", "", "without brackets"},
		{"a:b:c", "", "not an IP address"},
		{"[::1]:8080:80", "[::1]:8080:80/tcp", ""},
		{"[fd00::5]:53:53/udp", "[fd00::5]:53:53/udp", ""},
		{"[::]:8080:80", "8080:80/tcp", ""},
		{"[::1:8080:80", "", "closing"},
		{"[::1]:80", "", "not in the right form"},
		{"8080:80/icmp", "", "unknown protocol"},
		{"::1:8080:80", "", "without brackets"},
		{"0:80", "", "1 to 65535"},
		{"70000:80", "", "1 to 65535"},
		{"8080-8081:80", "", "different lengths"},
		{"8081-8080:80-81", "", "ends before it starts"},
		{"fe80::1:80:80", "", "without brackets"},
		{"[fe80::1%eth0]:80:80", "", "not an IP address"},
		{"x.y:80:80", "", "not an IP address"},
	} {
		m, err := ParsePortMapping(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%q: %v, want error %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || m.String() != c.want {
			t.Errorf("%q: %v %q, want %q", c.in, err, m.String(), c.want)
		}
	}
}

func TestPortMappingOverlaps(t *testing.T) {
	p := func(s string) PortMapping { m, _ := ParsePortMapping(s); return m }
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"8080:80", "8080:81", true},
		{"8080:80", "8080:80/udp", false},
		{"127.0.0.1:8080:80", "8080:80", true},
		{"127.0.0.1:8080:80", "10.0.0.1:8080:80", false},
		{"[::1]:8080:80", "127.0.0.1:8080:80", false},
		{"[::1]:8080:80", "8080:80", true},
		{"30000-30010:1-11", "30010:5", true},
		{"30000-30010:1-11", "30011:5", false},
	} {
		if got := p(c.a).Overlaps(p(c.b)); got != c.want {
			t.Errorf("%s vs %s: %v", c.a, c.b, got)
		}
	}
}

// Mappings that come as JSON are checked and completed like parsed ones.
func TestPortMappingNormalize(t *testing.T) {
	for _, c := range []struct {
		in   PortMapping
		want string
		err  string
	}{
		{PortMapping{HostPort: 8080, Port: 80}, "8080:80/tcp", ""},
		{PortMapping{HostPort: 53, Port: 53, Proto: "udp", HostIP: netip.IPv6Unspecified()}, "53:53/udp", ""},
		{PortMapping{HostPort: 0, Port: 80}, "", "port 0"},
		{PortMapping{HostPort: 80, Port: 80, Proto: "icmp"}, "", "unknown protocol"},
		{PortMapping{HostPort: 80, HostPortEnd: 81, Port: 80}, "", "different lengths"},
		{PortMapping{HostPort: 81, HostPortEnd: 80, Port: 81, PortEnd: 80}, "", "ends before"},
	} {
		m := c.in
		err := m.Normalize()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: %v, want error %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || m.String() != c.want {
			t.Errorf("%+v: %v %q, want %q", c.in, err, m.String(), c.want)
		}
	}
}
