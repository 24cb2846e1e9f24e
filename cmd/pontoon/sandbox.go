package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"pontoon/internal/model"
	"pontoon/internal/netns"
)

func newSandboxCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "sandbox",
		Aliases: []string{"sb"},
		Short:   "Create, list, inspect and remove sandboxes (network namespaces)",
	}
	cmd.AddCommand(newSandboxCreateCmd(g), newSandboxLsCmd(g), newSandboxInspectCmd(g), newSandboxRmCmd(g))
	return cmd
}

// attachFlags are the flags that say where a new sandbox is attached.
type attachFlags struct {
	networks []string
	ip       string
	ip6      string
	aliases  []string
	ports    []string
	vlan     int
	mac      string
	fs       *pflag.FlagSet
}

func (a *attachFlags) add(cmd *cobra.Command, g *globals) {
	cmd.Flags().StringArrayVar(&a.networks, "network", nil, `network to attach to (repeatable; default: the default network; "none": loopback only)`)
	_ = cmd.RegisterFlagCompletionFunc("network", completeNetworkFlag(g, cmd.Name() == "run"))
	cmd.Flags().StringVar(&a.ip, "ip", "", "static IPv4 address on the first network")
	cmd.Flags().StringVar(&a.ip6, "ip6", "", "static IPv6 address on the first network")
	cmd.Flags().StringArrayVar(&a.aliases, "alias", nil, "extra DNS name on the first network (repeatable)")
	cmd.Flags().StringArrayVarP(&a.ports, "publish", "p", nil, "publish a port on the host: [hostIP:]hostPort[-end]:port[-end][/tcp|udp|sctp] (repeatable)")
	cmd.Flags().IntVar(&a.vlan, "vlan", 0, "VLAN (1-4094) of the interface on the first network, which needs --vlan-filtering")
	addMACFlag(cmd, &a.mac, "MAC of the interface on the first network (as Docker's --mac-address, also accepted), unique there (default: derived from its address)")
	a.fs = cmd.Flags()
}

// specs turns the flags into attach specs. special is "none", "host" or
// "sandbox:NAME" when the single --network is one of those.
func (a *attachFlags) specs() (specs []model.AttachSpec, special string, err error) {
	nets := a.networks
	if len(nets) == 0 {
		nets = []string{model.DefaultNetwork}
	}
	for _, n := range nets {
		if n == "none" || n == "host" || strings.HasPrefix(n, "sandbox:") {
			if len(nets) > 1 {
				return nil, "", fmt.Errorf("--network %s cannot be combined with other networks", n)
			}
			if a.ip != "" || a.ip6 != "" || len(a.aliases) > 0 || len(a.ports) > 0 || a.vlan != 0 || a.mac != "" {
				return nil, "", fmt.Errorf("--ip, --ip6, --alias, --publish, --vlan and --mac need a network, not --network %s", n)
			}
			return nil, n, nil
		}
	}
	ips, err := parseIPs(a.ip, a.ip6)
	if err != nil {
		return nil, "", err
	}
	ports, err := parsePorts(a.ports)
	if err != nil {
		return nil, "", err
	}
	if err := checkVLANFlag(a.fs, a.vlan); err != nil {
		return nil, "", err
	}
	mac, err := parseMACFlag(a.fs, a.mac)
	if err != nil {
		return nil, "", err
	}
	for i, n := range nets {
		s := model.AttachSpec{Network: n}
		if i == 0 {
			s.IPs, s.Aliases, s.Ports, s.VLAN, s.MAC = ips, a.aliases, ports, a.vlan, mac
		}
		specs = append(specs, s)
	}
	return specs, "", nil
}

// addMACFlag adds --mac and its alias --mac-address (Docker's name),
// hidden, to one variable.
func addMACFlag(cmd *cobra.Command, mac *string, usage string) {
	cmd.Flags().StringVar(mac, "mac", "", usage)
	cmd.Flags().StringVar(mac, "mac-address", "", "the same as --mac")
	_ = cmd.Flags().MarkHidden("mac-address")
}

