package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Reconcile makes the kernel match the store; it runs at start-up before
// the API serves, and may run again at any time (it is idempotent):
//
//   - the default network exists; every network's bridge exists and is up;
//   - the firewall table is rewritten from the store;
//   - sandboxes and endpoints a crash left "creating" or "removing" are
//     removed (their requests never returned success); "ready" endpoints
//     whose veth vanished or left its bridge are rebuilt; sandboxes whose
//     adopted namespace is gone are forgotten;
//   - links, bridges and namespace pins carrying pontoon's names but unknown
//     to the store are deleted.
//
// It keeps going when one part fails and returns all errors joined.
func (e *Engine) Reconcile(ctx context.Context) error {
	var errs []error
	if e.cfg.SetIPForward {
		if err := e.link.SetIPForward(); err != nil {
			errs = append(errs, fmt.Errorf("enable ip forwarding: %w", err))
		}
	}
	if err := e.ensureIPv6Forward(); err != nil {
		errs = append(errs, err)
	}
	e.netMu.Lock()
	err := e.reconcileNetworksLocked(ctx)
	e.netMu.Unlock()
	if err != nil {
		errs = append(errs, err)
	}
	if err := e.reconcileSandboxes(ctx); err != nil {
		errs = append(errs, err)
	}
	e.syncRelay()
	if err := e.collectGarbage(); err != nil {
		errs = append(errs, err)
	}
	if err := e.sweepTraces(ctx); err != nil { // tables of a trace the daemon died in
		errs = append(errs, err)
	}
	e.netMu.Lock()
	e.syncResolverNetworks()
	e.netMu.Unlock()
	e.syncResolverRecords()
	e.syncSandboxResolvers()
	return errors.Join(errs...)
}

