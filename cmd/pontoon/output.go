package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"pontoon/internal/api"
)

type table struct {
	tw *tabwriter.Writer
}

// newTable starts an aligned table, with a header row when given.
func newTable(cmd *cobra.Command, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cols ...string) { fmt.Fprintln(t.tw, strings.Join(cols, "\t")) }
func (t *table) flush() error       { return t.tw.Flush() }

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func addFormatFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVar(format, "format", "table", "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if *format != "table" && *format != "json" {
			return fmt.Errorf("--format %q is not known: use table or json", *format)
		}
		return nil
	}
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%q needs %s (got %d argument(s)); see `%s --help`", cmd.CommandPath(), names, len(args), cmd.CommandPath())
		}
		return nil
	}
}

func minArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return fmt.Errorf("%q needs at least one %s; see `%s --help`", cmd.CommandPath(), names, cmd.CommandPath())
		}
		return nil
	}
}

type completer = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective)

func completeNetworks(g *globals) completer {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		nets, err := g.client().Networks(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, n := range nets {
			out = append(out, n.Name)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completeSandboxes(g *globals) completer {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		sbs, err := g.client().Sandboxes(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, s := range sbs {
			out = append(out, s.Name)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNetworkFlag completes --network: the daemon's networks, "none"
// and "host", and for run "sandbox:NAME" for every sandbox.
func completeNetworkFlag(g *globals, sandboxes bool) completer {
	return func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		out, _ := completeNetworks(g)(cmd, args, s)
		out = append(out, "none\tloopback only", "host\tthe host's network (no new namespace)")
		if sandboxes {
			sbs, _ := completeSandboxes(g)(cmd, args, s)
			for _, sb := range sbs {
				out = append(out, "sandbox:"+sb+"\tshare "+sb+"'s namespace")
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completeNetworkThenSandbox(g *globals) completer {
	return func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		switch len(args) {
		case 0:
			return completeNetworks(g)(cmd, args, s)
		case 1:
			return completeSandboxes(g)(cmd, args, s)
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

// forEachName calls fn for every name, in order, and goes on past a
// failure (Docker's habit with several names): each failure is reported on
// stderr, and the command exits 1 at the end if any failed. A daemon that
// cannot be reached, refuses this user, or a cancelled command stops it at
// once, since every other name would fail the same way.
func forEachName(cmd *cobra.Command, names []string, fn func(name string) error) error {
	failed := 0
	for _, name := range names {
		err := fn(name)
		switch {
		case err == nil:
			continue
		case errors.Is(err, api.ErrUnavailable), errors.Is(err, api.ErrPermission), errors.Is(err, context.Canceled):
			return err
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "pontoon:", err)
		failed++
	}
	if failed > 0 {
		return exitError{code: 1}
	}
	return nil
}

// stopped returns forEachName's error when it stopped before the last name
// (nothing to print), nil when it went through them all.
func stopped(err error) error {
	var ee exitError
	if err != nil && !errors.As(err, &ee) {
		return err
	}
	return nil
}

// inspectEach is `inspect NAME...`: it gets every name with get, reporting
// each one that fails and going on (Docker's habit), prints what it got
// with print, and exits 1 at the end when any failed.
func inspectEach[T any](cmd *cobra.Command, names []string, get func(context.Context, string) (T, error), print func([]T) error) error {
	all := []T{}
	failed := forEachName(cmd, names, func(name string) error {
		v, err := get(cmd.Context(), name)
		if err == nil {
			all = append(all, v)
		}
		return err
	})
	if stop := stopped(failed); stop != nil {
		return stop
	}
	if err := print(all); err != nil {
		return err
	}
	return failed
}

// filters are --filter KEY=VALUE flags, as in docker ls: values of one key
// are alternatives (any may match), different keys must all match.
type filters map[string][]string

func parseFilters(in []string, keys ...string) (filters, error) {
	f := filters{}
	for _, s := range in {
		k, v, ok := strings.Cut(s, "=")
		if !ok || v == "" || !slices.Contains(keys, k) {
			return nil, fmt.Errorf("--filter %q: write KEY=VALUE with KEY one of %s", s, strings.Join(keys, ", "))
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// match reports whether the values given for key allow the item: true
// when there are none, or when ok accepts one of them.
func (f filters) match(key string, ok func(v string) bool) bool {
	vs := f[key]
	if len(vs) == 0 {
		return true
	}
	return slices.ContainsFunc(vs, ok)
}

// matchLabel is the label filter: "KEY" (has the label) or "KEY=VALUE".
func matchLabel(labels map[string]string) func(string) bool {
	return func(v string) bool {
		k, want, withValue := strings.Cut(v, "=")
		got, has := labels[k]
		return has && (!withValue || got == want)
	}
}

func addFilterFlag(cmd *cobra.Command, in *[]string, help string) {
	cmd.Flags().StringArrayVarP(in, "filter", "f", nil, help)
}
