package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"pontoon/internal/model"
	"pontoon/internal/netns"
)

// captureSide is one place tcpdump listens: an interface in a namespace.
type captureSide struct {
	label string // what its lines are prefixed with: the interface's name
	iface string
	// ns and ino name the namespace (ino 0: any namespace at ns). hostEnd:
	// ns is the daemon's namespace, filled in once its PID is known.
	ns      string
	ino     uint64
	hostEnd bool
}

// captureSides picks the sandbox's endpoint on network ("": its first) and
// returns where to listen: the sandbox's end, and with hostEnd also the
// host end. It refuses what cannot be captured, changing nothing.
func captureSides(sb *model.SandboxInfo, network string, hostEnd bool) ([]captureSide, error) {
	switch sb.Kind {
	case model.KindVM:
		return nil, fmt.Errorf("sandbox %s is a VM's (kind vm): it has no namespace to capture in; capture its tap on the host: tcpdump -nli TAP (TAP from `pontoon tap ls`)", sb.Name)
	case model.KindHost:
		return nil, fmt.Errorf("sandbox %s is the host's own namespace (kind host) and has no endpoints; run tcpdump on the host", sb.Name)
	}
	if len(sb.Endpoints) == 0 {
		return nil, fmt.Errorf("sandbox %s has no endpoints (no network): capture its loopback with `pontoon exec %s -- tcpdump -nli lo`", sb.Name, sb.Name)
	}
	var ep *model.Endpoint
	if network == "" {
		ep = sb.Endpoints[0]
	} else {
		var on []string
		for _, e := range sb.Endpoints {
			on = append(on, e.Network)
			if e.Network == network {
				ep = e
			}
		}
		if ep == nil {
			return nil, fmt.Errorf("sandbox %s is not on network %s (it is on %s): give one of those to --network", sb.Name, network, strings.Join(on, ", "))
		}
	}
	sides := []captureSide{{label: ep.IfName, iface: ep.IfName, ns: sb.Netns, ino: sb.NetnsIno}}
	if hostEnd {
		if ep.HostIf == "" {
			return nil, fmt.Errorf("sandbox %s's endpoint %s on network %s has no host end (a direct link's or a macvlan's): capture without --host-end", sb.Name, ep.IfName, ep.Network)
		}
		sides = append(sides, captureSide{label: ep.HostIf, iface: ep.HostIf, hostEnd: true})
	}
	return sides, nil
}

// tcpdumpArgv is the command line tcpdump runs with on one side: numeric,
// line-buffered, on iface, COUNT packets (0: until stopped), then the
// user's arguments (a filter expression, -e, …).
func tcpdumpArgv(iface string, count int, extra []string) []string {
	argv := []string{"tcpdump", "-n", "-l", "-i", iface}
	if count > 0 {
		argv = append(argv, "-c", strconv.Itoa(count))
	}
	return append(argv, extra...)
}

