package firewall

import (
	"context"
	"fmt"

	gnft "github.com/google/nftables"
)

// Event says that nftables changed in a way that may concern pontoon: its
// own tables, or (Foreign) Docker's filter chains where pontoon keeps rules.
type Event struct {
	Foreign bool
}

// watchNftables streams nftables' change notifications (tables, chains,
// rules, sets, elements) until ctx ends. No polling: the kernel pushes them.
func watchNftables(ctx context.Context) (<-chan Event, error) {
	conn, err := gnft.New()
	if err != nil {
		return nil, err
	}
	mon := gnft.NewMonitor(gnft.WithMonitorObject(
		gnft.MonitorObjectTables | gnft.MonitorObjectChains | gnft.MonitorObjectRules |
			gnft.MonitorObjectSets | gnft.MonitorObjectElements))
	events, err := conn.AddMonitor(mon)
	if err != nil {
		return nil, fmt.Errorf("subscribe to nftables events: %w", err)
	}
	out := make(chan Event, 16)
	go func() {
		<-ctx.Done()
		mon.Close()
	}()
	go func() {
		defer close(out)
		for ev := range events {
			if ev.Error != nil {
				continue
			}
			t := eventTable(ev)
			if t == nil {
				continue
			}
			e := Event{Foreign: dockerEvent(ev, t)}
			if !e.Foreign && t.Name != TableName {
				continue // other tables' churn (a CNI plugin's NAT chains, say) is none of ours
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			default: // a burst: the receiver has enough to act on
			}
		}
	}()
	return out, nil
}

// dockerEvent reports whether an event touched Docker's filter table (of
// either family) as a whole or its FORWARD or DOCKER-USER chain, where
// pontoon keeps rules.
func dockerEvent(ev *gnft.MonitorEvent, t *gnft.Table) bool {
	if (t.Family != gnft.TableFamilyIPv4 && t.Family != gnft.TableFamilyIPv6) || t.Name != "filter" {
		return false
	}
	var chain string
	switch d := ev.Data.(type) {
	case *gnft.Table:
		return true
	case *gnft.Chain:
		chain = d.Name
	case *gnft.Rule:
		if d.Chain != nil {
			chain = d.Chain.Name
		}
	}
	return chain == "DOCKER-USER" || chain == "FORWARD"
}

func eventTable(ev *gnft.MonitorEvent) *gnft.Table {
	switch d := ev.Data.(type) {
	case *gnft.Table:
		return d
	case *gnft.Chain:
		return d.Table
	case *gnft.Rule:
		return d.Table
	case *gnft.Set:
		return d.Table
	}
	return nil
}

// checkNftables says what is missing from pontoon's tables, or "" when
// they are whole: both tables, the forward chain's rules, and one bridge
// element per network, a published-port element per port and an
// anti-spoofing element per endpoint. It reads over netlink (no nft
// process), so it is cheap enough to run after every burst of events.
func checkNftables(want State) string {
	conn, err := gnft.New()
	if err != nil {
		return ""
	}
	tables, err := conn.ListTablesOfFamily(gnft.TableFamilyINet)
	if err != nil {
		return ""
	}
	var tbl *gnft.Table
	for _, t := range tables {
		if t.Name == TableName {
			tbl = t
		}
	}
	if tbl == nil {
		return "table inet " + TableName + " is missing"
	}
	var brTbl *gnft.Table
	if brs, err := conn.ListTablesOfFamily(gnft.TableFamilyBridge); err == nil {
		for _, t := range brs {
			if t.Name == TableName {
				brTbl = t
			}
		}
		if brTbl == nil {
			return "table bridge " + TableName + " (anti-spoofing) is missing"
		}
	}
	rules, err := conn.GetRules(tbl, &gnft.Chain{Name: "forward", Table: tbl})
	if err != nil || len(rules) == 0 {
		return "the forward chain lost its rules"
	}
	count := func(t *gnft.Table, name string) (int, bool) {
		set, err := conn.GetSetByName(t, name)
		if err != nil {
			return 0, false
		}
		els, err := conn.GetSetElements(set)
		if err != nil {
			return 0, false
		}
		return len(els), true
	}
	if n, ok := count(tbl, "bridges"); !ok || n < len(want.Networks) {
		return fmt.Sprintf("the set of bridges holds %d of %d networks", n, len(want.Networks))
	}
	ports, _ := portElements(want.Ports)
	have, ok := 0, true
	for _, f := range IPFamilies {
		for _, m := range []string{f.name(mapPortsAny), f.name(mapPortsIP)} {
			n, found := count(tbl, m)
			have, ok = have+n, ok && found
		}
	}
	if ok && have < len(ports) {
		return fmt.Sprintf("the maps of published ports hold %d of %d ports", have, len(ports))
	}
	// The VXLAN peers change only with a Sync: fewer is a node whose
	// tunnels are dropped, more a stale one still let in.
	vx := map[string]int{}
	for _, e := range want.VXLAN.elements() {
		vx[e.Set]++
	}
	for _, f := range IPFamilies {
		for _, name := range []string{f.name(setVXLANPorts), f.name(setVXLANPeers)} {
			if n, ok := count(tbl, name); ok && n != vx[name] {
				return fmt.Sprintf("the set %s holds %d elements, want %d", name, n, vx[name])
			}
		}
	}
	if rules, err := conn.GetRules(tbl, &gnft.Chain{Name: chainInput, Table: tbl}); err != nil || len(rules) == 0 {
		return "the input chain lost its rules"
	}
	if brTbl != nil {
		if n, ok := count(brTbl, setGuardPorts); ok && n < len(want.Guards) {
			return fmt.Sprintf("the anti-spoofing set holds %d of %d endpoints", n, len(want.Guards))
		}
	}
	return ""
}
