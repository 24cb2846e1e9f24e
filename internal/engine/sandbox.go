package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// CreateSandbox makes (or adopts) a namespace and attaches it to the
// requested networks. Everything is validated first; on any failure the
// sandbox and whatever was attached are removed again.
func (e *Engine) CreateSandbox(ctx context.Context, spec model.SandboxSpec) (_ *model.SandboxInfo, err error) {
	defer e.request()()
	defer e.emitFailed("create-sandbox", "", spec.Name, &err)
	if err := model.ValidateName("sandbox", spec.Name); err != nil {
		return nil, err
	}
	unlock := e.lockSandbox(spec.Name)
	defer unlock()
	if _, err := e.createSandboxLocked(ctx, spec); err != nil {
		return nil, err
	}
	return e.Sandbox(spec.Name)
}

// createSandboxLocked is CreateSandbox under the sandbox's lock; it returns
// the endpoints it made, in the order of spec.Networks.
func (e *Engine) createSandboxLocked(ctx context.Context, spec model.SandboxSpec) ([]*model.Endpoint, error) {
	t0 := time.Now()
	sb := &model.Sandbox{
		ID: model.NewID(), Name: spec.Name, Node: e.cfg.Node, ContainerID: spec.ContainerID,
		Labels: spec.Labels, State: model.SandboxCreating, Created: time.Now().UTC(),
	}
	modes := 0
	for _, set := range []bool{spec.Netns != "" && !spec.Docker, spec.PID != 0, spec.Host, spec.Tap != nil, spec.Docker} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return nil, model.Invalidf("give at most one of --netns, --pid, host networking and a tap")
	}
	switch {
	case spec.Docker:
		sb.Kind, sb.Netns = model.KindDocker, spec.Netns
	case spec.Tap != nil:
		sb.Kind = model.KindVM
		if len(spec.Networks) != 1 {
			return nil, model.Invalidf("a VM's tap is on exactly one network: give one (pontoon tap create NAME --network NET)")
		}
		if err := spec.Tap.Check(); err != nil {
			return nil, err
		}
		a := spec.Networks[0]
		a.Tap = spec.Tap
		spec.Networks = []model.AttachSpec{a}
	case spec.Host:
		sb.Kind = model.KindHost
		sb.Netns = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
		if len(spec.Networks) > 0 {
			return nil, model.Invalidf("a sandbox on the host's network cannot be connected to networks")
		}
	case spec.PID != 0:
		if spec.PID < 0 {
			return nil, model.Invalidf("pid %d is not a process ID", spec.PID)
		}
		sb.Kind = model.KindPID
		sb.PID = spec.PID
		sb.Netns = "/proc/" + strconv.Itoa(spec.PID) + "/ns/net"
	case spec.Netns != "":
		if !filepath.IsAbs(spec.Netns) {
			return nil, model.Invalidf("netns path %q is not absolute: give the full path, e.g. /run/netns/NAME", spec.Netns)
		}
		sb.Kind = model.KindNetns
		sb.Netns = spec.Netns
	default:
		sb.Kind = model.KindPontoon
		sb.Netns = filepath.Join(e.cfg.NetnsDir, spec.Name)
	}
	if sb.Kind == model.KindPID || sb.Kind == model.KindNetns {
		ino, err := e.ns.Ino(sb.Netns)
		if err != nil {
			return nil, model.Invalidf("cannot adopt %s: it is not a network namespace (%v)", sb.Netns, err)
		}
		sb.NetnsIno = ino
		if own, err := e.ns.Ino("/proc/self/ns/net"); err == nil && own == ino {
			return nil, model.Invalidf("cannot adopt %s: it is the daemon's own network namespace (the host's); use --network host for a sandbox that shares it", sb.Netns)
		}
		e.waitRemovalsIn(sb.Netns, ino)
	}
	// Validate every attachment before anything is created.
	seen := map[string]bool{}
	for _, a := range spec.Networks {
		if err := validateAttach(a); err != nil {
			return nil, err
		}
		if seen[a.Network] {
			return nil, model.Invalidf("network %s is given twice", a.Network)
		}
		seen[a.Network] = true
		if err := e.checkClusterStatic(ctx, spec.Name, a); err != nil {
			return nil, err
		}
		if err := e.st.View(ctx, func(tx store.Tx) error {
			nw, err := tx.Network(a.Network)
			if err != nil {
				return err
			}
			if err := checkNames(tx, nw.Name, spec.Name, a.Aliases); err != nil {
				return err
			}
			if err := checkPortsOnNetwork(nw, a.Ports); err != nil {
				return err
			}
			for _, ip := range a.IPs {
				if err := model.CheckStaticIP(nw, ip); err != nil {
					return err
				}
			}
			if a.MAC != "" {
				return checkMACFree(tx, nw, a.MAC)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for _, ip := range a.IPs {
			if err := e.checkNotHostAddr(ip); err != nil {
				return nil, err
			}
		}
	}

	tValid := time.Now()
	if err := e.st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Sandbox(spec.Name); err == nil {
			return model.Conflictf("sandbox %q already exists: pick another name or remove it with `pontoon sandbox rm %s`", spec.Name, spec.Name)
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
		// A container has one sandbox; one being removed holds nothing.
		others, err := tx.SandboxesOfContainer(spec.ContainerID)
		if err != nil {
			return err
		}
		for _, name := range others {
			if o, err := tx.Sandbox(name); err == nil && o.State != model.SandboxRemoving {
				return model.Conflictf("container %s already has sandbox %s", spec.ContainerID, o.Name)
			}
		}
		return tx.PutSandbox(sb)
	}); err != nil {
		return nil, err
	}
	fail := func(cause error) ([]*model.Endpoint, error) {
		if err := e.removeSandboxLocked(spec.Name); err != nil {
			e.log.Error("rollback: remove sandbox", "sandbox", spec.Name, "err", err)
		}
		return nil, cause
	}
	if sb.Kind == model.KindPontoon {
		if err := e.hook("sandbox:netns"); err != nil {
			return fail(err)
		}
		if err := e.ns.Create(sb.Netns); err != nil {
			return fail(fmt.Errorf("create network namespace for sandbox %s: %w", spec.Name, err))
		}
		ino, err := e.ns.Ino(sb.Netns)
		if err != nil {
			return fail(fmt.Errorf("create network namespace for sandbox %s: %w", spec.Name, err))
		}
		sb.NetnsIno = ino
	}
	tRecord := time.Now()
	eps := make([]*model.Endpoint, 0, len(spec.Networks))
	for _, a := range spec.Networks {
		ep, err := e.attachLocked(ctx, spec.Name, a, true)
		if err != nil {
			return fail(err)
		}
		eps = append(eps, ep)
	}
	if err := e.hook("sandbox:ready"); err != nil {
		return fail(err)
	}
	tAttach := time.Now()
	sb.State = model.SandboxReady
	if err := e.st.Update(ctx, func(tx store.Tx) error { return tx.PutSandbox(sb) }); err != nil {
		return fail(err)
	}
	e.resolv.sync(sb.Name)
	if sb.Kind == model.KindPontoon {
		// Only namespaces pontoon made are watched; telling the healer of
		// others would cost a read of every sandbox for nothing.
		e.heal.sandboxChanged()
	}
	e.emit(Event{Kind: model.EventSandboxCreated, Sandbox: sb.Name, Detail: string(sb.Kind) + " " + sb.Netns})
	e.log.Info("sandbox created", "sandbox", sb.Name, "kind", string(sb.Kind), "netns", sb.Netns, "networks", len(spec.Networks))
	e.log.Debug("sandbox create phases", "sandbox", sb.Name, "validate", tValid.Sub(t0), "record", tRecord.Sub(tValid),
		"attach", tAttach.Sub(tRecord), "ready", time.Since(tAttach))
	return eps, nil
}

// attachLocked is connectLocked, waiting for a static address that an
// endpoint being torn down still holds: its veth lives until the reaper
// deleted it, so the address is not handed out before (a runtime that
// removes a container and attaches another with its address gets the
// address ~20 ms later instead of a conflict naming a sandbox that is gone).
func (e *Engine) attachLocked(ctx context.Context, sandbox string, a model.AttachSpec, creating bool) (*model.Endpoint, error) {
	ep, err := e.connectLocked(ctx, sandbox, a, creating)
	if err == nil || len(a.IPs) == 0 || !errors.Is(err, model.ErrConflict) || !e.heldByRemoving(a.Network, a.IPs) {
		return ep, err
	}
	e.reaper.flush()
	return e.connectLocked(ctx, sandbox, a, creating)
}

// heldByRemoving reports whether an endpoint being torn down holds one of
// ips on network.
func (e *Engine) heldByRemoving(network string, ips []netip.Addr) bool {
	held := false
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		eps, err := tx.EndpointsOnNetwork(network)
		for _, ep := range eps {
			if ep.State == model.StateRemoving && slices.ContainsFunc(ep.IPs(), func(a netip.Addr) bool { return slices.Contains(ips, a) }) {
				held = true
			}
		}
		return err
	})
	return held
}

