package firewall

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gnft "github.com/google/nftables"

	"pontoon/internal/testutil"
)

// Kernel tests: real nft and iptables, each in a fresh network namespace
// (testutil.NewNetns); commands run on a thread inside it
// (testutil.InNetns), so the table they make lives and dies there.

// runIn runs a command inside ns and returns its output; it fails the test
// on error.
func runIn(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := tryIn(t, ns, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// tryIn runs a command inside ns and returns its output and error.
func tryIn(t testing.TB, ns string, args ...string) (string, error) {
	t.Helper()
	var out []byte
	err := testutil.InNetns(t, ns, func() (err error) {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		return err
	})
	return string(out), err
}

// withFirewall runs fn with a real firewall inside ns.
func withFirewall(t testing.TB, ns string, fn func(fw Interface) error) {
	t.Helper()
	if err := testutil.InNetns(t, ns, func() error {
		fw, err := New(testLogger(t))
		if err != nil {
			return err
		}
		return fn(fw)
	}); err != nil {
		t.Fatal(err)
	}
}

func syncIn(t testing.TB, ns string, s State) {
	t.Helper()
	withFirewall(t, ns, func(fw Interface) error { return fw.Sync(context.Background(), s) })
}

func deleteIn(t testing.TB, ns string) {
	t.Helper()
	withFirewall(t, ns, func(fw Interface) error { return fw.Delete(context.Background()) })
}

func TestKernelSyncAndDelete(t *testing.T) {
	ns := testutil.NewNetns(t)
	ctx := context.Background()
	// A bridge name with a dot: must reach nft quoted.
	dotted := Network{Name: "vlan10", Bridge: "br.10", Subnets: v4(netip.MustParsePrefix("10.94.0.0/24"), true)}
	all := State{Networks: []Network{defaultNet, backNet, dotted}}

	syncIn(t, ns, all)
	first := runIn(t, ns, "nft", "list", "table", "inet", TableName)
	for _, want := range []string{
		`comment "managed by pontoon`,
		"type filter hook forward priority filter; policy accept;",
		"type nat hook postrouting priority srcnat; policy accept;",
		`"pontoon0" . "pontoon0"`,
		`"br.10" . "br.10"`,
		"10.88.0.0/16", "10.94.0.0/24",
		"iifname . oifname @intra accept",
		"iifname @internal drop",
		"ip saddr @masq-subnets oifname != @bridges masquerade",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("kernel ruleset lacks %q:\n%s", want, first)
		}
	}
	masq, _, _ := strings.Cut(first[strings.Index(first, "set masq-subnets {"):], "}")
	if strings.Contains(masq, "10.90.1.0") {
		t.Errorf("internal network masqueraded:\n%s", first)
	}

	// Same state again: the same table.
	syncIn(t, ns, all)
	if again := runIn(t, ns, "nft", "list", "table", "inet", TableName); again != first {
		t.Errorf("second Sync changed the table:\n%s", cmp.Diff(first, again))
	}

	// Leftovers (an older pontoon's chain, a person's drop chain) go.
	runIn(t, ns, "nft", "add chain inet pontoon stale { type filter hook forward priority -1; policy drop; }")
	syncIn(t, ns, State{Networks: []Network{defaultNet}})
	out := runIn(t, ns, "nft", "list", "table", "inet", TableName)
	for _, gone := range []string{"stale", backNet.Bridge, "br.10", "10.94.0.0"} {
		if strings.Contains(out, gone) {
			t.Errorf("%s survived Sync:\n%s", gone, out)
		}
	}

	withFirewall(t, ns, func(fw Interface) error {
		if ok, err := fw.Exists(ctx); err != nil || !ok {
			t.Errorf("Exists = %v, %v; want true", ok, err)
		}
		if d, err := fw.Dump(ctx); err != nil || d != out {
			t.Errorf("Dump = %v\n%s\nwant\n%s", err, d, out)
		}
		for range 2 { // missing is success
			if err := fw.Delete(ctx); err != nil {
				return err
			}
		}
		if ok, err := fw.Exists(ctx); err != nil || ok {
			t.Errorf("Exists after Delete = %v, %v", ok, err)
		}
		if d, err := fw.Dump(ctx); err != nil || d != "" {
			t.Errorf("Dump after Delete = %q, %v", d, err)
		}
		return nil
	})
	// Nothing else was created on the way (the DOCKER-USER probe lists,
	// never creates, table ip filter).
	if out := runIn(t, ns, "nft", "list", "tables"); strings.TrimSpace(out) != "" {
		t.Fatalf("tables left: %s", out)
	}
}

// emulateDocker installs Docker's layout in ns, for IPv4 and IPv6 (Docker
// with ip6tables): FORWARD policy drop, jumping to DOCKER-USER first,
// which ends with RETURN.
func emulateDocker(t testing.TB, ns string) {
	t.Helper()
	for _, ipt := range xtables {
		runIn(t, ns, ipt, "-P", "FORWARD", "DROP")
		runIn(t, ns, ipt, "-N", "DOCKER-USER")
		runIn(t, ns, ipt, "-A", "DOCKER-USER", "-j", "RETURN")
		runIn(t, ns, ipt, "-I", "FORWARD", "-j", "DOCKER-USER")
	}
}

var xtables = []string{IPv4.Xtables, IPv6.Xtables}

func dockerUserLines(t testing.TB, ns, ipt string) []string {
	t.Helper()
	return strings.Split(strings.TrimSpace(runIn(t, ns, ipt, "-S", "DOCKER-USER")), "\n")
}

// Docker's DOCKER-USER in both families (iptables and ip6tables): the
// same rules at the top of each, the user's own rules kept.
func TestKernelDockerUser(t *testing.T) {
	ns := testutil.NewNetns(t)
	emulateDocker(t, ns)
	// A rule of the user's own in each family, which must stay where it is.
	userSrc := map[string]string{IPv4.Xtables: "192.0.2.1", IPv6.Xtables: "2001:db8::1"}
	user := map[string]string{}
	for _, ipt := range xtables {
		runIn(t, ns, ipt, "-I", "DOCKER-USER", "-s", userSrc[ipt], "-m", "comment", "--comment", "user rule", "-j", "DROP")
		bits := map[string]string{IPv4.Xtables: "/32", IPv6.Xtables: "/128"}[ipt]
		user[ipt] = `-A DOCKER-USER -s ` + userSrc[ipt] + bits + ` -m comment --comment "user rule" -j DROP`
	}

	rule := func(dir, br, net string) string {
		return `-A DOCKER-USER ` + dir + ` ` + br + ` -m comment --comment "pontoon: network ` + net +
			` (managed by pontoon; removed with the network)" -j ACCEPT`
	}
	// expect checks DOCKER-USER of both families: ours, then the user's
	// rule and Docker's RETURN.
	expect := func(stage string, ours ...string) {
		t.Helper()
		for _, ipt := range xtables {
			want := append(append([]string{"-N DOCKER-USER"}, ours...), user[ipt], "-A DOCKER-USER -j RETURN")
			if diff := cmp.Diff(want, dockerUserLines(t, ns, ipt)); diff != "" {
				t.Fatalf("%s DOCKER-USER %s (-want +got):\n%s", ipt, stage, diff)
			}
		}
	}

	syncIn(t, ns, State{Networks: []Network{defaultNet, backNet}})
	both := []string{rule("-i", backNet.Bridge, "back"), rule("-o", backNet.Bridge, "back"),
		rule("-i", "pontoon0", "pontoon"), rule("-o", "pontoon0", "pontoon")}
	expect("after Sync", both...)
	syncIn(t, ns, State{Networks: []Network{defaultNet, backNet}}) // no change
	expect("after a second Sync", both...)

	syncIn(t, ns, State{Networks: []Network{defaultNet}})
	expect("after removing back", rule("-i", "pontoon0", "pontoon"), rule("-o", "pontoon0", "pontoon"))

	// A network added later goes to the top too.
	syncIn(t, ns, State{Networks: []Network{defaultNet, frontNet}})
	for _, ipt := range xtables {
		if got := dockerUserLines(t, ns, ipt); !slices.Equal(got[1:3], []string{rule("-i", frontNet.Bridge, "front"), rule("-o", frontNet.Bridge, "front")}) {
			t.Fatalf("%s: front's rules not at the top:\n%s", ipt, strings.Join(got, "\n"))
		}
	}

	withFirewall(t, ns, func(Interface) error {
		got, err := ForeignForwardDrop(context.Background())
		if err != nil {
			return err
		}
		if diff := cmp.Diff([]string{"ip filter FORWARD", "ip6 filter FORWARD"}, got); diff != "" {
			t.Errorf("ForeignForwardDrop (-want +got):\n%s", diff)
		}
		return nil
	})

	deleteIn(t, ns)
	expect("after Delete")
	// iptables still understands the whole table, Docker's FORWARD too.
	for _, ipt := range xtables {
		out := runIn(t, ns, ipt, "-S")
		for _, want := range []string{"-P FORWARD DROP", "-A FORWARD -j DOCKER-USER"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s -S lacks %q:\n%s", ipt, want, out)
			}
		}
	}
	if out, err := tryIn(t, ns, "nft", "list", "table", "inet", TableName); err == nil {
		t.Errorf("table left after Delete:\n%s", out)
	}
}

