package firewall

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
)

// dockerUser keeps pontoon's rules in Docker's DOCKER-USER chain.
//
// Why: nftables runs every base chain on a hook, and a drop in any of them
// wins. Docker's iptables sets the FORWARD policy to DROP (and on this
// kernel br_netfilter sends even bridged frames through FORWARD), so
// without help pontoon's sandboxes could not reach each other or the
// outside on a host that runs Docker. DOCKER-USER is Docker's documented
// place for user rules, jumped to first from FORWARD. While Docker's layout
// is present, each pontoon network gets two commented accept rules there
// (in and out of its bridge); they go with the network. pontoon's own table
// still decides what may pass.
//
// The rules are managed with the iptables command (iptables-nft), so that
// Docker and `iptables -S` keep understanding the chain; this runs only when
// networks change, never per endpoint.
type dockerUser interface {
	sync(ctx context.Context, s State) error
}

type noDockerUser struct{}

func (noDockerUser) sync(context.Context, State) error { return nil }

type iptablesDockerUser struct {
	log  *slog.Logger
	path string // iptables binary; "" when not installed
}

func newDockerUser(log *slog.Logger) dockerUser {
	p, err := exec.LookPath("iptables")
	if err != nil {
		return noDockerUser{}
	}
	return &iptablesDockerUser{log: log, path: p}
}

// CommentPrefix marks pontoon's rules in foreign chains.
const CommentPrefix = "pontoon: network "

func (d *iptablesDockerUser) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.path, append([]string{"-w", "5"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// needed reports whether Docker's layout is there: a DOCKER-USER chain and
// a FORWARD chain that drops by policy.
func (d *iptablesDockerUser) needed(ctx context.Context) (present, dropPolicy bool) {
	if _, err := d.run(ctx, "-S", "DOCKER-USER"); err != nil {
		return false, false
	}
	out, err := d.run(ctx, "-S", "FORWARD")
	if err != nil {
		return true, false
	}
	return true, strings.Contains(out, "-P FORWARD DROP")
}

// ruleSpecs returns the rules a network needs in DOCKER-USER.
func ruleSpecs(n Network) [][]string {
	c := CommentPrefix + n.Name
	return [][]string{
		{"-i", n.Bridge, "-m", "comment", "--comment", c, "-j", "ACCEPT"},
		{"-o", n.Bridge, "-m", "comment", "--comment", c, "-j", "ACCEPT"},
	}
}

func (d *iptablesDockerUser) sync(ctx context.Context, s State) error {
	present, drop := d.needed(ctx)
	if !present {
		return nil
	}
	out, err := d.run(ctx, "-S", "DOCKER-USER")
	if err != nil {
		return err
	}
	// What is there now: our rules, as `-A DOCKER-USER …` lines.
	var have []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-A DOCKER-USER ") && strings.Contains(line, CommentPrefix) {
			have = append(have, strings.TrimPrefix(line, "-A DOCKER-USER "))
		}
	}
	want := map[string][]string{}
	if drop {
		for _, n := range s.Networks {
			for _, spec := range ruleSpecs(n) {
				want[canonical(spec)] = spec
			}
		}
	}
	var errs []string
	// Add before delete (a network whose rules change never loses them).
	for key, spec := range want {
		if slices.ContainsFunc(have, func(h string) bool { return canonical(strings.Fields(unquote(h))) == key }) {
			continue
		}
		if _, err := d.run(ctx, append([]string{"-I", "DOCKER-USER"}, spec...)...); err != nil {
			errs = append(errs, err.Error())
		} else {
			d.log.Info("DOCKER-USER: added rule so Docker's FORWARD drop policy lets a pontoon network through", "rule", strings.Join(spec, " "))
		}
	}
	for _, h := range have {
		fields := strings.Fields(unquote(h))
		if _, ok := want[canonical(fields)]; ok {
			continue
		}
		if _, err := d.run(ctx, append([]string{"-D", "DOCKER-USER"}, splitRule(h)...)...); err != nil {
			errs = append(errs, err.Error())
		} else {
			d.log.Info("DOCKER-USER: removed rule no longer needed", "rule", h)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// canonical makes a comparable key of a rule spec.
func canonical(spec []string) string { return strings.Join(spec, " ") }

func unquote(s string) string { return strings.ReplaceAll(s, `"`, "") }

// splitRule splits an `iptables -S` rule into arguments, honouring the
// double quotes around the comment.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inq := false
	for _, r := range s {
		switch {
		case r == '"':
			inq = !inq
		case r == ' ' && !inq:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