// parseMACFlag checks --mac (or --mac-address, not both) as the daemon
// does, so that a typo is refused before anything is asked, and returns
// it in canonical form ("" when not given).
func parseMACFlag(fs *pflag.FlagSet, mac string) (string, error) {
	if fs != nil && fs.Changed("mac") && fs.Changed("mac-address") {
		return "", fmt.Errorf("give --mac or --mac-address (the same flag), not both")
	}
	if mac == "" {
		return "", nil
	}
	hw, err := model.ParseMAC(mac)
	if err != nil {
		return "", err
	}
	return hw.String(), nil
}

// checkVLANFlag refuses --vlan 0, which the API would take for "no
// VLAN"; the daemon checks the rest (1–4094, a network with VLAN
// filtering).
func checkVLANFlag(fs *pflag.FlagSet, vlan int) error {
	if fs != nil && fs.Changed("vlan") && vlan == 0 {
		return model.Invalidf("VLAN 0 is out of range: use 1 to 4094 (0 and 4095 are reserved by 802.1Q), or leave --vlan out")
	}
	return nil
}

func newSandboxCreateCmd(g *globals) *cobra.Command {
	var (
		af     attachFlags
		spec   model.SandboxSpec
		labels []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME...",
		Short: "Create sandboxes: new network namespaces (or adopt one) attached to networks",
		Long: `Create a sandbox. By default pontoon makes a new network namespace, brings
lo up and attaches it to the default network as eth0. With --netns PATH or
--pid PID it adopts an existing namespace instead (for example a container
started with --net=none) and later removes only what it added there.

Several names create several sandboxes, each with the same options, one
after the other in the order given: "pontoon sandbox create net0 net1
--network wire" is two namespaces on one link (--alias too: a shared alias
is answered by all its holders). Options that name one thing take one
sandbox name only, and with several they are refused before anything is
made: ONE-NAME.

The first sandbox that fails stops the command: those made before it stay
(one line each, as usual), the error says which were made and which were
not, and the exit status is 1. Unlike rm and inspect, create does not go
on past a failure: what stops one (a missing network, a full subnet, the
daemon) would most often stop the next the same way, and what is left is
always the first names in order, so the rest can be given again.`,
		Example: `  pontoon sandbox create a
  pontoon sandbox create net0 net1 --network wire
  pontoon sandbox create db --network app --alias database
  pontoon sandbox create legacy --pid 4242 --network back --ip 10.90.1.20
  pontoon sandbox create a --network lab --mac 02:42:0a:00:00:05
  pontoon sandbox create iso --network none`,
		Args: minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkCreateNames(cmd, args); err != nil {
				return err
			}
			specs, special, err := af.specs()
			if err != nil {
				return err
			}
			switch {
			case special == "host":
				spec.Host = true
			case strings.HasPrefix(special, "sandbox:"):
				return fmt.Errorf("--network %s only works with `pontoon run`: a sandbox sharing another's namespace is that sandbox", special)
			}
			spec.Networks = specs
			if spec.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			for i, name := range args {
				one := spec
				one.Name = name
				sb, err := g.client().CreateSandbox(cmd.Context(), one)
				if err != nil {
					if len(args) == 1 {
						return err
					}
					return createStopped(args, i, err)
				}
				printSandboxLine(cmd, sb)
			}
			return nil
		},
	}
	af.add(cmd, g)
	cmd.Flags().StringVar(&spec.Netns, "netns", "", "adopt the network namespace at this path")
	cmd.Flags().IntVar(&spec.PID, "pid", 0, "adopt the network namespace of this process")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "label as key=value (repeatable)")
	var one []string
	for _, f := range oneNameFlags {
		if cmd.Flags().Lookup(f.flag) != nil {
			one = append(one, "--"+f.flag)
		}
	}
	cmd.Long = strings.Replace(cmd.Long, "ONE-NAME", strings.Join(one, ", "), 1)
	return cmd
}

