// Command pontoon is pontoon's CLI and, as `pontoon daemon`, its daemon.
// The CLI is thin: it parses, calls the daemon's API over its unix socket,
// and prints.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"pontoon/internal/api"
)

// exitError carries a process exit status (e.g. of the command `exec` ran).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
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
		newExecCmd(g),
		newRunCmd(g),
		newDoctorCmd(g),
		newPortCmd(g),
		newVersionCmd(g),
	)
	return root
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's and the daemon's API version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "client API: %s\n", api.Version)
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "daemon API: %s (pid %d, ready %v)\n", st.Version, st.PID, st.Ready)
			return nil
		},
	}
}
