package trace

import (
	"fmt"
	"strings"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// Traversal is one base chain the probe went through, as the kernel's
// trace events tell it (the engine groups the events; Compare reads them).
type Traversal struct {
	Family   string // inet, ip, bridge, …
	Table    string
	Chain    string
	Hook     string
	Priority int
	IIF, OIF string
	// Rules are the rule events in order, jumps into regular chains
	// included; the last one decides unless Policy.
	Rules []LiveRule
	// Verdict is the chain's end: accept, drop, … (the base chain's
	// policy when Policy).
	Verdict string
	Policy  bool
	// NAT describes a rewrite seen in the next traversal's header (dnat
	// or masquerade), when the engine could tell.
	NAT string
}

// LiveRule is one rule event: the rule (chain, handle, comment) and its
// verdict.
type LiveRule struct {
	Chain   string
	Handle  uint64
	Comment string
	Verdict string
}

// Pontoon says whether the traversal is of one of pontoon's own tables.
func (t Traversal) Pontoon() bool {
	return t.Table == firewall.TableName && (t.Family == string(firewall.FamilyInet) || t.Family == string(firewall.FamilyBridge))
}

func (t Traversal) where() string { return t.Family + " " + t.Table + " " + t.Chain }

// decider is the rule that ended the chain (nil: the policy).
func (t Traversal) decider() *LiveRule {
	if t.Policy || len(t.Rules) == 0 {
		return nil
	}
	return &t.Rules[len(t.Rules)-1]
}

// ruleName is pontoon's name for the deciding rule ("policy" when the
// policy decided; "" for a rule of another table).
func (t Traversal) ruleName() string {
	d := t.decider()
	if d == nil {
		return "policy"
	}
	if !t.Pontoon() {
		return ""
	}
	if _, r, ok := firewall.FindRule(firewall.Family(t.Family), t.Chain, d.Comment); ok {
		return r.Name
	}
	return fmt.Sprintf("handle %d", d.Handle)
}

// Text says the traversal in one line.
func (t Traversal) Text() string {
	ctx := t.Hook
	if t.IIF != "" {
		ctx += ", iif " + t.IIF
	}
	if t.OIF != "" {
		ctx += ", oif " + t.OIF
	}
	var parts []string
	for _, r := range t.Rules {
		name := fmt.Sprintf("handle %d", r.Handle)
		if t.Pontoon() && r.Chain == t.Chain {
			if _, pr, ok := firewall.FindRule(firewall.Family(t.Family), t.Chain, r.Comment); ok {
				name = pr.Name + fmt.Sprintf(" %q", pr.Text())
			}
		}
		if r.Chain != t.Chain {
			name = r.Chain + " rule " + name
		} else {
			name = "rule " + name
		}
		if r.Comment != "" && !t.Pontoon() && !strings.HasPrefix(r.Comment, firewall.CommentPrefix) {
			name += fmt.Sprintf(" %q", r.Comment)
		}
		parts = append(parts, name+" → "+r.Verdict)
	}
	if t.Policy {
		parts = append(parts, "policy "+t.Verdict)
	}
	s := fmt.Sprintf("%s (%s): %s", t.where(), ctx, strings.Join(parts, "; "))
	if t.NAT != "" {
		s += ", " + t.NAT
	}
	if c := t.dockerUser(); c != "" {
		s += " — pontoon's DOCKER-USER exception (" + c + ")"
	}
	return s
}

// dockerUser is the comment of pontoon's DOCKER-USER rule that accepted
// the packet, if one did.
func (t Traversal) dockerUser() string {
	if d := t.decider(); d != nil && d.Verdict == "accept" && strings.HasPrefix(d.Comment, firewall.CommentPrefix) {
		return d.Comment
	}
	return ""
}

// Compare sets tr.Live's comparison from what the kernel traced: each
// predicted netfilter hop is marked seen (same rule, same verdict), not
// seen, or differing; chains of other tables that saw the probe are
// inserted where the kernel met them; a drop the prediction does not have
// (another firewall's, or drift in pontoon's) becomes the live verdict.
// answer is the probe's answer (probe.Answer*), "" when nothing was sent.
func Compare(tr *model.Trace, obs []Traversal, answer string) {
	live := tr.Live
	live.Differences = nil
	var hops []model.TraceHop
	next := 0 // next predicted hop not yet copied
	copyUpTo := func(i int) {
		for ; next < i; next++ {
			h := tr.Hops[next]
			if h.Kind == model.HopNft && h.Seen == "" {
				h.Seen = "no"
			}
			hops = append(hops, h)
		}
	}
	seenTables := map[string]bool{}
	var drop *Traversal
	for i := range obs {
		o := &obs[i]
		tbl := o.Family + " " + o.Table
		if !seenTables[tbl] {
			seenTables[tbl] = true
			live.Tables = append(live.Tables, tbl)
		}
		if o.Pontoon() {
			k := -1
			for j := next; j < len(tr.Hops); j++ {
				h := tr.Hops[j]
				if h.Kind == model.HopNft && h.Family == o.Family && h.Table == o.Table && h.Chain == o.Chain {
					k = j
					break
				}
			}
			if k < 0 {
				hops = append(hops, liveHop(o, "differs"))
				live.Differences = append(live.Differences, fmt.Sprintf("the kernel passed the probe through %s, which the prediction does not (%s)", o.where(), o.Text()))
			} else {
				copyUpTo(k)
				h := tr.Hops[k]
				want := h.Rule
				if want == "" {
					want = "policy"
				}
				if got := o.ruleName(); got == want && o.Verdict == h.Verdict {
					h.Seen = "yes"
				} else {
					h.Seen = "differs"
					live.Differences = append(live.Differences, fmt.Sprintf("in %s the prediction is %s → %s, the kernel did %s → %s", o.where(), want, h.Verdict, got, o.Verdict))
				}
				hops = append(hops, h)
				next = k + 1
			}
		} else {
			hops = append(hops, liveHop(o, "yes"))
		}
		if o.Verdict == "drop" && drop == nil {
			drop = o
			break // a dropped packet goes nowhere after this
		}
	}
	copyUpTo(len(tr.Hops))

	nftDrop := tr.Verdict.Result == model.VerdictDropped && tr.Verdict.Rule != "port isolation"
	switch {
	case drop != nil && !drop.Pontoon():
		live.Verdict = foreignDrop(drop, tr)
		live.Differences = append(live.Differences, live.Verdict.Sentence)
	case drop != nil && (!nftDrop || tr.Verdict.Where != drop.where()):
		live.Verdict = &model.TraceVerdict{Result: model.VerdictDropped, Where: drop.where(), Rule: drop.ruleName(),
			Sentence: fmt.Sprintf("the kernel dropped the probe in %s (%s), where pontoon's state predicts it %s: the table differs from pontoon's state (drift); `pontoon doctor` checks it, and self-healing rewrites the table", drop.where(), drop.ruleName(), tr.Verdict.Result)}
	case drop == nil:
		// Every chain the prediction has the packet cross must show in
		// the kernel's trace.
		for _, h := range hops {
			if h.Kind == model.HopNft && h.Seen == "no" {
				live.Differences = append(live.Differences, fmt.Sprintf("the kernel's trace does not show %s %s %s, which the prediction has the probe cross", h.Family, h.Table, h.Chain))
			}
		}
	}
	// What the probe heard back says whether it arrived.
	if drop == nil && (answer == "reply" || answer == "refused") && (tr.Verdict.Result == model.VerdictDropped || tr.Verdict.Result == model.VerdictUnreachable) {
		live.Differences = append(live.Differences, fmt.Sprintf("the destination answered (%s), but pontoon's state predicts the probe %s", answer, tr.Verdict.Result))
	}
	live.Agrees = len(live.Differences) == 0
	tr.Hops = hops
}

func liveHop(o *Traversal, seen string) model.TraceHop {
	h := model.TraceHop{Kind: model.HopNft, Where: "host", Family: o.Family, Table: o.Table, Chain: o.Chain, Hook: o.Hook,
		Priority: o.Priority, Verdict: o.Verdict, Foreign: !o.Pontoon(), Seen: seen, Text: o.Text(), NAT: o.NAT}
	if d := o.decider(); d != nil {
		h.Rule, h.Comment = o.ruleName(), d.Comment
		if !o.Pontoon() {
			h.Rule = ""
			h.RuleText = fmt.Sprintf("handle %d", d.Handle)
		}
	}
	return h
}

// foreignDrop says which other table dropped the probe, and what to do.
func foreignDrop(o *Traversal, tr *model.Trace) *model.TraceVerdict {
	by := "its policy drop"
	rule := "policy"
	if d := o.decider(); d != nil {
		by = fmt.Sprintf("rule handle %d", d.Handle)
		if d.Comment != "" {
			by += fmt.Sprintf(" %q", d.Comment)
		}
		if d.Chain != o.Chain {
			by += " in chain " + d.Chain
		}
		rule = fmt.Sprintf("handle %d", d.Handle)
	}
	accepted := "pontoon's own rules accept this packet"
	if tr.Verdict.Result == model.VerdictDropped {
		accepted = "pontoon's own rules would drop it later anyway (" + tr.Verdict.Rule + ")"
	}
	return &model.TraceVerdict{Result: model.VerdictDropped, Where: o.where(), Rule: rule,
		Sentence: fmt.Sprintf("dropped by table %s %s, chain %s (%s hook), by %s — a table that is not pontoon's: %s, but on one hook any table's drop wins over another's accept; let pontoon's bridges through in that firewall (for Docker's, pontoon does it in DOCKER-USER), or remove the drop",
			o.Family, o.Table, o.Chain, o.Hook, by, accepted)}
}
