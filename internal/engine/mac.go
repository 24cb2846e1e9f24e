package engine

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// An endpoint's MAC is the one its attach asked for (--mac, CNI's "mac"
// capability), else the one derived from its first address (Docker's
// 02:42 and the four bytes of the IPv4 address), so that a reader can tell
// one from the other. Either way it is unique on its network: two
// interfaces with one MAC on a bridge make its FDB flap between their
// ports and each loses the other's frames. A MAC asked for that another
// endpoint of the network has, or the bridge's own, is refused. A derived
// one can be taken only by a MAC someone chose (02:42:0a:00:00:05 for
// 10.0.0.5 while 10.0.0.5 was free); that endpoint gets a random locally
// administered MAC instead, rather than an attach failing because of
// someone else's choice.

// macUser says who on network nw has mac already: another endpoint (one
// being removed holds none: its link is down and off the bridge) or the
// network's bridge (link.BridgeMAC). "" when mac is free.
func macUser(tx store.Tx, nw *model.Network, mac net.HardwareAddr) (string, error) {
	if nw.Bridge != "" && bytes.Equal(link.BridgeMAC(bridgeOf(nw)), mac) {
		return "the bridge " + nw.Bridge + " (its MAC is derived from the gateway's address)", nil
	}
	eps, err := tx.EndpointsOnNetwork(nw.Name)
	if err != nil {
		return "", err
	}
	for _, o := range eps {
		if o.State == model.StateRemoving {
			continue
		}
		if hw, err := net.ParseMAC(o.MAC); err == nil && bytes.Equal(hw, mac) {
			return fmt.Sprintf("sandbox %s (%s)", o.Sandbox, o.IfName), nil
		}
	}
	return "", nil
}

// checkMACFree refuses a MAC asked for (already checked with
// model.ParseMAC) that is taken on nw.
func checkMACFree(tx store.Tx, nw *model.Network, asked string) error {
	hw, err := model.ParseMAC(asked)
	if err != nil {
		return err
	}
	who, err := macUser(tx, nw, hw)
	if err != nil || who == "" {
		return err
	}
	return model.Conflictf("mac %s is taken on network %s by %s: pick another, or leave --mac out for one derived from the address", hw, nw.Name, who)
}

// pickMAC sets ep.MAC, its addresses reserved: asked (validated) when
// given and free on nw, else the MAC derived from its first address or,
// when that is taken, a random one.
func pickMAC(tx store.Tx, nw *model.Network, ep *model.Endpoint, asked string) error {
	if asked != "" {
		if err := checkMACFree(tx, nw, asked); err != nil {
			return err
		}
		hw, _ := model.ParseMAC(asked)
		ep.MAC = hw.String()
		return nil
	}
	hw := model.MACFromIP(ep.FirstIP())
	for range 8 {
		who, err := macUser(tx, nw, hw)
		if err != nil {
			return err
		}
		if who == "" {
			ep.MAC = hw.String()
			return nil
		}
		hw = randomMAC()
	}
	return model.Conflictf("no free MAC found on network %s for sandbox %s: give one with --mac", nw.Name, ep.Sandbox)
}

// randomMAC is a random locally administered unicast MAC.
func randomMAC() net.HardwareAddr {
	hw := make(net.HardwareAddr, 6)
	_, _ = rand.Read(hw) // never fails (crypto/rand, Go 1.24+)
	hw[0] = hw[0]&^1 | 2
	return hw
}