func TestKernelForeignForwardDropNone(t *testing.T) {
	ns := testutil.NewNetns(t)
	syncIn(t, ns, State{Networks: []Network{defaultNet}})
	withFirewall(t, ns, func(Interface) error {
		got, err := ForeignForwardDrop(context.Background())
		if err != nil {
			return err
		}
		if len(got) != 0 {
			t.Errorf("ForeignForwardDrop = %q, want none", got)
		}
		return nil
	})
}

// Removing elements that are already gone succeeds and keeps the lasting
// netlink connection: the kernel refusing an element says nothing about
// the connection, and dialing a new one into the namespace costs ~7 ms.
func TestKernelUnguardTwiceKeepsConnection(t *testing.T) {
	ns := testutil.NewNetns(t)
	g := []Guarded{{Port: "ptv-0123456789", MAC: net.HardwareAddr{2, 0x42, 10, 88, 0, 2}, IPs: []netip.Addr{netip.MustParseAddr("10.88.0.2")}}}
	withFirewall(t, ns, func(fw Interface) error {
		ctx := context.Background()
		if err := fw.Sync(ctx, State{Networks: []Network{{Name: "pontoon", Bridge: "pontoon0", Subnets: v4(netip.MustParsePrefix("10.88.0.0/16"), false)}}}); err != nil {
			return err
		}
		if err := fw.Guard(ctx, g); err != nil {
			return err
		}
		w := fw.(*nft).guards.(netlinkGuards).w
		conn := w.conn
		for range 2 {
			if err := fw.Unguard(ctx, g); err != nil {
				return fmt.Errorf("unguard: %w", err)
			}
		}
		if w.conn != conn {
			t.Error("a refused delete replaced the netlink connection")
		}
		if out := runIn(t, ns, "nft", "list", "set", "bridge", TableName, setGuardPorts); strings.Contains(out, g[0].Port) {
			t.Errorf("element still there:\n%s", out)
		}
		return nil
	})
}

