package firewall

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	gnft "github.com/google/nftables"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// portElement is one element of a published-port map: one host port, one
// family.
type portElement struct {
	fam      IPFamily
	hostIP   netip.Addr // invalid: every host address of fam (ports-any, ports-any6)
	proto    string
	hostPort uint16
	target   netip.Addr
	port     uint16
}

// elements expands p into one element per port and target: every target
// for a mapping on every host address, the target of the host address's
// family for one bound to it. It refuses what cannot be written, or would
// publish nothing, and says why.
func (p Published) elements() ([]portElement, error) {
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("published port %s: %w", p.PortMapping, err)
	}
	out := make([]portElement, 0, p.Len()*len(p.Targets))
	for _, t := range p.Targets {
		f, _ := familyOf(t)
		if p.HostIP.IsValid() && !f.Has(p.HostIP) {
			continue // NAT does not cross families
		}
		for i := 0; i < p.Len(); i++ {
			out = append(out, portElement{fam: f, hostIP: p.HostIP, proto: p.Proto, hostPort: p.HostPort + uint16(i),
				target: t, port: p.Port + uint16(i)})
		}
	}
	return out, nil
}

// check says why p cannot be published, or nil.
func (p Published) check() error {
	if _, ok := protoNumbers[p.Proto]; !ok {
		return fmt.Errorf("protocol %q is not tcp, udp or sctp", p.Proto)
	}
	if p.HostPortEnd < p.HostPort || p.PortEnd-p.Port != p.HostPortEnd-p.HostPort || p.HostPort == 0 || p.Port == 0 {
		return fmt.Errorf("the host and sandbox port ranges must be non-empty, from 1, and of the same length")
	}
	if p.HostIP.IsValid() {
		if err := addrError("host address", p.HostIP); err != nil {
			return err
		}
		if isLoopbackOnly(p.HostIP) {
			return fmt.Errorf("the kernel cannot forward [%s] to a sandbox with NAT (it drops ::1 on any interface but lo); serve it with a userspace relay, or publish on 127.0.0.1 or a host address", p.HostIP)
		}
	}
	if len(p.Targets) == 0 {
		return fmt.Errorf("no target address")
	}
	var seen [2]netip.Addr // by family: IPv4, IPv6
	hostFamily := false
	for _, t := range p.Targets {
		if err := addrError("target", t); err != nil {
			return err
		}
		i := 0
		if t.Is6() {
			i = 1
		}
		if seen[i].IsValid() {
			return fmt.Errorf("two %s targets (%s, %s): an endpoint has one address per family", IPFamilies[i].Label, seen[i], t)
		}
		seen[i] = t
		hostFamily = hostFamily || !p.HostIP.IsValid() || IPFamilies[i].Has(p.HostIP)
	}
	if !hostFamily {
		f, _ := familyOf(p.HostIP)
		return fmt.Errorf("bound to the %s address %s, but the endpoint has no %s address to forward it to", f.Label, p.HostIP, f.Label)
	}
	return nil
}

// portElements expands mappings into one element per port and target,
// sorted, or says which mapping cannot be published.
func portElements(ps []Published) ([]portElement, error) {
	var out []portElement
	for _, p := range ps {
		els, err := p.elements()
		if err != nil {
			return nil, err
		}
		out = append(out, els...)
	}
	slices.SortFunc(out, func(a, b portElement) int {
		return cmp.Or(cmp.Compare(a.fam.Suffix, b.fam.Suffix), a.hostIP.Compare(b.hostIP), cmp.Compare(a.proto, b.proto), cmp.Compare(a.hostPort, b.hostPort))
	})
	return out, nil
}

func (e portElement) mapName() string {
	if e.hostIP.IsValid() {
		return e.fam.name(mapPortsIP)
	}
	return e.fam.name(mapPortsAny)
}

func (e portElement) knft() *knftables.Element {
	val := []string{e.target.String(), strconv.Itoa(int(e.port))}
	key := []string{e.proto, strconv.Itoa(int(e.hostPort))}
	if e.hostIP.IsValid() {
		key = append([]string{e.hostIP.String()}, key...)
	}
	return &knftables.Element{Map: e.mapName(), Key: key, Value: val}
}

var protoNumbers = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// In a concatenation every field takes a multiple of 4 bytes (nft's
// register alignment); ports are in network byte order, addresses 4 or 16
// bytes.
func protoField(p string) []byte    { return []byte{protoNumbers[p], 0, 0, 0} }
func portField(p uint16) []byte     { return []byte{byte(p >> 8), byte(p), 0, 0} }
func addrField(a netip.Addr) []byte { return a.AsSlice() }

// netlink returns the map name and the element in netlink's encoding.
func (e portElement) netlink() (string, gnft.SetElement) {
	val := append(addrField(e.target), portField(e.port)...)
	key := append(protoField(e.proto), portField(e.hostPort)...)
	if e.hostIP.IsValid() {
		key = append(addrField(e.hostIP), key...)
	}
	return e.mapName(), gnft.SetElement{Key: key, Val: val}
}

// elementWriter adds and removes published-port elements.
type elementWriter interface {
	write(ctx context.Context, add bool, es []portElement) error
	// writeAddrs adds or removes addresses of an address set of table
	// inet pontoon (vxlanpeers.go).
	writeAddrs(ctx context.Context, add bool, set string, addrs []netip.Addr) error
}

// knftElements writes through knftables (the fake; nft transactions).
type knftElements struct{ nft knftables.Interface }

func (w knftElements) write(ctx context.Context, add bool, es []portElement) error {
	els := make([]*knftables.Element, 0, len(es))
	for _, e := range es {
		els = append(els, e.knft())
	}
	return writeKnft(ctx, w.nft, add, els)
}

// writeKnft adds or removes elements in one knftables transaction (the
// fake's path; the real firewall writes elements over netlink).
func writeKnft(ctx context.Context, nft knftables.Interface, add bool, els []*knftables.Element) error {
	tx := nft.NewTransaction()
	for _, e := range els {
		if add {
			tx.Add(e)
		} else {
			tx.Delete(e)
		}
	}
	return nft.Run(ctx, tx)
}

// netlinkElements writes port elements with the shared netlinkWriter.
type netlinkElements struct{ w *netlinkWriter }

func (n netlinkElements) write(_ context.Context, add bool, es []portElement) error {
	els := make([]nlElem, 0, len(es))
	for _, e := range es {
		name, el := e.netlink()
		els = append(els, nlElem{family: gnft.TableFamilyINet, set: name, isMap: true, key: el.Key, val: el.Val})
	}
	return n.w.write(add, els)
}

func (f *nft) Publish(ctx context.Context, ps []Published) error {
	els, err := portElements(ps)
	if err != nil {
		return err // nothing written
	}
	if err := f.elems.write(ctx, true, els); err != nil {
		return fmt.Errorf("publish ports: %w", err)
	}
	return nil
}

func (f *nft) Unpublish(ctx context.Context, ps []Published) error {
	els, err := portElements(ps)
	if err != nil {
		return err
	}
	if err := f.elems.write(ctx, false, els); err != nil {
		return fmt.Errorf("unpublish ports: %w", err)
	}
	return nil
}
