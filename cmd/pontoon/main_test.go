package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"pontoon/internal/api"
)

// run executes the CLI in-process with args against a socket where no
// daemon listens, and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv("PONTOON_SOCKET", t.TempDir()+"/none.sock")
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// A typo in a subcommand is an error with a suggestion at every level, as
// cobra does at the top level — not the group's help and success.
func TestUnknownSubcommandFails(t *testing.T) {
	for _, c := range []struct {
		args    []string
		suggest string
	}{
		{[]string{"sandbox", "craete", "x"}, "create"},
		{[]string{"sb", "craete", "x"}, "create"},
		{[]string{"network", "lss"}, "ls"},
		{[]string{"net", "inspcet", "x"}, "inspect"},
		{[]string{"completion", "bsh"}, "bash"},
		{[]string{"netwrok", "ls"}, "network"}, // top level, cobra's own check
	} {
		_, _, err := run(t, c.args...)
		if err == nil {
			t.Errorf("pontoon %s: no error", strings.Join(c.args, " "))
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "unknown command") || !strings.Contains(msg, "Did you mean this?\n\t"+c.suggest) {
			t.Errorf("pontoon %s: %q, want unknown command and the suggestion %q", strings.Join(c.args, " "), msg, c.suggest)
		}
	}
	// With no suggestion close enough, still an error.
	if _, _, err := run(t, "sandbox", "zzzzzzzz"); err == nil || !strings.Contains(err.Error(), `unknown command "zzzzzzzz" for "pontoon sandbox"`) {
		t.Errorf("sandbox zzzzzzzz: %v", err)
	}
}

// A group without a subcommand prints its help and succeeds (like docker
// network).
func TestGroupAloneShowsHelp(t *testing.T) {
	for _, g := range []string{"network", "sandbox", "completion"} {
		out, _, err := run(t, g)
		if err != nil || !strings.Contains(out, "Available Commands:") {
			t.Errorf("pontoon %s: err %v, output:\n%s", g, err, out)
		}
	}
}

func TestUnknownFlagSaysWhereHelpIs(t *testing.T) {
	_, _, err := run(t, "sandbox", "create", "x", "--netwrk", "a")
	if err == nil || !strings.Contains(err.Error(), "unknown flag: --netwrk") || !strings.Contains(err.Error(), "See 'pontoon sandbox create --help'.") {
		t.Fatalf("got %v", err)
	}
}

// pflag turns a back-quoted word in a flag's usage into the flag's type in
// --help (`--etc-netns-dir ip netns exec`): no usage may have one.
func TestFlagUsagesHaveNoBackquotes(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				name, _ := pflag.UnquoteUsage(f)
				t.Errorf("%s --%s: usage has a back-quote, --help shows it as \"--%s %s\"", c.CommandPath(), f.Name, f.Name, name)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd())
	// And what the user saw is gone.
	out, _, err := run(t, "daemon", "--help")
	if err != nil || strings.Contains(out, "--etc-netns-dir ip") || !strings.Contains(out, "--etc-netns-dir string") {
		t.Fatalf("daemon --help (err %v):\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "--version")
	if err != nil || out != "pontoon "+api.Build()+"\n" {
		t.Fatalf("--version: %q, %v", out, err)
	}
	if !strings.Contains(out, "go1.") {
		t.Fatalf("--version names no toolchain: %q", out)
	}
	// `version` prints the client's build before it asks the daemon.
	out, _, err = run(t, "version")
	if err == nil || !strings.Contains(out, "client: "+api.Build()+"\n") || !strings.Contains(out, "client API: v1") {
		t.Fatalf("version without a daemon: %q, %v", out, err)
	}
}
