package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// CreateSandbox makes (or adopts) a namespace and attaches it to the
// requested networks. Everything is validated first; on any failure the
// sandbox and whatever was attached are removed again.
func (e *Engine) CreateSandbox(ctx context.Context, spec model.SandboxSpec) (_ *model.SandboxInfo, err error) {
	defer e.emitFailed("create-sandbox", "", spec.Name, &err)
	if err := model.ValidateName("sandbox", spec.Name); err != nil {
		return nil, err
	}
	sb := &model.Sandbox{
		ID: model.NewID(), Name: spec.Name, ContainerID: spec.ContainerID,
		Labels: spec.Labels, State: model.SandboxCreating, Created: time.Now().UTC(),
	}
	modes := 0
	for _, set := range []bool{spec.Netns != "", spec.PID != 0, spec.Host} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return nil, model.Invalidf("give at most one of --netns, --pid and host networking")
	}
	switch {
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
	}
	// Validate every attachment before anything is created.
	seen := map[string]bool{}
	for _, a := range spec.Networks {
		ip, err := validateAttach(a)
		if err != nil {
			return nil, err
		}
		if seen[a.Network] {
			return nil, model.Invalidf("network %s is given twice", a.Network)
		}
		seen[a.Network] = true
		if err := e.st.View(func(tx store.Tx) error {
			nw, err := tx.Network(a.Network)
			if err != nil {
				return err
			}
			if err := checkNames(tx, nw.Name, spec.Name, a.Aliases); err != nil {
				return err
			}
			if err := checkPortsOnNetwork(nw, mustPorts(a.Ports)); err != nil {
				return err
			}
			if ip.IsValid() {
				return model.CheckStaticIP(nw, ip)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		if ip.IsValid() {
			if err := e.checkNotHostAddr(ip); err != nil {
				return nil, err
			}
		}
	}

	unlock := e.lockSandbox(spec.Name)
	defer unlock()
	if err := e.st.Update(func(tx store.Tx) error {
		if _, err := tx.Sandbox(spec.Name); err == nil {
			return model.Conflictf("sandbox %q already exists: pick another name or remove it with `pontoon sandbox rm %s`", spec.Name, spec.Name)
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
		if spec.ContainerID != "" {
			all, err := tx.Sandboxes()
			if err != nil {
				return err
			}
			for _, o := range all {
				if o.ContainerID == spec.ContainerID {
					return model.Conflictf("container %s already has sandbox %s", spec.ContainerID, o.Name)
				}
			}
		}
		return tx.PutSandbox(sb)
	}); err != nil {
		return nil, err
	}
	fail := func(cause error) (*model.SandboxInfo, error) {
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
	for _, a := range spec.Networks {
		ip, _ := validateAttach(a)
		if _, err := e.connectLocked(ctx, spec.Name, a, ip, true); err != nil {
			return fail(err)
		}
	}
	if err := e.hook("sandbox:ready"); err != nil {
		return fail(err)
	}
	sb.State = model.SandboxReady
	if err := e.st.Update(func(tx store.Tx) error { return tx.PutSandbox(sb) }); err != nil {
		return fail(err)
	}
	e.resolv.sync(sb.Name)
	e.heal.sandboxChanged()
	e.emit(Event{Kind: model.EventSandboxCreated, Sandbox: sb.Name, Detail: string(sb.Kind) + " " + sb.Netns})
	e.log.Info("sandbox created", "sandbox", sb.Name, "kind", string(sb.Kind), "netns", sb.Netns, "networks", len(spec.Networks))
	return e.Sandbox(spec.Name)
}

// RemoveSandbox detaches a sandbox from every network and, if pontoon
// created its namespace, deletes it. Only what pontoon added to an adopted
// namespace is removed.
func (e *Engine) RemoveSandbox(ctx context.Context, name string) (err error) {
	defer e.emitFailed("remove-sandbox", "", name, &err)
	if err := model.ValidateName("sandbox", name); err != nil {
		return err
	}
	unlock := e.lockSandbox(name)
	defer unlock()
	return e.removeSandboxLocked(name)
}

func (e *Engine) removeSandboxLocked(name string) error {
	var sb *model.Sandbox
	var eps []*model.Endpoint
	if err := e.st.View(func(tx store.Tx) error {
		var err error
		if sb, err = tx.Sandbox(name); err != nil {
			return err
		}
		eps, err = tx.EndpointsOfSandbox(name)
		return err
	}); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", name, err)
	}
	return e.removeSandbox(sb, eps)
}

// removeSandbox records a sandbox and its endpoints as removing (so a crash
// from here on finishes the removal at the next start), takes their names
// out of DNS, and tears them down. Callers hold the sandbox's lock.
func (e *Engine) removeSandbox(sb *model.Sandbox, eps []*model.Endpoint) error {
	start := time.Now()
	wasReady := map[string]bool{}
	for _, ep := range eps {
		wasReady[ep.ID] = ep.State == model.StateReady
	}
	if err := e.st.Update(func(tx store.Tx) error {
		sb.State = model.SandboxRemoving
		for _, ep := range eps {
			ep.State = model.StateRemoving
			if err := tx.PutEndpoint(ep); err != nil {
				return err
			}
		}
		return tx.PutSandbox(sb)
	}); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", sb.Name, err)
	}
	for _, ep := range eps {
		if wasReady[ep.ID] {
			e.emitTimed(model.Event{Kind: model.EventDetached, Network: ep.Network, Sandbox: sb.Name, Detail: ep.IfName + " " + ep.IP.String()}, start)
			if len(ep.Ports) > 0 {
				e.emit(model.Event{Kind: model.EventUnpublished, Network: ep.Network, Sandbox: sb.Name, Detail: portList(ep.Ports)})
			}
		}
		e.resolverRemove(ep)
		if len(ep.Ports) > 0 {
			if err := e.fw.Unpublish(context.Background(), published(ep)); err != nil {
				e.log.Warn("unpublish ports; the next firewall sync drops them", "sandbox", sb.Name, "err", err)
			}
		}
	}
	return e.finishRemoval(sb, eps)
}

// finishRemoval is the kernel half of a sandbox removal, also used by
// Reconcile for sandboxes a crash left in state removing or creating.
func (e *Engine) finishRemoval(sb *model.Sandbox, eps []*model.Endpoint) error {
	e.heal.unwatch(sb.Name) // a watch holds the namespace
	if sb.Kind == model.KindPontoon {
		if err := e.ns.Delete(sb.Netns); err != nil {
			return fmt.Errorf("remove sandbox %s: delete namespace %s: %w", sb.Name, sb.Netns, err)
		}
	}
	// Deleting the host ends removes the peers from adopted namespaces; in
	// a namespace we just unpinned they are gone or going anyway.
	e.reaper.add(eps...)
	e.reaper.flush()
	e.resolv.sync(sb.Name)
	if err := e.st.Update(func(tx store.Tx) error {
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
	e.emit(Event{Kind: model.EventSandboxRemoved, Sandbox: sb.Name})
	e.log.Info("sandbox removed", "sandbox", sb.Name)
	return nil
}

// Sandbox returns one sandbox with its endpoints.
func (e *Engine) Sandbox(name string) (*model.SandboxInfo, error) {
	var out *model.SandboxInfo
	err := e.st.View(func(tx store.Tx) error {
		sb, err := tx.Sandbox(name)
		if err != nil {
			return err
		}
		eps, err := tx.EndpointsOfSandbox(name)
		if err != nil {
			return err
		}
		out = &model.SandboxInfo{Sandbox: *sb, Endpoints: liveEndpoints(eps)}
		return nil
	})
	if out != nil {
		out.ResolvConf = e.ResolvConf(name)
	}
	return out, err
}

// Sandboxes lists sandboxes.
func (e *Engine) Sandboxes() ([]*model.SandboxInfo, error) {
	var out []*model.SandboxInfo
	err := e.st.View(func(tx store.Tx) error {
		sbs, err := tx.Sandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			eps, err := tx.EndpointsOfSandbox(sb.Name)
			if err != nil {
				return err
			}
			out = append(out, &model.SandboxInfo{Sandbox: *sb, Endpoints: liveEndpoints(eps)})
		}
		return nil
	})
	return out, err
}