// oneNameFlags are sandbox create's flags that name one thing, so that
// they cannot be given to several sandboxes at once, with why. A flag
// the command does not have (yet) is skipped.
var oneNameFlags = []struct{ flag, why string }{
	{"ip", "a static address belongs to one sandbox"},
	{"ip6", "a static address belongs to one sandbox"},
	{"mac", "a MAC belongs to one interface"},
	{"publish", "a host port is published for one sandbox"},
	{"netns", "an adopted namespace is one sandbox"},
	{"pid", "an adopted namespace is one sandbox"},
}

// checkCreateNames refuses, before anything is made, names the daemon
// would refuse and the same name twice, and with several names every
// flag that names one thing.
func checkCreateNames(cmd *cobra.Command, names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if err := model.ValidateName("sandbox", n); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("sandbox name %s is given twice: give each name once", n)
		}
		seen[n] = true
	}
	if len(names) < 2 {
		return nil
	}
	for _, f := range oneNameFlags {
		if fl := cmd.Flags().Lookup(f.flag); fl != nil && fl.Changed {
			return fmt.Errorf("--%s takes one sandbox name (%s), and %d were given (%s): create the sandboxes one at a time, or leave --%s out",
				f.flag, f.why, len(names), strings.Join(names, ", "), f.flag)
		}
	}
	return nil
}

// createStopped is the error of a create of several sandboxes that
// stopped at names[i]: what failed, what was made before, what was not.
func createStopped(names []string, i int, err error) error {
	made := "nothing was created"
	if i > 0 {
		made = "created before it: " + strings.Join(names[:i], ", ")
	}
	msg := fmt.Sprintf("%s; not created: %s", made, strings.Join(names[i:], ", "))
	return fmt.Errorf("create sandbox %s: %w\n%s", names[i], err, msg)
}

func printSandboxLine(cmd *cobra.Command, sb *model.SandboxInfo) {
	var addrs []string
	for _, ep := range sb.Endpoints {
		addrs = append(addrs, fmt.Sprintf("%s=%s", ep.IfName, joinIPs(ep.IPs())))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", sb.Name, sb.Netns, strings.Join(addrs, ","))
}

func newSandboxLsCmd(g *globals) *cobra.Command {
	var (
		format   string
		quiet    bool
		noTrunc  bool
		filterIn []string
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List sandboxes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilters(filterIn, "name", "label", "network", "kind")
			if err != nil {
				return err
			}
			all, err := g.client().Sandboxes(cmd.Context())
			if err != nil {
				return err
			}
			sbs := []*model.SandboxInfo{}
			for _, sb := range all {
				if f.match("name", func(v string) bool { return strings.Contains(sb.Name, v) }) &&
					f.match("label", matchLabel(sb.Labels)) &&
					f.match("kind", func(v string) bool { return string(sb.Kind) == v }) &&
					f.match("network", func(v string) bool {
						return slices.ContainsFunc(sb.Endpoints, func(ep *model.Endpoint) bool { return ep.Network == v })
					}) {
					sbs = append(sbs, sb)
				}
			}
			if quiet {
				for _, sb := range sbs {
					fmt.Fprintln(cmd.OutOrStdout(), sb.Name)
				}
				return nil
			}
			if format == "json" {
				return printJSON(cmd, sbs)
			}
			t := newTable(cmd, "NAME", "KIND", "NETWORKS", "ADDRESSES", "CONTAINER", "NETNS")
			var ids []string
			for _, sb := range sbs {
				ids = append(ids, sb.ContainerID)
			}
			short := shortIDs(ids, shortIDLen)
			if noTrunc {
				short = nil
			}
			for _, sb := range sbs {
				var nets, addrs []string
				for _, ep := range sb.Endpoints {
					nets = append(nets, ep.Network)
					addrs = append(addrs, joinIPs(ep.IPs()))
				}
				ctr := cmp.Or(short[sb.ContainerID], sb.ContainerID)
				if name := sb.Labels["docker.container.name"]; name != "" && ctr != "" {
					ctr += " (" + name + ")" // a Docker container, named
				}
				t.row(sb.Name, string(sb.Kind), dash(strings.Join(nets, ",")), dash(strings.Join(addrs, ",")),
					dash(ctr), sb.Netns)
			}
			if err := t.flush(); err != nil {
				return err
			}
			for _, sb := range sbs {
				printDrift(cmd, "sandbox "+sb.Name, sb.Drift)
			}
			return nil
		},
	}
	addFormatFlag(cmd, &format)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the names (pontoon sandbox rm $(pontoon sandbox ls -q) removes them all)")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "show container IDs whole (by default: the shortest prefix of at least 12 characters that no other listed ID shares; JSON always has them whole)")
	addFilterFlag(cmd, &filterIn, "only sandboxes that match: name=PART, label=KEY[=VALUE], network=NET, kind=pontoon|netns|pid|host (repeatable: one key's values are alternatives, keys must all match)")
	return cmd
}

