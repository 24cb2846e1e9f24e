package ovs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/ovn-kubernetes/libovsdb/client"
)

// CheckBridge describes how bridge b in the database and in ovs-vswitchd's
// report differs from b; it changes nothing. No differences: nil.
func (c *Client) CheckBridge(ctx context.Context, b Bridge) ([]string, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	br, err := c.bridge(b.Name)
	if errors.Is(err, client.ErrNotFound) {
		return []string{fmt.Sprintf("bridge %s does not exist", b.Name)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ovs: check bridge %s: %w", b.Name, err)
	}
	var diffs []string
	if br.DatapathType != DatapathType {
		diffs = append(diffs, fmt.Sprintf("bridge %s: datapath_type %q, want %q", b.Name, br.DatapathType, DatapathType))
	}
	it := &interfaceRow{Name: b.Name}
	if err := c.db.Get(ctx, it); err != nil {
		return append(diffs, fmt.Sprintf("bridge %s: internal interface %s missing", b.Name, b.Name)), nil
	}
	if it.Type != "internal" {
		diffs = append(diffs, fmt.Sprintf("bridge %s: interface %s has type %q, want \"internal\"", b.Name, b.Name, it.Type))
	}
	var want *int
	if b.MTU != 0 {
		want = &b.MTU
	}
	if !equalPtr(it.MTURequest, want) {
		diffs = append(diffs, fmt.Sprintf("bridge %s: mtu_request %s, want %s", b.Name, fmtPtr(it.MTURequest), fmtPtr(want)))
	}
	if want != nil && !equalPtr(it.MTU, want) {
		diffs = append(diffs, fmt.Sprintf("bridge %s: internal interface MTU %s, want %d", b.Name, fmtPtr(it.MTU), b.MTU))
	}
	diffs = append(diffs, vswitchdDiffs("bridge "+b.Name+": internal interface", it, true)...)
	return diffs, nil
}

// CheckPort describes how port p in the database and in ovs-vswitchd's
// report differs from p; it changes nothing. No differences: nil.
func (c *Client) CheckPort(ctx context.Context, p Port) ([]string, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	pr := &portRow{Name: p.Name}
	if err := c.db.Get(ctx, pr); err != nil {
		return []string{fmt.Sprintf("port %s does not exist", p.Name)}, nil
	}
	var diffs []string
	if on := c.bridgeOf(pr.UUID); on != p.Bridge {
		diffs = append(diffs, fmt.Sprintf("port %s: on bridge %s, want %s", p.Name, on, p.Bridge))
	}
	var want *int
	if p.VLAN != 0 {
		want = &p.VLAN
	}
	if !equalPtr(pr.Tag, want) {
		diffs = append(diffs, fmt.Sprintf("port %s: tag %s, want %s", p.Name, fmtPtr(pr.Tag), fmtPtr(want)))
	}
	keys := slices.Sorted(maps.Keys(p.ExternalIDs))
	for k := range pr.ExternalIDs {
		if _, ok := p.ExternalIDs[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		got, gok := pr.ExternalIDs[k]
		w, wok := p.ExternalIDs[k]
		switch {
		case !gok:
			diffs = append(diffs, fmt.Sprintf("port %s: external_ids:%s missing, want %q", p.Name, k, w))
		case !wok:
			diffs = append(diffs, fmt.Sprintf("port %s: external_ids:%s=%q not wanted", p.Name, k, got))
		case got != w:
			diffs = append(diffs, fmt.Sprintf("port %s: external_ids:%s=%q, want %q", p.Name, k, got, w))
		}
	}
	if len(pr.Interfaces) != 1 {
		return append(diffs, fmt.Sprintf("port %s: %d interfaces, want 1", p.Name, len(pr.Interfaces))), nil
	}
	it := &interfaceRow{UUID: pr.Interfaces[0]}
	if err := c.db.Get(ctx, it); err != nil {
		return append(diffs, fmt.Sprintf("port %s: interface missing", p.Name)), nil
	}
	if it.Name != p.Name || it.Type != "" && it.Type != "system" {
		diffs = append(diffs, fmt.Sprintf("port %s: interface %s of type %q, want %s of type \"\" (a kernel interface)", p.Name, it.Name, it.Type, p.Name))
	}
	return append(diffs, vswitchdDiffs("port "+p.Name, it, false)...), nil
}

// vswitchdDiffs reports what ovs-vswitchd wrote back about an interface:
// an error, no OpenFlow port, or (for internal interfaces) no kernel device.
func vswitchdDiffs(what string, it *interfaceRow, internal bool) []string {
	var diffs []string
	if it.Error != nil && *it.Error != "" {
		diffs = append(diffs, fmt.Sprintf("%s: ovs-vswitchd: %s", what, *it.Error))
	}
	if it.OFPort == nil || *it.OFPort <= 0 {
		diffs = append(diffs, fmt.Sprintf("%s: not attached by ovs-vswitchd (ofport %s)", what, fmtPtr(it.OFPort)))
	}
	if internal && (it.Ifindex == nil || *it.Ifindex <= 0) {
		diffs = append(diffs, fmt.Sprintf("%s: no kernel device (ifindex %s)", what, fmtPtr(it.Ifindex)))
	}
	return diffs
}

func fmtPtr(p *int) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}
