package firewall

import (
	"context"
	"log/slog"

	"sigs.k8s.io/knftables"
)

// Fake is Interface over knftables.Fake: the same ruleset code, with the
// table held in memory. Fake.Dump() (of the embedded knftables.Fake) prints
// it as `add …` lines for golden files; Dump(ctx) returns the same text.
// There is no DOCKER-USER on a fake host.
type Fake struct {
	nft
	*knftables.Fake
	// Bridge holds table bridge pontoon (anti-spoofing).
	Bridge *knftables.Fake
	events chan Event
}

var _ Interface = (*Fake)(nil)

// NewFake returns a fake firewall with an empty ruleset. It logs nothing;
// use NewFakeLogger to see the transactions.
func NewFake() *Fake { return NewFakeLogger(nil) }

// NewFakeLogger is NewFake with a logger for the transaction text (debug).
func NewFakeLogger(log *slog.Logger) *Fake {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := knftables.NewFake(knftables.InetFamily, TableName)
	br := knftables.NewFake(knftables.BridgeFamily, TableName)
	f := &Fake{
		Bridge: br,
		nft: nft{log: log, nft: k, docker: noDockerUser{}, elems: knftElements{nft: k}, br: br, guards: knftGuards{nft: br},
			dump: func(context.Context) (string, error) { return k.Dump(), nil }},
		Fake:   k,
		events: make(chan Event, 16),
	}
	f.nft.watch = func(context.Context) (<-chan Event, error) { return f.events, nil }
	f.nft.check = func(State) string {
		k.RLock()
		defer k.RUnlock()
		if k.Table == nil {
			return "table inet " + TableName + " is missing"
		}
		return ""
	}
	return f
}

// Emit sends a change notice to Watch's channel, as nftables would after
// someone changed the table.
func (f *Fake) Emit(ev Event) {
	select {
	case f.events <- ev:
	default:
	}
}

// Dump is Interface's Dump, spelled out because nft and knftables.Fake
// both have one; f.Fake.Dump() gives the same text without an error.
func (f *Fake) Dump(ctx context.Context) (string, error) { return f.nft.Dump(ctx) }

// Check is Interface's Check, spelled out because nft and knftables.Fake
// both have one.
func (f *Fake) Check(ctx context.Context, want State) string { return f.nft.Check(ctx, want) }
