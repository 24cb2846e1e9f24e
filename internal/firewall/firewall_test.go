package firewall

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	defaultNet = Network{Name: "pontoon", Bridge: "pontoon0", Subnet: netip.MustParsePrefix("10.88.0.0/16"), Masquerade: true}
	backNet    = Network{Name: "back", Bridge: "ptbr-0a0b0c0d", Subnet: netip.MustParsePrefix("10.90.1.0/24"), Internal: true}
	routedNet  = Network{Name: "routed", Bridge: "br-routed", Subnet: netip.MustParsePrefix("10.93.0.0/24")}
)

func TestGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		s    State
	}{
		{"empty", State{}},
		{"default", State{Networks: []Network{defaultNet}}},
		{"three-networks", State{Networks: []Network{routedNet, backNet, defaultNet}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := NewFake()
			if err := f.Sync(context.Background(), c.s); err != nil {
				t.Fatal(err)
			}
			got := f.Fake.Dump()
			// Syncing the same state again changes nothing.
			if err := f.Sync(context.Background(), c.s); err != nil {
				t.Fatal(err)
			}
			if again := f.Fake.Dump(); again != got {
				t.Fatalf("second Sync changed the ruleset:\n%s", cmp.Diff(got, again))
			}
			golden := filepath.Join("testdata", c.name+".nft")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Fatalf("ruleset differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestSyncRemovesNetworks(t *testing.T) {
	f := NewFake()
	ctx := context.Background()
	if err := f.Sync(ctx, State{Networks: []Network{defaultNet, backNet, routedNet}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(ctx, State{Networks: []Network{defaultNet}}); err != nil {
		t.Fatal(err)
	}
	d := f.Fake.Dump()
	for _, gone := range []string{backNet.Bridge, routedNet.Bridge, "10.90.1.0"} {
		if strings.Contains(d, gone) {
			t.Errorf("%s still in the ruleset:\n%s", gone, d)
		}
	}
}

// Kernel tests: real nft in a fresh namespace.

func nftIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	var out []byte
	err := testutil.InNetns(t, ns, func() (err error) {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func syncIn(t *testing.T, ns string, s State) {
	t.Helper()
	if err := testutil.InNetns(t, ns, func() error {
		fw, err := New(testLogger(t))
		if err != nil {
			return err
		}
		return fw.Sync(context.Background(), s)
	}); err != nil {
		t.Fatal(err)
	}
}

func TestKernelSyncAndDelete(t *testing.T) {
	ns := testutil.NewNetns(t)
	syncIn(t, ns, State{Networks: []Network{defaultNet, backNet}})
	syncIn(t, ns, State{Networks: []Network{defaultNet, backNet}}) // idempotent
	out := nftIn(t, ns, "nft", "list", "table", "inet", "pontoon")
	for _, want := range []string{`"pontoon0" . "pontoon0"`, "10.88.0.0/16", `iifname @internal drop`, "masquerade"} {
		if !strings.Contains(out, want) {
			t.Errorf("kernel ruleset lacks %q:\n%s", want, out)
		}
	}
	syncIn(t, ns, State{Networks: []Network{defaultNet}})
	if out := nftIn(t, ns, "nft", "list", "table", "inet", "pontoon"); strings.Contains(out, backNet.Bridge) {
		t.Fatalf("removed network still there:\n%s", out)
	}
	if err := testutil.InNetns(t, ns, func() error {
		fw, _ := New(testLogger(t))
		if err := fw.Delete(context.Background()); err != nil {
			return err
		}
		return fw.Delete(context.Background()) // missing is success
	}); err != nil {
		t.Fatal(err)
	}
	if out := nftIn(t, ns, "nft", "list", "tables"); strings.Contains(out, "pontoon") {
		t.Fatalf("table left after Delete: %s", out)
	}
}

// Docker's layout: FORWARD policy DROP jumping to DOCKER-USER. pontoon's
// commented rules appear per network, follow the networks, and leave with
// Delete; iptables can still read the chain.
func TestKernelDockerUser(t *testing.T) {
	ns := testutil.NewNetns(t)
	nftIn(t, ns, "iptables", "-P", "FORWARD", "DROP")
	nftIn(t, ns, "iptables", "-N", "DOCKER-USER")
	nftIn(t, ns, "iptables", "-I", "FORWARD", "-j", "DOCKER-USER")
	nftIn(t, ns, "iptables", "-A", "DOCKER-USER", "-j", "RETURN")
	syncIn(t, ns, State{Networks: []Network{defaultNet, backNet}})
	out := nftIn(t, ns, "iptables", "-S", "DOCKER-USER")
	for _, want := range []string{
		`-A DOCKER-USER -i pontoon0 -m comment --comment "pontoon: network pontoon" -j ACCEPT`,
		`-A DOCKER-USER -o pontoon0 -m comment --comment "pontoon: network pontoon" -j ACCEPT`,
		`-A DOCKER-USER -i ptbr-0a0b0c0d -m comment --comment "pontoon: network back" -j ACCEPT`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("DOCKER-USER lacks %s:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "-A DOCKER-USER -j RETURN") {
		t.Errorf("our rules must come before Docker's RETURN:\n%s", out)
	}
	syncIn(t, ns, State{Networks: []Network{defaultNet}})
	out = nftIn(t, ns, "iptables", "-S", "DOCKER-USER")
	if strings.Contains(out, "network back") || strings.Count(out, "pontoon: network pontoon") != 2 {
		t.Fatalf("after removing back:\n%s", out)
	}
	if err := testutil.InNetns(t, ns, func() error {
		fw, _ := New(testLogger(t))
		return fw.Delete(context.Background())
	}); err != nil {
		t.Fatal(err)
	}
	if out := nftIn(t, ns, "iptables", "-S", "DOCKER-USER"); strings.Contains(out, "pontoon") {
		t.Fatalf("rules left after Delete:\n%s", out)
	}
	// Without the drop policy the rules are not needed and not added.
	nftIn(t, ns, "iptables", "-P", "FORWARD", "ACCEPT")
	syncIn(t, ns, State{Networks: []Network{defaultNet}})
	if out := nftIn(t, ns, "iptables", "-S", "DOCKER-USER"); strings.Contains(out, "pontoon") {
		t.Fatalf("rules added without a drop policy:\n%s", out)
	}
}

func BenchmarkSync(b *testing.B) {
	ns := testutil.NewNetns(b)
	for _, n := range []int{1, 10, 100} {
		var s State
		for i := 0; i < n; i++ {
			s.Networks = append(s.Networks, Network{Name: "n" + strconv.Itoa(i), Bridge: "br" + strconv.Itoa(i),
				Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(i), 0}), 24), Masquerade: true})
		}
		b.Run(strconv.Itoa(n)+"-networks", func(b *testing.B) {
			err := testutil.InNetns(b, ns, func() error {
				fw, err := New(testLogger(b))
				if err != nil {
					return err
				}
				for b.Loop() {
					if err := fw.Sync(context.Background(), s); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
