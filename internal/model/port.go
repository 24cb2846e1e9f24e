package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PortMapping publishes sandbox ports on the host: HostIP:HostPort-HostPortEnd
// → sandbox Port-PortEnd, for one protocol. A zero HostIP means every
// address of the host, of both families (to the sandbox's address of the
// same family).
type PortMapping struct {
	HostIP      netip.Addr `json:"host_ip,omitzero"`
	HostPort    uint16     `json:"host_port"`
	HostPortEnd uint16     `json:"host_port_end"`
	Port        uint16     `json:"port"`
	PortEnd     uint16     `json:"port_end"`
	Proto       string     `json:"proto"`
}

// Len is the number of ports the mapping covers.
func (p PortMapping) Len() int { return int(p.HostPortEnd) - int(p.HostPort) + 1 }

// String renders the mapping in the -p syntax.
func (p PortMapping) String() string {
	var b strings.Builder
	switch {
	case p.HostIP.Is6():
		b.WriteString("[" + p.HostIP.String() + "]:")
	case p.HostIP.IsValid():
		b.WriteString(p.HostIP.String() + ":")
	}
	b.WriteString(portRange(p.HostPort, p.HostPortEnd) + ":" + portRange(p.Port, p.PortEnd) + "/" + p.Proto)
	return b.String()
}

func portRange(a, b uint16) string {
	if a == b {
		return strconv.Itoa(int(a))
	}
	return fmt.Sprintf("%d-%d", a, b)
}

// Overlaps reports whether two mappings claim a common host address, port
// and protocol (a mapping on every address overlaps one on any address).
func (p PortMapping) Overlaps(o PortMapping) bool {
	if p.Proto != o.Proto {
		return false
	}
	if p.HostIP.IsValid() && o.HostIP.IsValid() && p.HostIP != o.HostIP {
		return false
	}
	return p.HostPort <= o.HostPortEnd && o.HostPort <= p.HostPortEnd
}

// ParsePortMapping parses [hostIP:]hostPort[-end]:sandboxPort[-end][/tcp|udp|sctp].
func ParsePortMapping(s string) (PortMapping, error) {
	bad := func(why string) (PortMapping, error) {
		return PortMapping{}, Invalidf("port mapping %q %s: write it as [hostIP:]hostPort[-end]:sandboxPort[-end][/tcp|udp|sctp], e.g. 8080:80, 127.0.0.1:9090:90/udp or [::1]:8080:80", s, why)
	}
	spec, proto, hasProto := strings.Cut(s, "/")
	if !hasProto {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return bad("has an unknown protocol " + strconv.Quote(proto))
	}
	var m PortMapping
	m.Proto = proto
	host := ""
	if strings.HasPrefix(spec, "[") {
		// [IPv6]:hostPort:port, as Docker writes it.
		h, rest, ok := strings.Cut(spec[1:], "]:")
		if !ok {
			return bad("has an IPv6 host address without its closing \"]:\"")
		}
		host, spec = h, rest
	} else if i := strings.LastIndex(spec, ":"); strings.Count(spec, ":") > 2 && i > 0 {
		return bad("has an IPv6 host address without brackets (write [::1]:8080:80)")
	}
	parts := strings.Split(spec, ":")
	switch {
	case len(parts) == 3 && host == "":
		host, parts = parts[0], parts[1:]
	case len(parts) == 2:
	default:
		return bad("is not in the right form")
	}
	if host != "" {
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.Zone() != "" {
			return bad("has a host address that is not an IP address")
		}
		if ip = ip.Unmap(); !ip.IsUnspecified() {
			m.HostIP = ip
		}
	}
	var err error
	if m.HostPort, m.HostPortEnd, err = parsePortRange(parts[0]); err != nil {
		return bad("has a bad host port: " + err.Error())
	}
	if m.Port, m.PortEnd, err = parsePortRange(parts[1]); err != nil {
		return bad("has a bad sandbox port: " + err.Error())
	}
	if m.HostPortEnd-m.HostPort != m.PortEnd-m.Port {
		return bad("maps ranges of different lengths")
	}
	return m, nil
}

func parsePortRange(s string) (uint16, uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return a, a, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return 0, 0, err
	}
	if b < a {
		return 0, 0, fmt.Errorf("range %s ends before it starts", s)
	}
	return a, b, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return uint16(n), nil
}

// Normalize checks a mapping that came as structured data (JSON) rather
// than through ParsePortMapping, and fills what may be left out: a zero
// end means a single port, an empty protocol means tcp.
func (p *PortMapping) Normalize() error {
	if p.Proto == "" {
		p.Proto = "tcp"
	}
	if p.HostPortEnd == 0 {
		p.HostPortEnd = p.HostPort
	}
	if p.PortEnd == 0 {
		p.PortEnd = p.Port
	}
	bad := func(why string) error {
		return Invalidf("port mapping %s %s", p, why)
	}
	switch {
	case p.Proto != "tcp" && p.Proto != "udp" && p.Proto != "sctp":
		return bad("has an unknown protocol: use tcp, udp or sctp")
	case p.HostPort == 0 || p.Port == 0:
		return bad("has port 0: ports run from 1 to 65535")
	case p.HostPortEnd < p.HostPort || p.PortEnd < p.Port:
		return bad("has a range that ends before it starts")
	case p.HostPortEnd-p.HostPort != p.PortEnd-p.Port:
		return bad("maps ranges of different lengths")
	case p.HostIP.IsValid() && (p.HostIP.Zone() != "" || p.HostIP.Is4In6()):
		return bad("has a host address that is not a plain IPv4 or IPv6 address")
	case p.HostIP.IsUnspecified():
		p.HostIP = netip.Addr{}
	}
	return nil
}
