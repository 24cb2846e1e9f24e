package firewall

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	gnft "github.com/google/nftables"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// Anti-spoofing lives in a second table, `bridge pontoon`: only the bridge
// family sees frames with the sandbox's bridge port as input interface and
// their Ethernet header intact. Each endpoint is a few set elements (its
// port; port . MAC; port . MAC . address for each of its addresses, in
// its family's set; for an IPv6 address also the same key in the set of
// neighbour-advertisement targets), written over netlink on attach; the
// rules are static (rules.go: guardRules), so the per-frame and per-attach
// costs do not grow with the number of sandboxes.
const (
	setGuardPorts = "ports"       // host ends of guarded endpoints
	setGuardMAC   = "port-mac"    // port . the endpoint's MAC
	setGuardIP    = "port-mac-ip" // port . MAC . an address of the endpoint; + the family's suffix
	// setGuardTarget6 holds the IPv6 elements of port-mac-ip6 again,
	// typed for the raw payload expression that loads a neighbour
	// advertisement's target (KeyNDTarget): nft 1.0.6 will not look a raw
	// payload up in an ipv6_addr set. The kernel compares bytes; the
	// elements are the same 40 bytes.
	setGuardTarget6 = "port-mac-target6"
	chainGuardIn    = "anti-spoof"
)

// Guarded is one endpoint's identity on its bridge port: frames from Port
// must carry MAC as source; IPv4, IPv6 and ARP frames one of IPs as
// sender; neighbour advertisements one of IPs as target.
//
// IPs are every address the endpoint may send from, of both families. An
// IPv6 link-local address belongs there if the sandbox has one and should
// answer neighbour solicitations for it: without it, the sandbox still
// solicits and reports multicast listening from it (rule link-local-nd),
// but sends nothing else from it and advertises only its other addresses.
type Guarded struct {
	Port string
	MAC  net.HardwareAddr
	IPs  []netip.Addr
}

func (g Guarded) validate() error {
	if err := validIfName(g.Port); err != nil {
		return fmt.Errorf("anti-spoofing for port %q: %w", g.Port, err)
	}
	if len(g.MAC) != 6 {
		return fmt.Errorf("anti-spoofing for port %s: MAC %q is not an Ethernet address", g.Port, g.MAC)
	}
	for _, a := range g.IPs {
		if err := addrError("anti-spoofing for port "+g.Port+": address", a); err != nil {
			return err
		}
	}
	return nil
}

func buildGuard(tx *knftables.Transaction, gs []Guarded) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})
	tx.Add(&knftables.Set{Name: setGuardPorts, Type: "ifname", Comment: knftables.PtrTo("bridge ports of guarded endpoints")})
	tx.Add(&knftables.Set{Name: setGuardMAC, Type: "ifname . ether_addr", Comment: knftables.PtrTo("port . the endpoint's MAC")})
	for _, f := range IPFamilies {
		tx.Add(&knftables.Set{Name: f.name(setGuardIP), Type: "ifname . ether_addr . " + f.AddrType,
			Comment: knftables.PtrTo(f.comment("port . MAC . the endpoint's address"))})
	}
	tx.Add(&knftables.Set{Name: setGuardTarget6, TypeOf: "iifname . ether saddr . " + string(KeyNDTarget),
		Comment: knftables.PtrTo("port . MAC . an IPv6 address the endpoint may advertise (raw: neighbour advertisement target)")})
	// The chain and its rules are data (rules.go).
	for _, c := range BridgeChains {
		tx.Add(c.knft())
		for _, r := range c.knftRules() {
			tx.Add(r)
		}
	}
	sorted := slices.Clone(gs)
	slices.SortFunc(sorted, func(a, b Guarded) int { return strings.Compare(a.Port, b.Port) })
	for _, g := range sorted {
		for _, e := range guardElements(g) {
			tx.Add(e)
		}
	}
}

// guardSetNames are the sets of table bridge pontoon.
func guardSetNames() []string {
	out := []string{setGuardPorts, setGuardMAC}
	for _, f := range IPFamilies {
		out = append(out, f.name(setGuardIP))
	}
	return append(out, setGuardTarget6)
}

