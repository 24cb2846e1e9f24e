package link

import (
	"errors"
	"fmt"
	"net/netip"
)

// The Fake's host-gw routes (hostroute.go): per device, destination →
// gateway, as the kernel would hold pontoon's routes. A device's connected
// prefixes are the Fake's Nets of kind HostAddress on it.

// hostRoutesLocked returns f.hr, making it; f.mu is held.
func (f *Fake) hostRoutesLocked() map[string]map[netip.Prefix]netip.Addr {
	if f.hr == nil {
		f.hr = map[string]map[netip.Prefix]netip.Addr{}
	}
	return f.hr
}

// connectedLocked is the device's directly connected prefixes; f.mu is held.
func (f *Fake) connectedLocked(dev string) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range f.Nets {
		if n.Link == dev && n.Kind == HostAddress {
			out = append(out, n.Network())
		}
	}
	return out
}

// SetHostRoutes records the routes as the kernel would have them: those
// whose gateway is on the device's segment, the others refused.
func (f *Fake) SetHostRoutes(dev string, within netip.Prefix, routes []HostGWRoute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("SetHostRoutes"); err != nil {
		return err
	}
	if err := checkHostRoutes(dev, within, routes); err != nil {
		return err
	}
	if _, ok := f.hostLinkLocked(dev); !ok {
		return fmt.Errorf("host routes: device %s does not exist: give the underlay link (ip link show)", dev)
	}
	ok, errs := onSegment(dev, f.connectedLocked(dev), routes)
	m := f.hostRoutesLocked()[dev]
	if m == nil {
		m = map[netip.Prefix]netip.Addr{}
	}
	for p := range m {
		if inside(within, p) {
			delete(m, p)
		}
	}
	for _, r := range ok {
		m[r.Dst] = r.Via
	}
	f.hostRoutesLocked()[dev] = m
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// CheckHostRoutes describes how the recorded routes differ from routes.
func (f *Fake) CheckHostRoutes(dev string, within netip.Prefix, routes []HostGWRoute) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := checkHostRoutes(dev, within, routes); err != nil {
		return []string{err.Error()}
	}
	if _, ok := f.hostLinkLocked(dev); !ok {
		return []string{fmt.Sprintf("host routes: device %s does not exist: give the underlay link (ip link show)", dev)}
	}
	have := map[netip.Prefix]netip.Addr{}
	for p, gw := range f.hostRoutesLocked()[dev] {
		if inside(within, p) {
			have[p] = gw
		}
	}
	return diffHostRoutes(dev, f.connectedLocked(dev), have, routes)
}

// HostRoutes returns the device's recorded host-gw routes (for tests).
func (f *Fake) HostRoutes(dev string) map[netip.Prefix]netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[netip.Prefix]netip.Addr{}
	for k, v := range f.hostRoutesLocked()[dev] {
		out[k] = v
	}
	return out
}
