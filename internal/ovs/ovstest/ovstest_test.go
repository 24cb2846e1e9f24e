package ovstest

import (
	"context"
	"os"
	"strings"
	"testing"

	"pontoon/internal/testutil"
)

// TestStart starts a private OVS and checks both daemons answer, that the
// database is the fresh one, and that nothing was written outside the
// test's directory.
func TestStart(t *testing.T) {
	testutil.RequireRoot(t)
	o := Start(t, testutil.NewNetns(t))
	ctx := context.Background()
	if out, err := o.Vsctl(ctx, "init"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := o.Vsctl(ctx, "list-br")
	if err != nil || out != "" {
		t.Fatalf("list-br on a fresh database: %q, %v", out, err)
	}
	for _, f := range []string{"conf.db", "db.sock", "ovsdb-server.pid", "ovs-vswitchd.pid", "ovs-vswitchd.ctl", "ovsdb.ctl"} {
		if _, err := os.Stat(o.Dir + "/" + f); err != nil {
			t.Errorf("%s not in the test's directory: %v", f, err)
		}
	}
	if !strings.Contains(o.Log("ovs-vswitchd"), "connected") {
		t.Errorf("ovs-vswitchd log has no connection to the database:\n%s", o.Log("ovs-vswitchd"))
	}
}
