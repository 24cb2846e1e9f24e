package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

func newEventsCmd(g *globals) *cobra.Command {
	var (
		format   string
		since    string
		filters  []string
		noFollow bool
	)
	cmd := &cobra.Command{
		Use:   "events [--since 10m|ID] [--filter network=N|sandbox=S|kind=K]... [--format json]",
		Short: "Show what changes: networks, sandboxes, attaches, published ports, repairs",
		Long: `Follow pontoon's event feed: networks and sandboxes created and removed,
endpoints attached and detached, ports published and unpublished, drift
repaired by self-healing, problems it could not repair, failed operations,
firewall rewrites. Each event has an ID and a time; the daemon keeps the
last 4096 for --since (a duration such as 10m, or an event ID). Without
--since, only new events are shown. A reader too slow for the feed is told
how many events it missed ("gap").`,
		Example: "  pontoon events --since 10m --filter network=app\n  pontoon events --no-follow --since 0 --format json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := api.EventQuery{Follow: !noFollow}
			if since != "" {
				if d, err := time.ParseDuration(since); err == nil {
					q.SinceTime = time.Now().Add(-d)
				} else if n, err := strconv.ParseUint(since, 10, 64); err == nil {
					q.Since = n
					if n == 0 {
						q.SinceTime = time.Unix(0, 0) // every kept event
					}
				} else {
					return fmt.Errorf("--since %q is neither a duration (10m) nor an event ID", since)
				}
			}
			for _, f := range filters {
				k, v, ok := strings.Cut(f, "=")
				switch {
				case !ok:
					return fmt.Errorf("--filter %q: want key=value (network, sandbox or kind)", f)
				case k == "network":
					q.Networks = append(q.Networks, v)
				case k == "sandbox":
					q.Sandboxes = append(q.Sandboxes, v)
				case k == "kind":
					q.Kinds = append(q.Kinds, v)
				default:
					return fmt.Errorf("--filter %q: unknown key %s (network, sandbox or kind)", f, k)
				}
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			return g.client().Events(cmd.Context(), q, func(ev model.Event) error {
				if format == "json" {
					return enc.Encode(ev)
				}
				_, err := fmt.Fprintln(out, formatEvent(ev))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "replay kept events from this long ago (10m) or after this event ID (0: all kept)")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "only events of network=NAME, sandbox=NAME or kind=KIND (repeatable)")
	cmd.Flags().BoolVar(&noFollow, "no-follow", false, "print the kept events and exit instead of following new ones")
	addFormatFlag(cmd, &format)
	return cmd
}

func formatEvent(ev model.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %6d %-16s", ev.Time.Local().Format("15:04:05.000"), ev.ID, ev.Kind)
	if ev.Kind == model.EventGap {
		fmt.Fprintf(&b, " %d events missed (this reader was too slow)", ev.Lost)
		return b.String()
	}
	if ev.Op != "" {
		b.WriteString(" " + ev.Op)
	}
	if ev.Network != "" {
		b.WriteString(" network=" + ev.Network)
	}
	if ev.Sandbox != "" {
		b.WriteString(" sandbox=" + ev.Sandbox)
	}
	if ev.Detail != "" {
		b.WriteString(" " + ev.Detail)
	}
	if ev.Seconds > 0 {
		fmt.Fprintf(&b, " (%.2f ms)", ev.Seconds*1000)
	}
	return b.String()
}