// RemoveSandbox detaches a sandbox from every network and, if pontoon
// created its namespace, deletes it. Only what pontoon added to an adopted
// namespace is removed.
//
// It returns once the sandbox is recorded as removing, its names and
// published ports are gone and its host ends are down and off their
// bridges: it carries no traffic. The rest — deleting the veths (a kernel
// RCU wait, ~20 ms), the namespace pin, releasing the addresses and the
// record — happens in the background (see removeInBackground), as
// Disconnect leaves its veth to the reaper.
func (e *Engine) RemoveSandbox(ctx context.Context, name string) (err error) {
	defer e.request()()
	defer e.emitFailed("remove-sandbox", "", name, &err)
	if err := model.ValidateName("sandbox", name); err != nil {
		return err
	}
	unlock := e.lockSandbox(name)
	sb, eps, err := e.sandboxRecords(name)
	if err != nil {
		unlock()
		return fmt.Errorf("remove sandbox %s: %w", name, err)
	}
	return e.removeInBackground(sb, eps, unlock)
}

// sandboxRecords reads a sandbox and all its endpoints.
func (e *Engine) sandboxRecords(name string) (sb *model.Sandbox, eps []*model.Endpoint, err error) {
	err = e.st.View(context.Background(), func(tx store.Tx) error {
		if sb, err = tx.Sandbox(name); err != nil {
			return err
		}
		eps, err = tx.EndpointsOfSandbox(name)
		return err
	})
	return sb, eps, err
}

