package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
)

// DOCKER-USER: the one place pontoon writes outside its own table.
//
// Why: nftables runs every base chain on a hook, and a drop in any of them
// wins, so an accept in table inet pontoon cannot undo a drop in iptables'
// table ip filter. Docker sets FORWARD's policy to DROP and jumps to
// DOCKER-USER first, its documented place for user rules; and on this
// kernel br_netfilter sends even frames bridged between two sandboxes
// through FORWARD. Without help, a host that runs Docker would cut every
// pontoon network, inside and out.
//
// So while table ip filter has a DOCKER-USER chain, each pontoon network
// has two rules at its top, accepting traffic in and out of its bridge,
// commented "pontoon: network NAME (…)". They let a network's traffic skip
// the rest of Docker's FORWARD chain (which only concerns Docker's
// bridges); what may pass is still decided by pontoon's own table, which
// runs on the same hook whatever iptables says. They are added whenever
// the chain exists — harmless while FORWARD's policy is accept, and already
// in place when Docker restarts and sets it to drop — and removed with the
// network, or by Delete.
//
// The rules are written with iptables-restore and read with iptables -S
// (iptables-nft), not with nft: iptables-nft keeps the comment in an xt
// match that nft neither shows nor writes, and a rule written by nft
// syntax into an iptables-nft table may be one iptables (and Docker) cannot
// parse any more. Both run only when Sync runs, never per endpoint.
//
// Both families: Docker with IPv6 (ip6tables, on by default in recent
// releases) has the same layout in table ip6 filter, and br_netfilter
// sends bridged IPv6 frames through its FORWARD too. The same rules go
// into both, from one description (dockerUserRules), through iptables and
// ip6tables; a family whose DOCKER-USER does not exist is left alone.
//
// Not handled: Docker on iptables-legacy (its rules are not on the nftables
// hooks pontoon sees; `iptables-legacy -S DOCKER-USER` would be needed), and
// other firewalls that drop on forward (ufw, firewalld); ForeignForwardDrop
// finds them for `pontoon doctor`.

// CommentPrefix starts the comment of every rule pontoon owns outside its
// table; a rule with it is pontoon's to add and remove.
const CommentPrefix = "pontoon:"

const dockerUserChain = "DOCKER-USER"

// dockerUserComment is the comment on a network's DOCKER-USER rules.
func dockerUserComment(network string) string {
	return CommentPrefix + " network " + network + " (managed by pontoon; removed with the network)"
}

// dockerUserRules returns the rules the networks need, in the order they
// should have at the top of DOCKER-USER, as iptables arguments after
// `-A DOCKER-USER`.
func dockerUserRules(nets []Network) [][]string {
	nets = slices.Clone(nets)
	slices.SortFunc(nets, func(a, b Network) int { return strings.Compare(a.Name, b.Name) })
	var rules [][]string
	for _, n := range nets {
		c := dockerUserComment(n.Name)
		rules = append(rules,
			[]string{"-i", n.Bridge, "-m", "comment", "--comment", c, "-j", "ACCEPT"},
			[]string{"-o", n.Bridge, "-m", "comment", "--comment", c, "-j", "ACCEPT"})
	}
	return rules
}

type dockerUser interface {
	// sync makes pontoon's rules in DOCKER-USER those of nets (none: remove
	// them all). A missing chain is success.
	sync(ctx context.Context, nets []Network) error
}

type noDockerUser struct{}

func (noDockerUser) sync(context.Context, []Network) error { return nil }

// iptablesDockerUser manages DOCKER-USER of one family.
type iptablesDockerUser struct {
	log     *slog.Logger
	family  string // nft's family of the table: ip, ip6
	name    string // iptables, ip6tables
	save    string // its path
	restore string // the path of its -restore
}

// dockerUsers is DOCKER-USER of every family there is a tool for.
type dockerUsers []dockerUser

func (ds dockerUsers) sync(ctx context.Context, nets []Network) error {
	var errs []error
	for _, d := range ds {
		errs = append(errs, d.sync(ctx, nets)) // keep going: the other family may still be fixed
	}
	return errors.Join(errs...)
}

func newDockerUser(log *slog.Logger) dockerUser {
	var ds dockerUsers
	for _, f := range IPFamilies {
		save, err1 := exec.LookPath(f.Xtables)
		restore, err2 := exec.LookPath(f.Xtables + "-restore")
		if err1 != nil || err2 != nil {
			// No such tool: nothing can have made Docker's chain there.
			log.Debug(f.Xtables + " not found: its DOCKER-USER not managed")
			continue
		}
		ds = append(ds, &iptablesDockerUser{log: log, family: f.Name, name: f.Xtables, save: save, restore: restore})
	}
	return ds
}

// errNoChain: DOCKER-USER (or table ip filter) does not exist.
var errNoChain = errors.New("no DOCKER-USER chain")