// printDrift notes, on stderr under a table (which stays one row per
// object for scripts), where the kernel disagrees with an object's records.
func printDrift(cmd *cobra.Command, what string, drift []string) {
	for _, d := range drift {
		fmt.Fprintf(cmd.ErrOrStderr(), "✗ %s: %s\n", what, d)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortIDLen is the least a container ID is cut to, as Docker and Podman
// show theirs.
const shortIDLen = 12

// shortIDs maps every ID to its shortest prefix, least characters or more,
// that no other of the IDs starts with, as git shortens hashes: ctr's IDs
// ("default-web-1", "default-web-2") share long prefixes. An ID that is a
// prefix of another is shown whole.
func shortIDs(ids []string, least int) map[string]string {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	common := func(a, b string) int {
		n := 0
		for n < len(a) && n < len(b) && a[n] == b[n] {
			n++
		}
		return n
	}
	out := make(map[string]string, len(sorted))
	for i, id := range sorted {
		// In sorted order, the ID sharing the longest prefix with id is
		// one of its neighbours.
		n := 0
		if i > 0 {
			n = max(n, common(id, sorted[i-1]))
		}
		if i+1 < len(sorted) {
			n = max(n, common(id, sorted[i+1]))
		}
		out[id] = id[:min(len(id), max(least, n+1))]
	}
	return out
}

func newSandboxInspectCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect NAME...",
		Short: "Show sandboxes in detail: every endpoint with its address, MAC, gateway, host end, routing and counters",
		Long: `Show sandboxes in detail. For every endpoint: the interface inside the
sandbox, its address, MAC and gateway, and the host end of its veth pair
(name and ifindex) — what ` + "`ethtool -S eth0 | grep peer_ifindex`" + ` finds by hand.

On several networks, each further interface has its own routing table and
a rule "from ADDR lookup TABLE" per address, so that replies leave by the
interface their request came in on: shown under Routing (from the records,
as ` + "`ip rule`" + ` in the sandbox has them).

Counters: bytes, packets, drops and errors received (RX) and sent (TX) by
each interface, as the sandbox sees them. They are read from the host end
of the veth (its RX is what the sandbox sent), without entering the
sandbox; an interface without a host end (link and macvlan networks) has
none — ` + "`pontoon exec NAME -- ip -s link`" + ` shows the sandbox's own.`,
		Args:              minArgs(1, "NAME"),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectEach(cmd, args, g.client().Sandbox, func(all []*model.SandboxInfo) error { return printSandboxes(cmd, format, all) })
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

// printSandboxes prints what sandbox inspect found.
func printSandboxes(cmd *cobra.Command, format string, all []*model.SandboxInfo) error {
	if format == "json" {
		return printJSON(cmd, all)
	}
	w := cmd.OutOrStdout()
	for i, sb := range all {
		if i > 0 {
			fmt.Fprintln(w)
		}
		kv := newTable(cmd)
		kv.row("Name:", sb.Name)
		kv.row("ID:", sb.ID)
		if sb.Node != "" {
			kv.row("Node:", sb.Node)
		}
		kv.row("Kind:", string(sb.Kind))
		kv.row("Netns:", sb.Netns)
		if sb.PID != 0 {
			kv.row("PID:", strconv.Itoa(sb.PID))
		}
		if sb.ContainerID != "" {
			kv.row("Container:", sb.ContainerID)
		}
		kv.row("Created:", sb.Created.Format(time.RFC3339))
		for _, d := range sb.Drift {
			kv.row("Drift:", "✗ "+d)
		}
		if err := kv.flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, "Endpoints:")
		t := newTable(cmd, "  IFACE", "NETWORK", "IP", "MAC", "GATEWAY", "HOST-IF", "HOST-IFINDEX", "ALIASES")
		for _, ep := range sb.Endpoints {
			// One row per address: every address of every endpoint, per
			// family, with that family's gateway.
			for i, a := range ep.Addresses {
				gw := "-"
				if a.Gateway.IsValid() {
					gw = a.Gateway.String()
				}
				if ep.Primary && a.Gateway.IsValid() {
					gw += " (default)"
				}
				if i == 0 {
					t.row("  "+ep.IfName, ep.Network, a.Addr.String(), ep.MAC, gw,
						dash(ep.HostIf), strconv.Itoa(ep.HostIfIndex), dash(strings.Join(ep.Aliases, ",")))
				} else {
					t.row("  ", "", a.Addr.String(), "", gw, "", "", "")
				}
			}
		}
		if err := t.flush(); err != nil {
			return err
		}
		if err := printRouting(cmd, sb); err != nil {
			return err
		}
		if err := printCounters(cmd, sb); err != nil {
			return err
		}
	}
	return nil
}

func newSandboxRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove sandboxes (an adopted namespace keeps everything pontoon did not add)",
		Long: `Remove sandboxes: every endpoint is detached, and a namespace pontoon
created is deleted. With several names, each one that exists is removed;
each failure is reported, and the exit status is 1 if any failed.`,
		Args:              minArgs(1, "NAME"),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachName(cmd, args, func(name string) error {
				err := g.client().RemoveSandbox(cmd.Context(), name)
				if force && errors.Is(err, model.ErrNotFound) {
					return nil
				}
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), name)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "no error for names that do not exist (a sandbox never needs stopping first: docker rm -f's other meaning does not apply)")
	return cmd
}

func newExecCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:               "exec SANDBOX -- COMMAND [ARG...]",
		Short:             "Run a command inside a sandbox's network namespace",
		Example:           "  pontoon exec a -- ping -c1 10.88.0.3\n  pontoon exec a -- ip addr",
		Args:              minArgs(2, "SANDBOX and a COMMAND"),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb, err := g.client().Sandbox(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			argv := dropDashes(args[1:])
			if len(argv) == 0 {
				return fmt.Errorf("no command given: pontoon exec %s -- COMMAND", args[0])
			}
			return execIn(sb.Netns, sb.NetnsIno, sb.ResolvConf, argv)
		},
	}
	// Everything after SANDBOX belongs to the command, dashes included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// dropDashes removes the "--" that separates pontoon's arguments from the
// command's (with interspersed flags off, cobra passes it through).
func dropDashes(args []string) []string {
	if len(args) > 0 && args[0] == "--" {
		return args[1:]
	}
	return args
}

// execIn replaces this process with argv, running in the network namespace
// at path. The namespace is joined by this OS thread only (locked), and
// execve keeps the calling thread's namespaces.
//
// Like `ip netns exec`, it also gives the command a private mount namespace
// in which the sandbox's resolv.conf (if any) covers /etc/resolv.conf and
// /sys is a sysfs of the sandbox's network namespace (sysfs shows the
// namespace of whoever mounted it).
func execIn(path string, ino uint64, resolvConf string, argv []string) error {
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return commandError(argv[0], err)
	}
	runtime.LockOSThread()
	// Checked on the open file: a reused PID or a path pinned again names
	// another namespace, which is never entered.
	ns, err := netns.OpenChecked(path, ino)
	if err != nil {
		return fmt.Errorf("the sandbox's namespace: %w: remove the sandbox with `pontoon sandbox rm`", err)
	}
	if err := unix.Setns(int(ns), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter namespace %s: %w (are you root?)", path, err)
	}
	ns.Close()
	if err := privateMounts(resolvConf); err != nil {
		return err
	}
	err = syscall.Exec(bin, argv, os.Environ())
	// Found but not executed: ENOEXEC, EACCES, or ENOENT for a script
	// whose interpreter is missing (bash also says 126 then).
	return exitError{code: exitNotExecutable, msg: fmt.Sprintf("command %q (%s): %v", argv[0], bin, err)}
}

