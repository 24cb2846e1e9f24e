package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"pontoon/internal/model"
)

// The CNI verbs: what the plugin used to compose from several API calls
// (look the sandbox up, then create it or connect it; on DEL disconnect,
// look again, remove), done in one request under the sandbox's lock, so a
// runtime pays one round trip per verb and no other request can slip in
// between the steps. They are compositions of CreateSandbox, Connect,
// Disconnect and RemoveSandbox with the same semantics.

// AddContainer is CNI ADD: it attaches the namespace at spec.Netns, as the
// sandbox spec.Name of container spec.ContainerID, to the one network in
// spec.Networks, and returns the new endpoint.
//
//   - No such sandbox: it is created, adopting the namespace.
//   - The sandbox exists with this namespace: the network is connected, as
//     a further interface (a second ADD for another ifname or network).
//   - The sandbox exists but recorded another namespace — another path, or
//     the same path now naming another namespace: the runtime lost the one
//     it attached before (a crash, a reboot of the VM) and asks again
//     without a DEL. The old attachment is dead: it is removed and the
//     sandbox made afresh.
func (e *Engine) AddContainer(ctx context.Context, spec model.SandboxSpec) (_ *model.Endpoint, err error) {
	network := ""
	if len(spec.Networks) > 0 {
		network = spec.Networks[0].Network
	}
	defer e.emitFailed("cni-add", network, spec.Name, &err)
	if err := model.ValidateName("sandbox", spec.Name); err != nil {
		return nil, err
	}
	if spec.ContainerID == "" || spec.Netns == "" || len(spec.Networks) != 1 {
		return nil, model.Invalidf("a CNI ADD needs a container ID, a netns path and one network")
	}
	a := spec.Networks[0]
	if err := validateAttach(a); err != nil {
		return nil, err
	}
	unlock := e.lockSandbox(spec.Name)
	defer unlock()
	sb, eps, err := e.sandboxRecords(spec.Name)
	switch {
	case errors.Is(err, model.ErrNotFound):
	case err != nil:
		return nil, err
	case e.staleNetns(sb, spec.Netns):
		e.log.Info("CNI ADD in a new namespace: removing the attachment to the previous one", "sandbox", sb.Name,
			"container", spec.ContainerID, "old_netns", sb.Netns, "netns", spec.Netns)
		if err := e.removeSandbox(sb, eps); err != nil {
			return nil, fmt.Errorf("drop the attachment of container %s to its previous namespace %s: %w", spec.ContainerID, sb.Netns, err)
		}
	case sb.ContainerID != spec.ContainerID:
		return nil, model.Conflictf("sandbox %s belongs to container %s, not %s", sb.Name, sb.ContainerID, spec.ContainerID)
	default:
		return e.attachLocked(ctx, spec.Name, a, false)
	}
	made, err := e.createSandboxLocked(ctx, spec)
	if err != nil {
		return nil, err
	}
	return made[0], nil
}

// staleNetns reports whether a sandbox's recorded namespace is not the one
// at path: another path, or the same path naming another namespace (the
// recorded one is gone and the path was pinned again).
func (e *Engine) staleNetns(sb *model.Sandbox, path string) bool {
	if filepath.Clean(sb.Netns) != filepath.Clean(path) {
		return true
	}
	ino, err := e.ns.Ino(path)
	return err == nil && sb.NetnsIno != 0 && ino != sb.NetnsIno
}

// DelContainer is CNI DEL: it detaches sandbox's interface ifname on
// network and, when the sandbox has no other interface left, removes the
// sandbox (only what pontoon added to the runtime's namespace goes). It
// returns as Disconnect and RemoveSandbox do, once the interface carries no
// traffic; the veth is deleted in the background. A sandbox or interface
// that is gone already is success: DEL is idempotent.
func (e *Engine) DelContainer(ctx context.Context, sandbox, network, ifname string) (err error) {
	defer e.emitFailed("cni-del", network, sandbox, &err)
	if err := model.ValidateName("sandbox", sandbox); err != nil {
		return err
	}
	unlock := e.lockSandbox(sandbox)
	sb, eps, err := e.sandboxRecords(sandbox)
	if err != nil {
		unlock()
		if errors.Is(err, model.ErrNotFound) {
			return nil
		}
		return err
	}
	var target *model.Endpoint
	others := 0
	for _, ep := range eps {
		switch {
		case ep.State == model.StateRemoving:
		case ep.Network == network && ep.IfName == ifname:
			target = ep
		default:
			others++
		}
	}
	if others == 0 {
		return e.removeInBackground(sb, eps, unlock)
	}
	defer unlock()
	if target == nil {
		return nil
	}
	return e.disconnectLocked(network, sandbox)
}