func (e *Engine) reconcileNetworksLocked(ctx context.Context) error {
	var nets []*model.Network
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		nets, err = tx.Networks()
		return err
	}); err != nil {
		return err
	}
	hasDefault := false
	var errs []error
	for _, n := range nets {
		if n.Name == model.DefaultNetwork {
			hasDefault = true
		}
		if err := e.drv(n).EnsureNetwork(n); err != nil {
			errs = append(errs, fmt.Errorf("network %s: bridge %s: %w", n.Name, n.Bridge, err))
		}
	}
	if !hasDefault {
		if _, err := e.createNetworkLocked(ctx, model.NetworkSpec{Name: model.DefaultNetwork}); err != nil {
			errs = append(errs, fmt.Errorf("create the default network: %w", err))
		}
	} else if err := e.syncFirewall(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (e *Engine) reconcileSandboxes(ctx context.Context) error {
	var sbs []*model.SandboxInfo
	var nets map[string]*model.Network
	if err := e.st.View(ctx, func(tx store.Tx) error {
		all, err := tx.Sandboxes()
		if err != nil {
			return err
		}
		for _, sb := range all {
			eps, err := tx.EndpointsOfSandbox(sb.Name)
			if err != nil {
				return err
			}
			sbs = append(sbs, &model.SandboxInfo{Sandbox: *sb, Endpoints: eps})
		}
		ns, err := tx.Networks()
		nets = map[string]*model.Network{}
		for _, n := range ns {
			nets[n.Name] = n
		}
		return err
	}); err != nil {
		return err
	}
	links, err := e.link.ListLinks(model.HostVethPrefix)
	if err != nil {
		return fmt.Errorf("list host veths: %w", err)
	}
	master := map[string]string{}
	for _, l := range links {
		master[l.Name] = l.Master
	}
	var errs []error
	for _, info := range sbs {
		sb := &info.Sandbox
		unlock := e.lockSandbox(sb.Name)
		err := e.reconcileSandboxLocked(sb, info.Endpoints, nets, master)
		unlock()
		if err != nil {
			errs = append(errs, err)
		}
		// A write queued before a crash may never have happened.
		e.resolv.sync(sb.Name)
	}
	return errors.Join(errs...)
}

func (e *Engine) reconcileSandboxLocked(sb *model.Sandbox, eps []*model.Endpoint, nets map[string]*model.Network, master map[string]string) error {
	gone := false
	switch sb.Kind {
	case model.KindPID, model.KindNetns:
		ino, err := e.ns.Ino(sb.Netns)
		gone = err != nil || ino != sb.NetnsIno
	case model.KindDocker:
		gone = e.dockerGone(sb, eps)
	case model.KindHost:
		// The daemon's PID changed: point at the new one.
		sb.Netns = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
		if err := e.st.Update(context.Background(), func(tx store.Tx) error { return tx.PutSandbox(sb) }); err != nil {
			return err
		}
	}
	if sb.State != model.SandboxReady || gone {
		e.log.Info("reconcile: removing sandbox", "sandbox", sb.Name, "state", string(sb.State), "namespace_gone", gone)
		return e.removeSandbox(sb, eps)
	}
	recreated := false
	if sb.Kind == model.KindPontoon && !e.ns.IsPinned(sb.Netns) {
		// The pin vanished (a reboot emptied /run, or someone unmounted it):
		// the namespace and its veths are gone; make it again and rebuild.
		e.log.Warn("reconcile: recreating the namespace of sandbox", "sandbox", sb.Name, "netns", sb.Netns)
		if err := e.heal.recreateNamespace(sb); err != nil {
			return fmt.Errorf("sandbox %s: %w", sb.Name, err)
		}
		recreated = true // the old namespace's veths died with it
	} else if sb.Kind == model.KindPontoon && sb.NetnsIno == 0 {
		// Recorded before pontoon kept namespace identities.
		if ino, err := e.ns.Ino(sb.Netns); err == nil {
			sb.NetnsIno = ino
			if err := e.st.Update(context.Background(), func(tx store.Tx) error { return tx.PutSandbox(sb) }); err != nil {
				return err
			}
		}
	}
	var stale []*model.Endpoint
	var errs []error
	for _, ep := range eps {
		nw := nets[ep.Network]
		if ep.State != model.StateReady || nw == nil {
			stale = append(stale, ep)
			continue
		}
		if (ep.HostIf == "" || sb.Kind == model.KindDocker) && !recreated {
			// No host end (a direct link, a macvlan): the driver checks
			// and repairs it in the sandbox.
			d := e.drv(nw)
			if problems := d.CheckEndpoint(nw, sb, ep); len(problems) > 0 {
				e.log.Warn("reconcile: repairing endpoint", "sandbox", sb.Name, "network", ep.Network, "why", strings.Join(problems, "; "))
				if _, _, err := d.RepairEndpoint(nw, sb, ep); err != nil {
					errs = append(errs, fmt.Errorf("sandbox %s: repair endpoint on %s: %w", sb.Name, ep.Network, err))
				}
			}
			continue
		}
		m, ok := master[ep.HostIf]
		if ok && m == portMaster(nw) && !recreated {
			continue
		}
		e.log.Warn("reconcile: rebuilding endpoint", "sandbox", sb.Name, "network", ep.Network, "link", ep.HostIf, "present", ok, "master", m)
		if ok {
			if err := e.drv(nw).Delete([]*model.Endpoint{ep}); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		idx, err := e.drv(nw).Plumb(nw, sb, ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: rebuild endpoint on %s: %w", sb.Name, ep.Network, err))
			continue
		}
		ep.HostIfIndex = idx
		if err := e.st.Update(context.Background(), func(tx store.Tx) error { return tx.PutEndpoint(ep) }); err != nil {
			errs = append(errs, err)
		}
	}
	if len(stale) > 0 {
		if err := e.st.Update(context.Background(), func(tx store.Tx) error {
			for _, ep := range stale {
				ep.State = model.StateRemoving
				if err := tx.PutEndpoint(ep); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			errs = append(errs, err)
		} else {
			e.log.Info("reconcile: removing unfinished endpoints", "sandbox", sb.Name, "count", len(stale))
			e.teardown(stale)
		}
	}
	return errors.Join(errs...)
}

// KnownKernelObjects returns the names of the links (bridges, host veths)
// and the paths of the namespace pins that pontoon's state accounts for;
// anything else with pontoon's names is garbage.
func (e *Engine) KnownKernelObjects() map[string]bool {
	known, _ := e.knownKernelObjects()
	return known
}

func (e *Engine) knownKernelObjects() (map[string]bool, error) {
	known := map[string]bool{}
	err := e.st.View(context.Background(), func(tx store.Tx) error {
		nets, err := tx.Networks()
		if err != nil {
			return err
		}
		for _, n := range nets {
			known[n.Bridge] = true
			if n.Overlay != nil && n.Overlay.VXLAN != "" {
				known[n.Overlay.VXLAN] = true // its tunnel: a restart keeps it, and the traffic through it
			}
		}
		eps, err := tx.Endpoints()
		if err != nil {
			return err
		}
		for _, ep := range eps {
			known[ep.HostIf] = true
		}
		sbs, err := tx.Sandboxes()
		for _, sb := range sbs {
			if sb.Kind == model.KindPontoon {
				known[filepath.Clean(sb.Netns)] = true
			}
		}
		return err
	})
	return known, err
}

// collectGarbage deletes kernel objects with pontoon's names that the store
// does not know: host veths, bridges of removed networks, namespace pins.
func (e *Engine) collectGarbage() error {
	known, err := e.knownKernelObjects()
	if err != nil {
		return err
	}
	knownLinks, knownPins := known, known
	var errs []error
	// Open vSwitch first: an OVS bridge's internal port is a link with
	// pontoon's bridge prefix, gone once OVS deletes the bridge.
	if d, ok := e.drivers[model.DriverOVS].(*ovsDriver); ok {
		if err := d.collectGarbage(known, e.log); err != nil {
			errs = append(errs, err)
		}
	}
	var prefixes []string
	for _, d := range e.drivers {
		prefixes = append(prefixes, d.Prefixes()...)
	}
	links, err := e.link.ListLinks(prefixes...)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var veths []string
	for _, l := range links {
		if knownLinks[l.Name] {
			continue
		}
		if strings.HasPrefix(l.Name, model.BridgePrefix) {
			e.log.Info("garbage: deleting bridge unknown to the store", "bridge", l.Name)
			e.garbage.Add(1)
			if err := e.link.DeleteBridge(l.Name); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		veths = append(veths, l.Name)
	}
	if len(veths) > 0 {
		e.log.Info("garbage: deleting veths unknown to the store", "count", len(veths))
		e.garbage.Add(uint64(len(veths)))
		if err := e.link.DeleteVeths(veths); err != nil {
			errs = append(errs, err)
		}
	}
	pins, err := e.ns.Pins(e.cfg.NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, p := range pins {
		if knownPins[filepath.Clean(p)] {
			continue
		}
		e.log.Info("garbage: deleting namespace pin unknown to the store", "pin", p)
		e.garbage.Add(1)
		if err := e.ns.Delete(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
