package firewall

import (
	"context"
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
// their Ethernet header intact. Each endpoint is three set elements (its
// port; port . MAC; port . MAC . IPv4), written over netlink on attach; the
// rules are static, so the per-frame and per-attach costs do not grow with
// the number of sandboxes.
const (
	setGuardPorts = "ports"       // host ends of guarded endpoints
	setGuardMAC   = "port-mac"    // port . the endpoint's MAC
	setGuardIP    = "port-mac-ip" // port . MAC . the endpoint's IPv4
	chainGuardIn  = "anti-spoof"
)

// Guarded is one endpoint's identity on its bridge port: frames from Port
// must carry MAC as source, and IPv4 or ARP frames IP as sender.
type Guarded struct {
	Port string
	MAC  net.HardwareAddr
	IP   netip.Addr
}

func buildGuard(tx *knftables.Transaction, gs []Guarded) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})
	tx.Add(&knftables.Set{Name: setGuardPorts, Type: "ifname", Comment: knftables.PtrTo("bridge ports of guarded endpoints")})
	tx.Add(&knftables.Set{Name: setGuardMAC, Type: "ifname . ether_addr", Comment: knftables.PtrTo("port . the endpoint's MAC")})
	tx.Add(&knftables.Set{Name: setGuardIP, Type: "ifname . ether_addr . ipv4_addr", Comment: knftables.PtrTo("port . MAC . the endpoint's address")})
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

func guardElements(g Guarded) []*knftables.Element {
	port := `"` + g.Port + `"`
	mac := g.MAC.String()
	return []*knftables.Element{
		{Set: setGuardPorts, Key: []string{port}},
		{Set: setGuardMAC, Key: []string{port, mac}},
		{Set: setGuardIP, Key: []string{port, mac, g.IP.String()}},
	}
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
		ip := g.IP.As4()
		els = append(els,
			nlElem{family: gnft.TableFamilyBridge, set: setGuardPorts, key: port},
			nlElem{family: gnft.TableFamilyBridge, set: setGuardMAC, key: append(slices.Clone(port), mac...)},
			nlElem{family: gnft.TableFamilyBridge, set: setGuardIP, key: append(append(slices.Clone(port), mac...), ip[:]...)})
	}
	return n.w.write(add, els)
}

func (f *nft) Guard(ctx context.Context, gs []Guarded) error {
	if err := f.guards.write(ctx, true, gs); err != nil {
		return fmt.Errorf("anti-spoofing: %w", err)
	}
	return nil
}

func (f *nft) Unguard(ctx context.Context, gs []Guarded) error {
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