// Exit statuses of a command that could not be run, as in shells and
// Docker: 127 when it is not found, 126 when it is found but cannot be
// executed (no permission, a directory, not a binary or script).
const (
	exitNotFound      = 127
	exitNotExecutable = 126
)

// commandError turns a failure to find name (exec.LookPath) into an
// exitError with the shell's status.
func commandError(name string, err error) error {
	code := exitNotExecutable
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		code = exitNotFound
	}
	return exitError{code: code, msg: fmt.Sprintf("command %q: %v", name, err)}
}

// privateMounts runs on the locked thread that is about to exec: unshare
// gives this thread (and so the exec'd command) its own mount namespace,
// where nothing we mount is seen by the host.
func privateMounts(resolvConf string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("private mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "none", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	if resolvConf != "" {
		if err := unix.Mount(resolvConf, "/etc/resolv.conf", "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on /etc/resolv.conf: %w", resolvConf, err)
		}
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err == nil {
		_ = unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	}
	return nil
}

func newRunCmd(g *globals) *cobra.Command {
	var (
		af   attachFlags
		name string
		rm   bool
	)
	cmd := &cobra.Command{
		Use:   "run [--name NAME] [--network NET] [--ip IP] [--rm] -- COMMAND [ARG...]",
		Short: "Create a sandbox, run a command in it in the foreground, and optionally remove it",
		Long: `Create a sandbox attached to --network (default: the default network), run
COMMAND inside it in the foreground, and with --rm remove the sandbox when
the command exits. The exit status is the command's.

--network none     loopback only
--network host     no new namespace: the host's network
--network sandbox:OTHER   share OTHER's namespace (like Docker's container:OTHER)`,
		Example: "  pontoon run --rm --network back -- sh -c 'ip addr; ip route'",
		Args:    minArgs(1, "COMMAND"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if args = dropDashes(args); len(args) == 0 {
				return fmt.Errorf("no command given: pontoon run [flags] -- COMMAND")
			}
			specs, special, err := af.specs()
			if err != nil {
				return err
			}
			c := g.client()
			if other, ok := strings.CutPrefix(special, "sandbox:"); ok {
				sb, err := c.Sandbox(ctx, other)
				if err != nil {
					return err
				}
				return runChild(ctx, g, sb.Name, args)
			}
			if name == "" {
				name = "run-" + model.NewID()[:8]
			}
			spec := model.SandboxSpec{Name: name, Networks: specs, Host: special == "host"}
			if _, err := c.CreateSandbox(ctx, spec); err != nil {
				return err
			}
			runErr := runChild(ctx, g, name, args)
			if rm {
				// The command's context may be cancelled (Ctrl-C): still clean up.
				rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := c.RemoveSandbox(rctx, name); err != nil {
					return errors.Join(runErr, fmt.Errorf("remove sandbox %s: %w", name, err))
				}
			}
			return runErr
		},
	}
	af.add(cmd, g)
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&name, "name", "", "sandbox name (default: run-<random>)")
	cmd.Flags().BoolVar(&rm, "rm", false, "remove the sandbox when the command exits")
	return cmd
}

// runChild runs `pontoon exec NAME -- ARGS` as a child in the foreground,
// passing signals on, and returns its exit status as an exitError.
func runChild(ctx context.Context, g *globals, name string, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, append([]string{"exec", "--socket", g.socket, name, "--"}, args...)...)
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := child.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = child.Process.Signal(s)
		case err := <-done:
			return childExit(err)
		}
	}
}
