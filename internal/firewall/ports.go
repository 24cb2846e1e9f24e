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

// portElement is one element of a published-port map: one host port.
type portElement struct {
	hostIP   netip.Addr // invalid: every host address (ports-any)
	proto    string
	hostPort uint16
	target   netip.Addr
	port     uint16
}

// portElements expands mappings into one element per port, sorted.
func portElements(ps []Published) []portElement {
	var out []portElement
	for _, p := range ps {
		for i := 0; i < p.Len(); i++ {
			out = append(out, portElement{hostIP: p.HostIP, proto: p.Proto, hostPort: p.HostPort + uint16(i),
				target: p.Target, port: p.Port + uint16(i)})
		}
	}
	slices.SortFunc(out, func(a, b portElement) int {
		return cmp.Or(a.hostIP.Compare(b.hostIP), cmp.Compare(a.proto, b.proto), cmp.Compare(a.hostPort, b.hostPort))
	})
	return out
}

func (e portElement) knft() *knftables.Element {
	val := []string{e.target.String(), strconv.Itoa(int(e.port))}
	if e.hostIP.IsValid() {
		return &knftables.Element{Map: mapPortsIP, Key: []string{e.hostIP.String(), e.proto, strconv.Itoa(int(e.hostPort))}, Value: val}
	}
	return &knftables.Element{Map: mapPortsAny, Key: []string{e.proto, strconv.Itoa(int(e.hostPort))}, Value: val}
}

var protoNumbers = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// In a concatenation every field takes a multiple of 4 bytes (nft's
// register alignment); ports are in network byte order.
func protoField(p string) []byte { return []byte{protoNumbers[p], 0, 0, 0} }
func portField(p uint16) []byte  { return []byte{byte(p >> 8), byte(p), 0, 0} }
func addrField(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

// netlink returns the map name and the element in netlink's encoding.
func (e portElement) netlink() (string, gnft.SetElement) {
	val := append(addrField(e.target), portField(e.port)...)
	key := append(protoField(e.proto), portField(e.hostPort)...)
	if e.hostIP.IsValid() {
		return mapPortsIP, gnft.SetElement{Key: append(addrField(e.hostIP), key...), Val: val}
	}
	return mapPortsAny, gnft.SetElement{Key: key, Val: val}
}

// elementWriter adds and removes published-port elements.
type elementWriter interface {
	write(ctx context.Context, add bool, es []portElement) error
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
	if err := f.elems.write(ctx, true, portElements(ps)); err != nil {
		return fmt.Errorf("publish ports: %w", err)
	}
	return nil
}

func (f *nft) Unpublish(ctx context.Context, ps []Published) error {
	if err := f.elems.write(ctx, false, portElements(ps)); err != nil {
		return fmt.Errorf("unpublish ports: %w", err)
	}
	return nil
}
