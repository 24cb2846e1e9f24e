// Command pontoon is pontoon's CLI and, as `pontoon daemon`, its daemon.
// The CLI is thin: it parses, calls the daemon's API over its unix socket,
// and prints.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"pontoon/internal/api"
)

// exitError carries a process exit status (e.g. of the command `exec` ran)
// and, when msg is set, a message main prints before exiting with it.
type exitError struct {
	code int
	msg  string
}

// childExit turns a child process's end into pontoon's: its exit status,
// 128+N when signal N killed it (as shells say); other errors as they are.
func childExit(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return exitError{code: 128 + int(st.Signal())}
		}
		return exitError{code: ee.ExitCode()}
	}
	return err
}

func (e exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "pontoon:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "pontoon:", err)
		os.Exit(1)
	}
}

type globals struct {
	socket string
}

func (g *globals) client() *api.Client { return api.NewClient(g.socket) }

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "pontoon",
		Short: "Container networking: namespaces, veth pairs, bridges, IPAM, NAT",
		Long: `pontoon wires network namespaces ("sandboxes") together the way Docker
wires containers: a veth pair per endpoint, a Linux bridge per network, an
address from the network's subnet, a default route through the gateway, and
NAT to the outside. The daemon (pontoon daemon) is the single writer of
state; every other command is a client of its API.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	sock := os.Getenv("PONTOON_SOCKET")
	if sock == "" {
		sock = api.DefaultSocket
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", sock, "daemon API socket (env PONTOON_SOCKET)")
	root.AddCommand(
		newDaemonCmd(),
		newNetworkCmd(g),
		newSandboxCmd(g),
		newTapCmd(g),
		newNodeCmd(g),
		newExecCmd(g),
		newRunCmd(g),
		newDoctorCmd(g),
		newPortCmd(g),
		newTraceCmd(g),
		newCaptureCmd(g),
		newVersionCmd(g),
		newEventsCmd(g),
		newTopologyCmd(g),
	)
	root.Version = buildVersion()
	root.SetVersionTemplate("pontoon {{.Version}}\n")
	// Docker's habit: an unknown or malformed flag says where the help is.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())
	})
	// Add cobra's completion command now rather than at Execute, so that
	// requireSubcommands sees it too.
	root.InitDefaultCompletionCmd()
	requireSubcommands(root)
	return root
}

// requireSubcommands makes every command below root that only groups
// others fail on an unknown subcommand, as cobra already does at the top
// level (`pontoon sandbox craete x` is an error with a suggestion, not the
// group's help and exit 0). Without a subcommand a group prints its help.
func requireSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		requireSubcommands(c)
		if !c.HasSubCommands() || c.Runnable() {
			continue
		}
		c.Args = cobra.ArbitraryArgs
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2 // cobra's default at the top level
		}
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return fmt.Errorf("%s\n\nRun '%s --help' for usage.", msg, cmd.CommandPath())
		}
	}
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's and the daemon's build and API version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "client: %s\n", api.Build())
			fmt.Fprintf(w, "client API: %s\n", api.Version)
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if st.Build != "" {
				fmt.Fprintf(w, "daemon: %s\n", st.Build)
			}
			fmt.Fprintf(w, "daemon API: %s (pid %d, ready %v)\n", st.Version, st.PID, st.Ready)
			return nil
		},
	}
}

// buildVersion is what --version prints.
func buildVersion() string { return api.Build() }