func (e *Engine) removeSandboxLocked(name string) error {
	sb, eps, err := e.sandboxRecords(name)
	if err != nil {
		return fmt.Errorf("remove sandbox %s: %w", name, err)
	}
	return e.removeSandbox(sb, eps)
}

// removeSandbox removes a sandbox and waits until it is gone: used where
// the caller goes on with the name (a failed create rolls back, Reconcile,
// self-healing). Callers hold the sandbox's lock.
func (e *Engine) removeSandbox(sb *model.Sandbox, eps []*model.Endpoint) error {
	if _, err := e.beginRemoval(sb, eps); err != nil {
		return err
	}
	return e.finishRemoval(sb, eps)
}

// beginRemoval records a sandbox and its endpoints as removing (so a crash
// from here on finishes the removal at the next start), takes their names
// out of DNS and their ports off the host, and queues the endpoints for the
// reaper (whoever flushes it next — a network removal, say — finds them
// there).
func (e *Engine) beginRemoval(sb *model.Sandbox, eps []*model.Endpoint) (live []*model.Endpoint, err error) {
	start := time.Now()
	wasReady := map[string]bool{}
	for _, ep := range eps {
		if ep.State != model.StateRemoving {
			live = append(live, ep) // the others were detached before
		}
		wasReady[ep.ID] = ep.State == model.StateReady
	}
	if err := e.st.Update(context.Background(), func(tx store.Tx) error {
		sb.State = model.SandboxRemoving
		for _, ep := range live {
			ep.State = model.StateRemoving
			if err := tx.PutEndpoint(ep); err != nil {
				return err
			}
		}
		return tx.PutSandbox(sb)
	}); err != nil {
		return nil, fmt.Errorf("remove sandbox %s: %w", sb.Name, err)
	}
	for _, ep := range live {
		if wasReady[ep.ID] {
			e.emitTimed(model.Event{Kind: model.EventDetached, Network: ep.Network, Sandbox: sb.Name, Detail: ep.IfName + " " + ep.IPString()}, start)
			if len(ep.Ports) > 0 {
				e.emit(model.Event{Kind: model.EventUnpublished, Network: ep.Network, Sandbox: sb.Name, Detail: portList(ep.Ports)})
			}
		}
		e.resolverRemove(ep)
		if len(ep.Ports) > 0 {
			if err := e.fw.Unpublish(context.Background(), published(ep)); err != nil {
				e.log.Warn("unpublish ports; the next firewall sync drops them", "sandbox", sb.Name, "err", err)
			}
			e.relayUnpublish(ep)
		}
	}
	// The resolver's sockets in the namespace would keep it alive.
	e.maybeSyncSandboxResolver(sb.Name, nil)
	// Gone for users from here on (reads hide it): the event follows the
	// order of the requests, not that of the kernel's deletions.
	e.emit(Event{Kind: model.EventSandboxRemoved, Sandbox: sb.Name})
	// Deleting the host ends removes the peers from adopted namespaces; in
	// a pontoon namespace that finishRemoval unpins they go anyway. Those
	// detached before are queued again: if their teardown failed, this
	// retries it.
	e.reaper.add(eps...)
	return live, nil
}

