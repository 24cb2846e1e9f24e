package trace

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Kernel answers the lookups the seeds make by hand (ip route get, ip
// neigh, ip -d link, bridge fdb) from netlink, changing nothing. The
// engine implements it over package link.
type Kernel interface {
	// SandboxRoute is `ip route get DST` inside ep's sandbox.
	SandboxRoute(ep Endpoint, dst netip.Addr) (Route, error)
	// SandboxNeigh is `ip neigh show ADDR dev IFNAME` inside ep's sandbox.
	SandboxNeigh(ep Endpoint, addr netip.Addr) (Neigh, error)
	// HostPort is the host end of ep's veth (`ip -d link show HOSTIF`).
	HostPort(ep Endpoint) (Port, error)
	// FDB is the bridge's forwarding entry for mac (`bridge fdb show br
	// BRIDGE`), or a zero FDBEntry when it has not learned it.
	FDB(bridge string, mac net.HardwareAddr) (FDBEntry, error)
	// HostRoute is `ip route get DST from SRC iif IIF` on the host (iif
	// "": the host's own packet).
	HostRoute(dst, src netip.Addr, iif string) (Route, error)
	// HostNeigh is `ip neigh show ADDR dev DEV` on the host.
	HostNeigh(dev string, addr netip.Addr) (Neigh, error)
}

// Route is a routing decision.
type Route struct {
	Type    string // unicast, local, unreachable, …
	Dst     netip.Addr
	Dev     string
	Gateway netip.Addr
	Src     netip.Addr
	Table   int
}

func (r Route) String() string {
	var b strings.Builder
	if r.Type != "" && r.Type != "unicast" {
		b.WriteString(r.Type + " ")
	}
	b.WriteString(r.Dst.String())
	if r.Gateway.IsValid() {
		b.WriteString(" via " + r.Gateway.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Table != 0 && r.Table != 254 {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	return b.String()
}

// Neigh is a neighbour (ARP) entry; State "" when there is none.
type Neigh struct {
	MAC   net.HardwareAddr
	State string // REACHABLE, STALE, DELAY, PROBE, INCOMPLETE, FAILED, PERMANENT, NOARP
}

func (n Neigh) resolved() bool {
	return len(n.MAC) == 6 && n.State != "" && n.State != "INCOMPLETE" && n.State != "FAILED"
}

// Port is the host end of a veth, as a bridge port.
type Port struct {
	Name      string
	Index     int
	Master    string // the bridge it is a port of
	Isolated  bool
	Up        bool
	PeerIndex int // the ifindex of its peer (eth0) in the sandbox: iflink
}

// FDBEntry is where a bridge forwards a MAC: Port, or Self for the
// bridge's own address. Zero when not learned (the frame is flooded).
type FDBEntry struct {
	Port string
	Self bool
}

// The lookups below attach the kernel's answer to the hop just added.

func (w *walk) kernelSays(text string, differs bool) {
	h := &w.hops[len(w.hops)-1]
	h.Kernel, h.Differs = text, differs
}

func (w *walk) lookupFailed(err error) { w.kernelSays("lookup failed: "+err.Error(), false) }

// lookupSandboxRoute: want dev "" means the prediction is "no route".
func (w *walk) lookupSandboxRoute(ep *Endpoint, dev string, gw netip.Addr) {
	if w.k == nil {
		return
	}
	r, err := w.k.SandboxRoute(*ep, w.pkt.Dst)
	if err != nil {
		if dev == "" && strings.Contains(err.Error(), "unreachable") {
			w.kernelSays("unreachable: "+err.Error(), false)
			return
		}
		w.lookupFailed(err)
		return
	}
	if dev == "" {
		w.kernelSays(r.String(), r.Type != "unreachable" && r.Type != "")
		return
	}
	w.kernelSays(r.String(), r.Dev != dev || r.Gateway != gw)
}

// lookupSandboxNeigh: want nil means the prediction is "no answer".
func (w *walk) lookupSandboxNeigh(ep *Endpoint, addr netip.Addr, want net.HardwareAddr) {
	if w.k == nil {
		return
	}
	n, err := w.k.SandboxNeigh(*ep, addr)
	if err != nil {
		w.lookupFailed(err)
		return
	}
	w.kernelSays(neighText(addr, ep.IfName, n), neighDiffers(n, want))
}

func neighText(addr netip.Addr, dev string, n Neigh) string {
	if n.State == "" {
		return fmt.Sprintf("%s dev %s: no entry yet (ARP resolves it on the first packet)", addr, dev)
	}
	if len(n.MAC) == 0 {
		return fmt.Sprintf("%s dev %s %s", addr, dev, n.State)
	}
	return fmt.Sprintf("%s dev %s lladdr %s %s", addr, dev, n.MAC, n.State)
}

func neighDiffers(n Neigh, want net.HardwareAddr) bool {
	if want == nil {
		return n.resolved()
	}
	return n.resolved() && n.MAC.String() != want.String()
}

func (w *walk) lookupPort(ep *Endpoint, n *Network) {
	if w.k == nil {
		return
	}
	p, err := w.k.HostPort(*ep)
	if err != nil {
		w.lookupFailed(err)
		return
	}
	state := "down"
	if p.Up {
		state = "up"
	}
	iso := "off"
	if p.Isolated {
		iso = "on"
	}
	text := fmt.Sprintf("%s ifindex %d master %s isolated %s %s; its peer is ifindex %d in the sandbox", p.Name, p.Index, p.Master, iso, state, p.PeerIndex)
	w.kernelSays(text, p.Master != n.Bridge || p.Isolated != !n.ICC || !p.Up)
}

// lookupFDB: want "" means the bridge's own MAC (routed).
func (w *walk) lookupFDB(bridge string, mac net.HardwareAddr, want string) {
	if w.k == nil {
		return
	}
	e, err := w.k.FDB(bridge, mac)
	if err != nil {
		w.lookupFailed(err)
		return
	}
	switch {
	case e.Self:
		w.kernelSays(fmt.Sprintf("%s dev %s self permanent: the bridge's own", mac, bridge), want != "")
	case e.Port == "":
		w.kernelSays(fmt.Sprintf("%s not learned yet on %s: flooded to every port", mac, bridge), false)
	default:
		w.kernelSays(fmt.Sprintf("%s dev %s master %s", mac, e.Port, bridge), e.Port != want)
	}
}

// lookupHostRoute: want "" means local delivery.
func (w *walk) lookupHostRoute(iif, want string) {
	if w.k == nil {
		return
	}
	r, err := w.k.HostRoute(w.pkt.Dst, w.pkt.Src, iif)
	if err != nil {
		w.lookupFailed(err)
		return
	}
	if want == "" {
		w.kernelSays(r.String(), r.Type != "local")
		return
	}
	w.kernelSays(r.String(), r.Dev != want)
}

func (w *walk) lookupHostNeigh(dev string, addr netip.Addr, want net.HardwareAddr) {
	if w.k == nil {
		return
	}
	n, err := w.k.HostNeigh(dev, addr)
	if err != nil {
		w.lookupFailed(err)
		return
	}
	w.kernelSays(neighText(addr, dev, n), want != nil && neighDiffers(n, want))
}
