package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PortMapping publishes sandbox ports on the host: HostIP:HostPort-HostPortEnd
// → sandbox Port-PortEnd, for one protocol. A zero HostIP means every IPv4
// address of the host.
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
	if p.HostIP.IsValid() {
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
		return PortMapping{}, Invalidf("port mapping %q %s: write it as [hostIP:]hostPort[-end]:sandboxPort[-end][/tcp|udp|sctp], e.g. 8080:80 or 127.0.0.1:9090:90/udp", s, why)
	}
	spec, proto, hasProto := strings.Cut(s, "/")
	if !hasProto {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return bad("has an unknown protocol " + strconv.Quote(proto))
	}
	parts := strings.Split(spec, ":")
	var m PortMapping
	m.Proto = proto
	switch len(parts) {
	case 2:
	case 3:
		ip, err := netip.ParseAddr(parts[0])
		if err != nil || !ip.Is4() {
			return bad("has a host address that is not IPv4")
		}
		if !ip.IsUnspecified() {
			m.HostIP = ip
		}
		parts = parts[1:]
	default:
		return bad("is not in the right form")
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
