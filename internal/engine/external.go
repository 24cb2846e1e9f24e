package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"pontoon/internal/firewall"
	"pontoon/internal/ipam"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// What an external orchestrator that keeps its own life cycle needs (the
// Docker network and IPAM driver, internal/dockerdrv): addresses handed out
// before the endpoint that will hold them exists, a subnet picked before
// the network that will have it, and ports published on an endpoint after
// it was attached.

// ClaimOwner holds the reservation of an address handed out ahead of its
// endpoint (ReserveAddress); an attach with AttachSpec.Claim takes it over.
const ClaimOwner = "claim"

// ReserveAddress reserves an address on a network for an endpoint that
// does not exist yet: ip, or the next free one when ip is zero. The
// attach that will hold it names it in IPs with Claim set.
func (e *Engine) ReserveAddress(network string, ip netip.Addr) (netip.Addr, error) {
	var got netip.Addr
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		nw, err := tx.Network(network)
		if err != nil {
			return err
		}
		if ip.IsValid() {
			s, ok := nw.SubnetFor(ip)
			if !ok {
				return model.Invalidf("address %s is not in network %s (%s)", ip, network, nw.SubnetString())
			}
			got = ip
			return ipam.ReserveStatic(tx, nw, s, ip, ClaimOwner, e.ownerName(tx, network))
		}
		s, ok := nw.Subnet4()
		if !ok {
			s = nw.Subnets[0]
		}
		got, err = ipam.Allocate(tx, nw, s, ClaimOwner)
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reserve an address on %s: %w", network, err)
	}
	return got, nil
}

// ReserveAddress6 is ReserveAddress in the network's IPv6 subnet.
func (e *Engine) ReserveAddress6(network string) (netip.Addr, error) {
	var got netip.Addr
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		nw, err := tx.Network(network)
		if err != nil {
			return err
		}
		s, ok := nw.Subnet6()
		if !ok {
			return model.Invalidf("network %s has no IPv6 subnet", network)
		}
		got, err = ipam.Allocate(tx, nw, s, ClaimOwner)
		return err
	})
	return got, err
}

// ReleaseAddress releases an address ReserveAddress handed out and no
// endpoint took over; one an endpoint holds stays (it goes with the
// endpoint). Unknown addresses and networks are success.
func (e *Engine) ReleaseAddress(network string, ip netip.Addr) error {
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		nw, err := tx.Network(network)
		if err != nil {
			return err
		}
		owner, held, err := tx.Reservation(nw.ID, ip)
		if err != nil || !held || owner != ClaimOwner {
			return err
		}
		return tx.Release(nw.ID, ip)
	})
	if errors.Is(err, model.ErrNotFound) {
		return nil
	}
	return err
}

// claim hands the reservations of the addresses an attach claims over to
// it, inside its store transaction: each must be held by ClaimOwner (or
// free). reserveAddrs then reserves them for the endpoint as usual.
func claim(tx store.Tx, networkID string, ips []netip.Addr) error {
	for _, ip := range ips {
		owner, held, err := tx.Reservation(networkID, ip)
		if err != nil {
			return err
		}
		if held && owner == ClaimOwner {
			if err := tx.Release(networkID, ip); err != nil {
				return err
			}
		}
	}
	return nil
}

// PickSubnet picks a free subnet of one family from the daemon's pools, as
// a network created without one would get; nothing is reserved.
func (e *Engine) PickSubnet(v6 bool) (netip.Prefix, error) {
	var taken []netip.Prefix
	if err := e.st.View(context.Background(), func(tx store.Tx) error {
		nets, err := tx.Networks()
		for _, n := range nets {
			taken = append(taken, n.Prefixes()...)
		}
		return err
	}); err != nil {
		return netip.Prefix{}, err
	}
	host, err := e.link.HostPrefixes()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list host addresses and routes: %w", err)
	}
	return e.pickSubnet("", model.DriverBridge, v6, append(taken, host...))
}

