package firewall

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// Set and chain names in table inet pontoon.
const (
	setBridges  = "bridges"      // every pontoon bridge
	setInternal = "internal"     // bridges of --internal networks
	setIntra    = "intra"        // bridge . bridge pairs: traffic inside one network
	setMasq     = "masq-subnets" // subnets whose traffic is masqueraded on the way out

	chainForward     = "forward"
	chainPostrouting = "postrouting"
)

// nft is the knftables-backed implementation of Interface.
type nft struct {
	log    *slog.Logger
	nft    knftables.Interface
	docker dockerUser
}

// New returns the real implementation: it execs nft (via knftables) for
// each Sync — a few milliseconds, paid only when networks change.
func New(log *slog.Logger) (Interface, error) {
	k, err := knftables.New(knftables.InetFamily, TableName)
	if err != nil {
		return nil, err
	}
	return &nft{log: log, nft: k, docker: newDockerUser(log)}, nil
}

// Fake is Interface over knftables.Fake: it holds the ruleset in memory and
// dumps it in nft syntax (golden tests).
type Fake struct {
	nft
	*knftables.Fake
}

// NewFake returns a fake firewall.
func NewFake() *Fake {
	f := knftables.NewFake(knftables.InetFamily, TableName)
	return &Fake{nft: nft{log: slog.New(slog.DiscardHandler), nft: f, docker: noDockerUser{}}, Fake: f}
}

func (f *Fake) Sync(ctx context.Context, s State) error  { return f.nft.Sync(ctx, s) }
func (f *Fake) Exists(ctx context.Context) (bool, error) { return f.nft.Exists(ctx) }
func (f *Fake) Delete(ctx context.Context) error         { return f.nft.Delete(ctx) }
func (f *Fake) Dump(ctx context.Context) (string, error) { return f.Fake.Dump(), nil }

// build returns the transaction that makes the table match s from any
// starting point: add (idempotent) + flush the table, then everything.
func build(tx *knftables.Transaction, s State) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("managed by pontoon: rewritten from its state on every change; do not edit")})
	tx.Flush(&knftables.Table{})

	tx.Add(&knftables.Set{Name: setBridges, Type: "ifname", Comment: knftables.PtrTo("bridges of pontoon networks")})
	tx.Add(&knftables.Set{Name: setInternal, Type: "ifname", Comment: knftables.PtrTo("bridges of internal networks")})
	tx.Add(&knftables.Set{Name: setIntra, Type: "ifname . ifname", Comment: knftables.PtrTo("in and out of the same network")})
	tx.Add(&knftables.Set{Name: setMasq, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("subnets masqueraded when they leave the host")})
	// `flush table` empties chains but keeps set elements: flush each set.
	for _, name := range []string{setBridges, setInternal, setIntra, setMasq} {
		tx.Flush(&knftables.Set{Name: name})
	}

	tx.Add(&knftables.Chain{Name: chainForward, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority)})
	// br_netfilter is built into this kernel and bridge-nf-call-iptables is
	// 1, so frames bridged between two sandboxes of one network come through
	// this hook too, with iifname = oifname = the bridge: accept them first,
	// with one set lookup.
	tx.Add(&knftables.Rule{Chain: chainForward, Rule: "iifname . oifname @" + setIntra + " accept"})
	// Internal networks: nothing in or out but their own traffic.
	tx.Add(&knftables.Rule{Chain: chainForward, Rule: "iifname @" + setInternal + " drop"})
	tx.Add(&knftables.Rule{Chain: chainForward, Rule: "oifname @" + setInternal + " drop"})
	// Networks are isolated from each other.
	tx.Add(&knftables.Rule{Chain: chainForward, Rule: "iifname @" + setBridges + " oifname @" + setBridges + " drop"})
	// From outside into sandboxes: replies, and connections a published
	// port (DNAT) let in; nothing else.
	tx.Add(&knftables.Rule{Chain: chainForward, Rule: "oifname @" + setBridges + " ct state established,related accept"})
	tx.Add(&knftables.Rule{Chain: chainForward, Rule: "oifname @" + setBridges + " ct status dnat accept"})
	tx.Add(&knftables.Rule{Chain: chainForward, Rule: "oifname @" + setBridges + " drop"})
	// From sandboxes out: the chain's policy (accept). A foreign firewall
	// may still drop it; see dockeruser.go.

	tx.Add(&knftables.Chain{Name: chainPostrouting, Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
	tx.Add(&knftables.Rule{Chain: chainPostrouting, Rule: "ip saddr @" + setMasq + " oifname != @" + setBridges + " masquerade"})

	nets := slices.Clone(s.Networks)
	slices.SortFunc(nets, func(a, b Network) int { return strings.Compare(a.Bridge, b.Bridge) })
	for _, n := range nets {
		c := knftables.PtrTo("network " + n.Name)
		tx.Add(&knftables.Element{Set: setBridges, Key: []string{n.Bridge}, Comment: c})
		tx.Add(&knftables.Element{Set: setIntra, Key: []string{n.Bridge, n.Bridge}, Comment: c})
		if n.Internal {
			tx.Add(&knftables.Element{Set: setInternal, Key: []string{n.Bridge}, Comment: c})
		}
		if n.Masquerade && !n.Internal {
			tx.Add(&knftables.Element{Set: setMasq, Key: []string{n.Subnet.String()}, Comment: c})
		}
	}
}

func (f *nft) Sync(ctx context.Context, s State) error {
	tx := f.nft.NewTransaction()
	build(tx, s)
	f.log.Debug("nft transaction", "table", "inet "+TableName, "text", tx.String())
	if err := f.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("apply nftables table inet %s: %w", TableName, err)
	}
	if err := f.docker.sync(ctx, s); err != nil {
		return fmt.Errorf("DOCKER-USER: %w", err)
	}
	return nil
}

func (f *nft) Exists(ctx context.Context) (bool, error) {
	_, err := f.nft.List(ctx, "chains")
	if knftables.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func (f *nft) Delete(ctx context.Context) error {
	var errs []error
	tx := f.nft.NewTransaction()
	// add+delete: deleting a table that does not exist is not an error then
	// (Debian's nft 1.0.6 has no `destroy`).
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	if err := f.nft.Run(ctx, tx); err != nil {
		errs = append(errs, err)
	}
	if err := f.docker.sync(ctx, State{}); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete firewall state: %v", errs)
	}
	return nil
}

func (f *nft) Dump(ctx context.Context) (string, error) {
	var b strings.Builder
	for _, kind := range []string{"sets", "chains"} {
		names, err := f.nft.List(ctx, kind)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s: %s\n", kind, strings.Join(names, ", "))
	}
	for _, ch := range []string{chainForward, chainPostrouting} {
		rules, err := f.nft.ListRules(ctx, ch)
		if err != nil {
			return "", err
		}
		for _, r := range rules {
			fmt.Fprintf(&b, "%s: %s\n", ch, r.Rule)
		}
	}
	return b.String(), nil
}