// list returns the rules of DOCKER-USER as argument lists (after
// `-A DOCKER-USER`), in order.
func (d *iptablesDockerUser) list(ctx context.Context) ([][]string, error) {
	// -w: wait for the xtables lock rather than fail (iptables-legacy
	// users hold it; iptables-nft barely uses it).
	cmd := exec.CommandContext(ctx, d.save, "-w", "5", "-t", "filter", "-S", dockerUserChain)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// iptables 1.8.9 (nf_tables) answers a missing chain with "chain
		// `DOCKER-USER' in table `filter' is incompatible", the same words
		// as for a chain it cannot parse: ask nft which it is. (Listing
		// creates nothing, neither here nor there.)
		if !chainExists(ctx, d.family, "filter", dockerUserChain) {
			return nil, errNoChain
		}
		return nil, fmt.Errorf("%s -S %s: %w: %s", d.name, dockerUserChain, err, strings.TrimSpace(stderr.String()))
	}
	var rules [][]string
	for _, line := range strings.Split(stdout.String(), "\n") {
		rest, ok := strings.CutPrefix(line, "-A "+dockerUserChain+" ")
		if !ok {
			continue
		}
		args, err := splitArgs(rest)
		if err != nil {
			return nil, fmt.Errorf("%s -S %s: %w", d.name, dockerUserChain, err)
		}
		rules = append(rules, args)
	}
	return rules, nil
}

// ours reports whether a rule carries pontoon's comment.
func ours(rule []string) bool {
	i := slices.Index(rule, "--comment")
	return i >= 0 && i+1 < len(rule) && strings.HasPrefix(rule[i+1], CommentPrefix)
}

// plan returns the rules to insert at the top (in order) and our rules to
// delete, given what the chain holds.
func plan(have, want [][]string) (insert, del [][]string) {
	seen := map[string]bool{}
	for _, r := range have {
		if !ours(r) {
			continue
		}
		k := strings.Join(r, "\x00")
		// A rule nobody wants any more, or a second copy of one.
		if seen[k] || !slices.ContainsFunc(want, func(w []string) bool { return slices.Equal(w, r) }) {
			del = append(del, r)
		}
		seen[k] = true
	}
	for _, w := range want {
		if !seen[strings.Join(w, "\x00")] {
			insert = append(insert, w)
		}
	}
	return insert, del
}

func (d *iptablesDockerUser) sync(ctx context.Context, nets []Network) error {
	have, err := d.list(ctx)
	if errors.Is(err, errNoChain) {
		return nil // no Docker: nothing to let through, nothing of ours to remove
	}
	if err != nil {
		return err
	}
	insert, del := plan(have, dockerUserRules(nets))
	if len(insert) == 0 && len(del) == 0 {
		return nil
	}
	// One iptables-restore --noflush: all changes in one transaction,
	// without touching anyone else's rules. Deleting by specification
	// removes the first match, so n copies need n deletes. Inserted in
	// reverse at position 1, so they end up at the top in order (adds
	// before deletes: a changed rule is never missing).
	var in strings.Builder
	in.WriteString("*filter\n")
	for i := len(insert) - 1; i >= 0; i-- {
		fmt.Fprintf(&in, "-I %s 1 %s\n", dockerUserChain, joinArgs(insert[i]))
	}
	for _, r := range del {
		fmt.Fprintf(&in, "-D %s %s\n", dockerUserChain, joinArgs(r))
	}
	in.WriteString("COMMIT\n")
	d.log.Debug(d.name+"-restore --noflush", "text", in.String())
	cmd := exec.CommandContext(ctx, d.restore, "-w", "5", "--noflush")
	cmd.Stdin = strings.NewReader(in.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s-restore --noflush: %w: %s\ninput:\n%s", d.name, err, strings.TrimSpace(stderr.String()), in.String())
	}
	for _, r := range insert {
		d.log.Info("DOCKER-USER: added rule so that Docker's FORWARD chain lets a pontoon network through", "table", d.family+" filter", "rule", joinArgs(r))
	}
	for _, r := range del {
		d.log.Info("DOCKER-USER: removed pontoon rule no longer needed", "table", d.family+" filter", "rule", joinArgs(r))
	}
	return nil
}

// joinArgs quotes arguments for iptables-restore; our arguments never hold
// quotes or backslashes (names are validated).
func joinArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t") {
			a = `"` + a + `"`
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// splitArgs splits an `iptables -S` rule into arguments. iptables quotes an
// argument that has spaces ("…") and escapes quotes and backslashes in it.
func splitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, inQuote := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQuote = !inQuote
			inArg = true
		case c == ' ' && !inQuote:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unbalanced quote in %q", s)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// chainExists reports whether nft can list the chain; on any doubt (nft
// fails for another reason) it says yes, so that the caller reports the
// error instead of ignoring the chain.
func chainExists(ctx context.Context, family, table, chain string) bool {
	cmd := exec.CommandContext(ctx, "nft", "list", "chain", family, table, chain)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return !strings.Contains(stderr.String(), "No such file or directory")
	}
	return true
}
