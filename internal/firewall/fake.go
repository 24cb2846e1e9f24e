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
	return &Fake{
		Bridge: br,
		nft: nft{log: log, nft: k, docker: noDockerUser{}, elems: knftElements{nft: k}, br: br, guards: knftGuards{nft: br},
			dump: func(context.Context) (string, error) { return k.Dump(), nil }},
		Fake: k,
	}
}

// Dump is Interface's Dump, spelled out because nft and knftables.Fake
// both have one; f.Fake.Dump() gives the same text without an error.
func (f *Fake) Dump(ctx context.Context) (string, error) { return f.nft.Dump(ctx) }