func newCaptureCmd(g *globals) *cobra.Command {
	var (
		network string
		hostEnd bool
		count   int
	)
	cmd := &cobra.Command{
		Use:   "capture SANDBOX [--network NET] [--host-end] [-c COUNT] [-- TCPDUMP-ARGS...]",
		Short: "Show the packets on a sandbox's interface (and its host end) with tcpdump",
		Long: `Run tcpdump -n -l on SANDBOX's interface on --network (default: its first
endpoint's, e.g. eth0) inside the sandbox's namespace, until Ctrl-C or
-c COUNT packets. With --host-end, also on the endpoint's host end (the
host side of its veth pair, in the daemon's namespace) at the same time,
each line prefixed with the side it was seen on ("eth0 | ...",
"ptv-... | ..."), each side stopping after COUNT packets. Endpoints of
direct links and macvlans have no host end.

Arguments after -- go to tcpdump: a filter expression, -e for link-level
headers, -v and so on. The exit status is tcpdump's (0 after Ctrl-C); when one
side fails the other is stopped. Needs tcpdump (apt-get install tcpdump)
and root; the CLI must run on the daemon's host.`,
		Example: `  pontoon capture a
  pontoon capture a --host-end -c 4 -- icmp
  pontoon capture a --network back -- -e arp or udp port 53`,
		Args:              minArgs(1, "SANDBOX"),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			var extra []string
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				args, extra = args[:dash], args[dash:]
			}
			if len(args) != 1 {
				if len(args) == 0 {
					return fmt.Errorf("no SANDBOX given: pontoon capture SANDBOX [-- TCPDUMP-ARGS]")
				}
				return fmt.Errorf("one SANDBOX only (got %s): tcpdump's arguments go after --, as in pontoon capture %s -- %s", strings.Join(args, " "), args[0], strings.Join(args[1:], " "))
			}
			if count < 0 {
				return fmt.Errorf("-c %d: give a number of packets, or 0 (the default) to capture until Ctrl-C", count)
			}
			c := g.client()
			sb, err := c.Sandbox(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			sides, err := captureSides(sb, network, hostEnd)
			if err != nil {
				return err
			}
			bin, err := exec.LookPath("tcpdump")
			if err != nil {
				return fmt.Errorf("tcpdump is not installed (%v): apt-get install tcpdump", err)
			}
			if hostEnd {
				// The host end lives in the daemon's namespace, which need
				// not be this shell's: enter it by the daemon's PID.
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				for i := range sides {
					if sides[i].hostEnd {
						sides[i].ns = fmt.Sprintf("/proc/%d/ns/net", st.PID)
					}
				}
			}
			return runCaptures(cmd, bin, sides, count, extra)
		},
	}
	f := cmd.Flags()
	f.StringVar(&network, "network", "", "capture on the sandbox's interface on this network (default: its first endpoint's)")
	f.BoolVar(&hostEnd, "host-end", false, "also capture on the endpoint's host end (the veth's host side), lines prefixed with the side")
	f.IntVarP(&count, "count", "c", 0, "stop after this many packets on each side (0: until Ctrl-C)")
	return cmd
}

// runCaptures runs one tcpdump per side, each started from a thread inside
// its namespace (a child keeps the namespaces of the thread that forked
// it), and waits for all. With several sides every line is prefixed with
// its side. Ctrl-C (or SIGTERM to pontoon) stops them with SIGINT, after
// which tcpdump prints its counts and exits 0; the first side that fails
// stops the others and its exit status is pontoon's.
func runCaptures(cmd *cobra.Command, bin string, sides []captureSide, count int, extra []string) error {
	width := 0
	for _, s := range sides {
		width = max(width, len(s.label))
	}
	var mu sync.Mutex // one line at a time on the shared outputs
	procs := make([]*exec.Cmd, 0, len(sides))
	var flush []*prefixWriter
	stopAll := func() {
		for _, p := range procs {
			_ = p.Process.Signal(os.Interrupt)
		}
	}
	results := make(chan error, len(sides))
	for _, s := range sides {
		p := exec.Command(bin, tcpdumpArgv(s.iface, count, extra)[1:]...)
		if len(sides) == 1 {
			p.Stdout, p.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
		} else {
			prefix := fmt.Sprintf("%-*s | ", width, s.label)
			out := &prefixWriter{mu: &mu, w: cmd.OutOrStdout(), prefix: prefix}
			errw := &prefixWriter{mu: &mu, w: cmd.ErrOrStderr(), prefix: prefix}
			p.Stdout, p.Stderr = out, errw
			flush = append(flush, out, errw)
		}
		err := netns.DoChecked(s.ns, s.ino, p.Start)
		if err != nil {
			stopAll()
			for range procs {
				<-results
			}
			what := "the sandbox's namespace"
			if s.hostEnd {
				what = "the daemon's namespace (the CLI must run on the daemon's host)"
			}
			return fmt.Errorf("tcpdump on %s in %s: %w", s.iface, what, err)
		}
		procs = append(procs, p)
		go func() { results <- p.Wait() }()
	}
	interrupted := cmd.Context().Done()
	var first error
	for range procs {
		var err error
		select {
		case err = <-results:
		case <-interrupted:
			stopAll()
			err = <-results
			interrupted = nil // signalled once; now wait for the rest
		}
		if err != nil && first == nil {
			first = err
			stopAll()
		}
	}
	for _, w := range flush {
		w.Flush()
	}
	if first == nil {
		return nil
	}
	return childExit(first)
}

// prefixWriter writes whole lines to w, each after prefix; a partial line
// waits for its end (or Flush). Writers sharing mu never interleave lines.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.buf[:i+1])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}

// Flush writes a last line that had no newline.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.mu.Unlock()
		p.buf = nil
	}
}