// Concurrent writers share one transaction; when the kernel refuses it (one
// writer names a set that does not exist), each write is sent again alone:
// that writer gets its error and every other's elements are in place.
func TestKernelConcurrentWritesShareATransaction(t *testing.T) {
	ns := testutil.NewNetns(t)
	const n = 32
	withFirewall(t, ns, func(fw Interface) error {
		ctx := context.Background()
		if err := fw.Sync(ctx, State{Networks: []Network{{Name: "pontoon", Bridge: "pontoon0", Subnets: v4(netip.MustParsePrefix("10.88.0.0/16"), false)}}}); err != nil {
			return err
		}
		w := fw.(*nft).guards.(netlinkGuards).w
		// The first batch waits until every writer has queued behind it,
		// so the rest go out together.
		run := w.batch.Run
		var batches []int
		w.batch.Run = func(ws []nlWrite) []error {
			if len(batches) == 0 {
				deadline := time.Now().Add(5 * time.Second)
				for w.batch.Queued() < n-1 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			batches = append(batches, len(ws))
			return run(ws)
		}
		gs := make([]Guarded, n)
		for i := range gs {
			ip := netip.AddrFrom4([4]byte{10, 88, 1, byte(i)})
			gs[i] = Guarded{Port: fmt.Sprintf("ptv-%010d", i), MAC: net.HardwareAddr{2, 0x42, 10, 88, 1, byte(i)}, IPs: []netip.Addr{ip}}
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if i == n/2 {
					errs[i] = w.write(true, []nlElem{{family: gnft.TableFamilyBridge, set: "no-such-set", key: ifnameField("x")}})
					return
				}
				errs[i] = fw.Guard(ctx, gs[i:i+1])
			})
		}
		wg.Wait()
		for i, err := range errs {
			if (i == n/2) != (err != nil) {
				t.Errorf("write %d: %v", i, err)
			}
		}
		if len(batches) < 2 || batches[1] != n-1 {
			t.Errorf("batches of %v writes, want the other %d together after the first", batches, n-1)
		}
		out := runIn(t, ns, "nft", "list", "set", "bridge", TableName, setGuardIP)
		for i, g := range gs {
			if i != n/2 && !strings.Contains(out, g.IPs[0].String()) {
				t.Errorf("%s missing from the anti-spoofing set:\n%s", g.IPs[0], out)
			}
		}
		return nil
	})
}
