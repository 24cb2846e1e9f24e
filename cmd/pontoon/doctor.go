package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"pontoon/internal/api"
	"pontoon/internal/daemon"
)

func newDoctorCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the host for what breaks pontoon's networks (changes nothing)",
		Long: `Check the host for what breaks pontoon's networks: firewall drift, another
firewall that drops forwarded traffic, ip_forward off, br_netfilter,
strict rp_filter in sandboxes on several networks, networks whose MTU
exceeds the uplink's, links or namespace pins with pontoon's names
that its state does not know, and networks whose subnet the host's own
addresses or connected routes overlap (the host gained them after the
network was created: an error), whether the upstream resolvers answer,
and what self-healing repaired. Without a daemon it says so and runs the
checks that need none (forwarding, br_netfilter, other firewalls) in this
shell's network namespace. Exits 1 when something is wrong (warn or
error).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl := g.client()
			fs, err := cl.Doctor(cmd.Context())
			var answered *api.Error // a daemon that answers (even "starting") is not missing
			if errors.Is(err, api.ErrUnavailable) && !errors.Is(err, api.ErrPermission) && !errors.As(err, &answered) {
				// No daemon: the host checks still help find out why.
				fs, err = daemon.LocalDoctor(cmd.Context(), cl.Socket()), nil
			}
			if err != nil {
				return err
			}
			if format == "json" {
				if err := printJSON(cmd, fs); err != nil {
					return err
				}
			} else {
				t := newTable(cmd, "LEVEL", "CHECK", "FINDING")
				for _, f := range fs {
					t.row(f.Level, f.Check, f.Message)
				}
				if err := t.flush(); err != nil {
					return err
				}
			}
			for _, f := range fs {
				if f.Level == api.LevelWarn || f.Level == api.LevelError {
					fmt.Fprintln(cmd.ErrOrStderr(), "pontoon doctor: problems found")
					return exitError{code: 1}
				}
			}
			return nil
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}