// PublishPorts publishes ports on an attached endpoint (Docker programs a
// container's external connectivity after it joined); they live and go
// with it. UnpublishPorts takes an endpoint's ports off the host.
func (e *Engine) PublishPorts(ctx context.Context, network, sandbox string, ports []model.PortMapping) error {
	if err := checkPorts(ports); err != nil {
		return err
	}
	for _, m := range ports {
		if err := e.checkTunnelPort(m); err != nil {
			return fmt.Errorf("publish ports of %s on %s: %w", sandbox, network, err)
		}
	}
	unlock := e.lockSandbox(sandbox)
	defer unlock()
	var ep *model.Endpoint
	err := e.st.Update(ctx, func(tx store.Tx) error {
		nw, err := tx.Network(network)
		if err != nil {
			return err
		}
		if err := checkPortsOnNetwork(nw, ports); err != nil {
			return err
		}
		if err := checkEndpointCaps(e.drv(nw), nw, model.AttachSpec{Ports: ports}); err != nil {
			return err
		}
		if ep, err = tx.Endpoint(sandbox, network); err != nil {
			return err
		}
		if ep.State != model.StateReady {
			return model.Conflictf("sandbox %s's endpoint on %s is %s", sandbox, network, ep.State)
		}
		if len(ep.Ports) > 0 {
			return model.Conflictf("sandbox %s publishes ports on %s already (%s)", sandbox, network, portList(ep.Ports))
		}
		if err := checkHostPortsFree(tx, ports); err != nil {
			return err
		}
		ep.Ports = ports
		return tx.PutEndpoint(ep)
	})
	if err != nil {
		return fmt.Errorf("publish ports of %s on %s: %w", sandbox, network, err)
	}
	if err := e.fw.Publish(ctx, published(ep)); err != nil {
		_ = e.st.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
			cur, gerr := tx.Endpoint(sandbox, network)
			if gerr != nil || cur.ID != ep.ID {
				return gerr
			}
			cur.Ports = nil
			return tx.PutEndpoint(cur)
		})
		return fmt.Errorf("publish ports of %s on %s: %w", sandbox, network, err)
	}
	e.relayPublish(ep)
	e.flowsPublished(ep)
	e.emit(Event{Kind: model.EventPublished, Network: network, Sandbox: sandbox, Detail: portList(ports)})
	return nil
}

// UnpublishPorts takes an endpoint's published ports off the host; an
// endpoint without ports, or none at all, is success.
func (e *Engine) UnpublishPorts(ctx context.Context, network, sandbox string) error {
	unlock := e.lockSandbox(sandbox)
	defer unlock()
	var gone []firewall.Published
	var ep *model.Endpoint
	err := e.st.Update(ctx, func(tx store.Tx) error {
		var err error
		if ep, err = tx.Endpoint(sandbox, network); err != nil {
			return err
		}
		gone = published(ep)
		if len(ep.Ports) == 0 {
			return nil
		}
		cp := *ep
		ep = &cp
		ports := ep.Ports
		ep.Ports = nil
		if err := tx.PutEndpoint(ep); err != nil {
			return err
		}
		ep.Ports = ports // for the relay and events below
		return nil
	})
	if errors.Is(err, model.ErrNotFound) {
		return nil
	}
	if err != nil || len(gone) == 0 {
		return err
	}
	if err := e.fw.Unpublish(ctx, gone); err != nil {
		e.log.Warn("unpublish ports; the next firewall sync drops them", "sandbox", sandbox, "err", err)
	}
	e.relayUnpublish(ep)
	e.emit(Event{Kind: model.EventUnpublished, Network: network, Sandbox: sandbox, Detail: portList(ep.Ports)})
	return nil
}

// SetContainer records which runtime container a sandbox is: its ID and
// labels (merged into the sandbox's). pontoon's Docker driver learns them
// from Docker's API after the join, which does not carry them.
func (e *Engine) SetContainer(sandbox, containerID string, labels map[string]string) error {
	unlock := e.lockSandbox(sandbox)
	defer unlock()
	return e.st.Update(context.Background(), func(tx store.Tx) error {
		sb, err := tx.Sandbox(sandbox)
		if err != nil {
			return err
		}
		if containerID != "" && containerID != sb.ContainerID {
			others, err := tx.SandboxesOfContainer(containerID)
			if err != nil {
				return err
			}
			for _, o := range others {
				if o != sandbox {
					return model.Conflictf("container %s already has sandbox %s", containerID, o)
				}
			}
			sb.ContainerID = containerID
		}
		if len(labels) > 0 && sb.Labels == nil {
			sb.Labels = map[string]string{}
		}
		for k, v := range labels {
			sb.Labels[k] = v
		}
		return tx.PutSandbox(sb)
	})
}

// dockerGone reports whether a Docker container's sandbox outlived its
// container: its namespace is gone (the sandbox key is no namespace) and
// so are the host ends of all its veths (they die with the namespace).
// dockerd normally says so (Leave); it cannot when pontoon was down as
// the container stopped. A container not started yet has its veths (and
// a key that is no namespace yet), so it is not gone.
func (e *Engine) dockerGone(sb *model.Sandbox, eps []*model.Endpoint) bool {
	if _, err := e.ns.Ino(sb.Netns); err == nil {
		return false
	}
	for _, ep := range eps {
		if idx, err := e.link.LinkIndex(ep.HostIf); err != nil || idx != 0 {
			return false
		}
	}
	return true
}