// ndTarget is an address as nft writes a raw 128-bit payload: hex, in
// network byte order.
func ndTarget(a netip.Addr) string { return "0x" + hex.EncodeToString(a.AsSlice()) }

func guardElements(g Guarded) []*knftables.Element {
	port := `"` + g.Port + `"`
	mac := g.MAC.String()
	out := []*knftables.Element{
		{Set: setGuardPorts, Key: []string{port}},
		{Set: setGuardMAC, Key: []string{port, mac}},
	}
	for _, a := range g.IPs {
		f, ok := familyOf(a)
		if !ok {
			continue // validate refused it
		}
		out = append(out, &knftables.Element{Set: f.name(setGuardIP), Key: []string{port, mac, a.String()}})
		if f.Name == IPv6.Name {
			out = append(out, &knftables.Element{Set: setGuardTarget6, Key: []string{port, mac, ndTarget(a)}})
		}
	}
	return out
}

// guardWriter adds and removes one endpoint's elements between Syncs.
type guardWriter interface {
	write(ctx context.Context, add bool, gs []Guarded) error
}

type knftGuards struct{ nft knftables.Interface }

func (w knftGuards) write(ctx context.Context, add bool, gs []Guarded) error {
	var els []*knftables.Element
	for _, g := range gs {
		els = append(els, guardElements(g)...)
	}
	return writeKnft(ctx, w.nft, add, els)
}

// netlinkGuards writes guard elements with the shared netlinkWriter.
type netlinkGuards struct{ w *netlinkWriter }

// In a concatenation each field takes a multiple of 4 bytes: ifname is
// IFNAMSIZ (16) bytes, a MAC 6 bytes padded to 8.
func ifnameField(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

func macField(m net.HardwareAddr) []byte { return append(append([]byte{}, m...), 0, 0) }

func (n netlinkGuards) write(_ context.Context, add bool, gs []Guarded) error {
	var els []nlElem
	for _, g := range gs {
		port, mac := ifnameField(g.Port), macField(g.MAC)
		portMAC := append(slices.Clone(port), mac...)
		els = append(els,
			nlElem{family: gnft.TableFamilyBridge, set: setGuardPorts, key: port},
			nlElem{family: gnft.TableFamilyBridge, set: setGuardMAC, key: portMAC})
		for _, a := range g.IPs {
			f, ok := familyOf(a)
			if !ok {
				continue // validate refused it
			}
			key := append(slices.Clone(portMAC), a.AsSlice()...)
			els = append(els, nlElem{family: gnft.TableFamilyBridge, set: f.name(setGuardIP), key: key})
			if f.Name == IPv6.Name {
				els = append(els, nlElem{family: gnft.TableFamilyBridge, set: setGuardTarget6, key: key})
			}
		}
	}
	return n.w.write(add, els)
}

// validGuards checks gs before anything is written.
func validGuards(gs []Guarded) error {
	for _, g := range gs {
		if err := g.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (f *nft) Guard(ctx context.Context, gs []Guarded) error {
	if err := validGuards(gs); err != nil {
		return err
	}
	if err := f.guards.write(ctx, true, gs); err != nil {
		return fmt.Errorf("anti-spoofing: %w", err)
	}
	return nil
}

func (f *nft) Unguard(ctx context.Context, gs []Guarded) error {
	if err := validGuards(gs); err != nil {
		return err
	}
	if err := f.guards.write(ctx, false, gs); err != nil {
		return fmt.Errorf("anti-spoofing: %w", err)
	}
	return nil
}

// syncGuard rewrites table bridge pontoon in one transaction.
func (f *nft) syncGuard(ctx context.Context, gs []Guarded) error {
	tx := f.br.NewTransaction()
	buildGuard(tx, gs)
	f.log.Debug("nft transaction", "table", "bridge "+TableName, "text", tx.String())
	if err := f.br.Run(ctx, tx); err != nil {
		return fmt.Errorf("apply table bridge %s: %w", TableName, err)
	}
	return nil
}