// removeInBackground is RemoveSandbox's path: beginRemoval, the host ends
// taken down and off their bridges (traffic stops now), and finishRemoval
// in a goroutine. The caller's hold of the sandbox's lock (unlock) passes
// to that goroutine, so the next operation on the name — a create with
// the same name, say — waits until the removal is complete. Addresses are
// released by the reaper only once their veths are deleted, so none is
// handed out while still on a live link; a daemon that dies meanwhile
// finds the records "removing" and Reconcile finishes them.
func (e *Engine) removeInBackground(sb *model.Sandbox, eps []*model.Endpoint, unlock func()) error {
	live, err := e.beginRemoval(sb, eps)
	if err != nil {
		unlock()
		return err
	}
	e.disableEndpoints(live)
	r := &removal{done: make(chan struct{}), netns: filepath.Clean(sb.Netns), ino: sb.NetnsIno}
	e.sbMu.Lock()
	e.removals[sb.Name] = r
	e.sbMu.Unlock()
	go func() {
		defer func() {
			e.sbMu.Lock()
			delete(e.removals, sb.Name)
			e.sbMu.Unlock()
			close(r.done)
			unlock()
		}()
		if err := e.finishRemoval(sb, eps); err != nil {
			e.log.Error("finish removing sandbox; the next start retries", "sandbox", sb.Name, "err", err)
		}
	}()
	e.log.Debug("sandbox removing", "sandbox", sb.Name, "endpoints", len(eps))
	return nil
}

// removal is a sandbox removal under way in the background.
type removal struct {
	done  chan struct{} // closed when it is complete
	netns string        // the sandbox's namespace: path and identity
	ino   uint64
}

// waitRemovals waits for the background removals under way.
func (e *Engine) waitRemovals() { e.waitRemovalsIf(func(*removal) bool { return true }) }

// waitRemovalsIn waits for the background removals of sandboxes in the
// namespace at path (identity ino, when known): their interfaces are still
// there until the reaper deleted them, and a new sandbox in the same
// namespace — a runtime's next container in a namespace it keeps — would
// find their names (eth0) taken.
func (e *Engine) waitRemovalsIn(path string, ino uint64) {
	path = filepath.Clean(path)
	e.waitRemovalsIf(func(r *removal) bool { return r.netns == path || ino != 0 && r.ino == ino })
}

func (e *Engine) waitRemovalsIf(match func(*removal) bool) {
	e.sbMu.Lock()
	var pending []chan struct{}
	for _, r := range e.removals {
		if match(r) {
			pending = append(pending, r.done)
		}
	}
	e.sbMu.Unlock()
	for _, done := range pending {
		<-done
	}
}

// finishRemoval is the kernel half of a sandbox removal after
// beginRemoval: the namespace pin, the veths, the record.
func (e *Engine) finishRemoval(sb *model.Sandbox, eps []*model.Endpoint) error {
	e.heal.unwatch(sb.Name) // a watch holds the namespace
	if sb.Kind == model.KindPontoon {
		if err := e.ns.Delete(sb.Netns); err != nil {
			return fmt.Errorf("remove sandbox %s: delete namespace %s: %w", sb.Name, sb.Netns, err)
		}
	}
	e.reaper.flush() // returns once beginRemoval's endpoints were torn down
	e.resolv.sync(sb.Name)
	if err := e.st.Update(context.Background(), func(tx store.Tx) error {
		left, err := tx.EndpointsOfSandbox(sb.Name)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("%d endpoint(s) could not be torn down; they will be retried at the next start", len(left))
		}
		return tx.DeleteSandbox(sb.Name)
	}); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", sb.Name, err)
	}
	e.log.Info("sandbox removed", "sandbox", sb.Name)
	return nil
}
