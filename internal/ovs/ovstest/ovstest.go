// Package ovstest starts a private Open vSwitch (ovsdb-server and
// ovs-vswitchd) for kernel tests, inside a network namespace the test made.
//
// Everything OVS writes (database, sockets, pid files, logs) lives in the
// test's temporary directory: OVS_RUNDIR, OVS_DBDIR, OVS_LOGDIR,
// OVS_PKGDATADIR and OVS_SYSCONFDIR point there, and every path is also given
// on the command line, so /var/run/openvswitch and /etc are never touched.
// Both daemons run in the foreground as children of the test (nsenter execs
// them, so the PIDs are theirs) and are stopped by those PIDs only.
//
// The kernel has no openvswitch module here, so bridges must use the
// userspace datapath (datapath_type=netdev); ovs-vswitchd then keeps its
// ports in AF_PACKET sockets and its internal ports as tap devices in the
// namespace it runs in.
package ovstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Schema is where Debian's openvswitch-common installs the Open_vSwitch
// database schema.
const Schema = "/usr/share/openvswitch/vswitch.ovsschema"

// OVS is a private Open vSwitch started by Start.
type OVS struct {
	// Dir is the temporary directory with the database, sockets and logs.
	Dir string
	// Netns is the path of the network namespace both daemons run in.
	Netns string
	// Endpoint is the OVSDB endpoint to Dial, "unix:<Dir>/db.sock".
	Endpoint string
}

// Start starts ovsdb-server on a fresh database and ovs-vswitchd inside the
// network namespace pinned at netns, and stops both when the test ends. It
// skips the test when not root or when the OVS programs are not installed
// (scripts/deps.sh installs openvswitch-switch).
func Start(t testing.TB, netns string) *OVS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs ovs-vswitchd in a network namespace")
	}
	bins := map[string]string{}
	for _, name := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "nsenter"} {
		p, err := lookPath(name)
		if err != nil {
			t.Skipf("needs %s (install openvswitch-switch, see scripts/deps.sh): %v", name, err)
		}
		bins[name] = p
	}
	if _, err := os.Stat(Schema); err != nil {
		t.Skipf("needs the OVS schema (install openvswitch-switch): %v", err)
	}

	dir := t.TempDir()
	o := &OVS{Dir: dir, Netns: netns, Endpoint: "unix:" + filepath.Join(dir, "db.sock")}
	db := filepath.Join(dir, "conf.db")
	if out, err := exec.Command(bins["ovsdb-tool"], "create", db, Schema).CombinedOutput(); err != nil {
		t.Fatalf("ovsdb-tool create %s: %v\n%s", db, err, out)
	}

	o.start(t, bins, "ovsdb-server", db,
		"--remote=punix:"+filepath.Join(dir, "db.sock"),
		"--pidfile="+filepath.Join(dir, "ovsdb-server.pid"),
		"--unixctl="+filepath.Join(dir, "ovsdb.ctl"),
		"--log-file="+filepath.Join(dir, "ovsdb-server.log"))
	o.waitFor(t, "ovsdb-server", filepath.Join(dir, "db.sock"))

	o.start(t, bins, "ovs-vswitchd", o.Endpoint,
		"--pidfile="+filepath.Join(dir, "ovs-vswitchd.pid"),
		"--unixctl="+filepath.Join(dir, "ovs-vswitchd.ctl"),
		"--log-file="+filepath.Join(dir, "ovs-vswitchd.log"))
	o.waitFor(t, "ovs-vswitchd", filepath.Join(dir, "ovs-vswitchd.ctl"))
	return o
}

// env points every OVS directory at the temporary directory.
func (o *OVS) env() []string {
	env := os.Environ()
	for _, k := range []string{"OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_PKGDATADIR", "OVS_SYSCONFDIR"} {
		env = append(env, k+"="+o.Dir)
	}
	return env
}

// start runs name in the foreground inside the namespace and registers its
// stop.
//
// Pdeathsig stops the daemon should the test binary die before its
// cleanup. The kernel sends it when the thread that forked the daemon
// exits, not the process, and Go ends threads whenever a goroutine that
// locked one returns (testutil.InNetns does, many times per test). So the
// daemon is forked from a goroutine that keeps its thread locked and waits
// for the daemon there: that thread outlives the daemon.
func (o *OVS) start(t testing.TB, bins map[string]string, name string, args ...string) {
	t.Helper()
	argv := append([]string{"--net=" + o.Netns, "--", bins[name], "-vconsole:off"}, args...)
	cmd := exec.Command(bins["nsenter"], argv...)
	cmd.Env = o.env()
	cmd.Dir = o.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var stderr strings.Builder
	cmd.Stderr = &stderr // what goes wrong before the log file is open
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Only the PID started here: nsenter exec'd the daemon, so it is
		// the daemon's own.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s%s", name, o.Log(name), stderr.String())
		}
	})
}

// waitFor waits, bounded, until the daemon has created its socket.
func (o *OVS) waitFor(t testing.TB, name, sock string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s did not create %s within 5 s; log:\n%s", name, sock, o.Log(name))
}

// Log returns the log file of "ovsdb-server" or "ovs-vswitchd".
func (o *OVS) Log(name string) string {
	b, err := os.ReadFile(filepath.Join(o.Dir, name+".log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Vsctl runs ovs-vsctl against this OVS's database (--no-wait, so it never
// blocks on ovs-vswitchd), for tests that cross-check what a client did.
func (o *OVS) Vsctl(ctx context.Context, args ...string) (string, error) {
	p, err := lookPath("ovs-vsctl")
	if err != nil {
		return "", err
	}
	argv := append([]string{"--db=" + o.Endpoint, "--no-wait", "--timeout=5"}, args...)
	cmd := exec.CommandContext(ctx, p, argv...)
	cmd.Env = o.env()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ovs-vsctl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// lookPath finds name on PATH or in the sbin directories, which a test's
// PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New(name + " not found on PATH or in /usr/sbin")
}
