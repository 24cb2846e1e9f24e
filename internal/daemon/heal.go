package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/nftables"

	"pontoon/internal/engine"
	"pontoon/internal/firewall"
)

// healDelay lets a burst of nftables events (a ruleset flush is one event
// per table, chain, set and rule) settle before the table is checked.
const healDelay = 100 * time.Millisecond

// watchFirewall restores pontoon's firewall state when someone deletes or
// flushes it (`nft flush ruleset`, a firewall reload) or when Docker's
// chains appear or change. It listens to nftables' netlink events — no
// polling — and after each burst checks, with netlink reads (no nft
// process), that table inet pontoon still has its forward rules and one
// bridge element per network. Only then does it rewrite the table. pontoon's
// own rewrites are single atomic transactions, so the check after them
// passes and they do not trigger themselves.
func watchFirewall(ctx context.Context, eng *engine.Engine, log *slog.Logger) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorObject(
		nftables.MonitorObjectTables | nftables.MonitorObjectChains | nftables.MonitorObjectRules |
			nftables.MonitorObjectSets | nftables.MonitorObjectElements))
	events, err := conn.AddMonitor(mon)
	if err != nil {
		return fmt.Errorf("subscribe to nftables events: %w", err)
	}
	go func() {
		<-ctx.Done()
		mon.Close()
	}()
	go func() {
		var timer <-chan time.Time
		foreign := false
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					return
				}
				if ev.Error != nil {
					log.Debug("nftables monitor", "err", ev.Error)
				}
				if dockerEvent(ev) {
					foreign = true
				}
				if timer == nil {
					timer = time.After(healDelay)
				}
			case <-timer:
				timer = nil
				start := time.Now()
				reason := unhealthy(conn, eng)
				if reason == "" && !foreign {
					continue
				}
				foreign = false
				if err := eng.SyncFirewall(ctx); err != nil {
					log.Error("firewall drift: restore failed", "reason", reason, "err", err)
					continue
				}
				if reason == "" {
					// Docker's chains changed: the sync re-checked pontoon's
					// DOCKER-USER rules (and logs what it changed there).
					log.Debug("Docker's filter chains changed: DOCKER-USER rules re-checked", "took", time.Since(start).String())
				} else if unhealthy(conn, eng) == "" {
					log.Warn("firewall drift: restored pontoon's firewall state", "reason", reason, "took", time.Since(start).String())
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// dockerEvent reports whether an event touched Docker's filter table as a
// whole or its FORWARD or DOCKER-USER chain, where pontoon keeps rules.
// Other tables' churn (a CNI plugin's NAT chains, say) is none of ours.
func dockerEvent(ev *nftables.MonitorEvent) bool {
	t := eventTable(ev)
	if t == nil || t.Family != nftables.TableFamilyIPv4 || t.Name != "filter" {
		return false
	}
	var chain string
	switch d := ev.Data.(type) {
	case *nftables.Table:
		return true
	case *nftables.Chain:
		chain = d.Name
	case *nftables.Rule:
		if d.Chain != nil {
			chain = d.Chain.Name
		}
	}
	return chain == "DOCKER-USER" || chain == "FORWARD"
}

func eventTable(ev *nftables.MonitorEvent) *nftables.Table {
	switch d := ev.Data.(type) {
	case *nftables.Table:
		return d
	case *nftables.Chain:
		return d.Table
	case *nftables.Rule:
		return d.Table
	case *nftables.Set:
		return d.Table
	}
	return nil
}

// unhealthy says what is missing from table inet pontoon, or "" when it is
// whole. The names are those of internal/firewall's ruleset.
func unhealthy(conn *nftables.Conn, eng *engine.Engine) string {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return ""
	}
	var tbl *nftables.Table
	for _, t := range tables {
		if t.Name == firewall.TableName {
			tbl = t
		}
	}
	if tbl == nil {
		return "table inet " + firewall.TableName + " is missing"
	}
	if brs, err := conn.ListTablesOfFamily(nftables.TableFamilyBridge); err == nil {
		found := false
		for _, t := range brs {
			found = found || t.Name == firewall.TableName
		}
		if !found {
			return "table bridge " + firewall.TableName + " (anti-spoofing) is missing"
		}
	}
	rules, err := conn.GetRules(tbl, &nftables.Chain{Name: "forward", Table: tbl})
	if err != nil || len(rules) == 0 {
		return "the forward chain lost its rules"
	}
	set, err := conn.GetSetByName(tbl, "bridges")
	if err != nil {
		return "the set of bridges is missing"
	}
	elems, err := conn.GetSetElements(set)
	nets, _ := eng.NetworkCount()
	if err != nil || len(elems) < nets {
		return fmt.Sprintf("the set of bridges holds %d of %d networks", len(elems), nets)
	}
	return ""
}
