package main

import (
	"encoding/json"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// --mac (or Docker's --mac-address) goes, in canonical form, to the first
// network of sandbox create and to network connect; a MAC the daemon
// would refuse is refused before anything is sent.
func TestMACFlag(t *testing.T) {
	socket, last := bodyDaemon(t)
	for _, c := range []struct {
		args []string
		want []string // the mac of each attach sent
	}{
		{[]string{"sandbox", "create", "a", "--network", "app", "--network", "back", "--mac", "02-42-0A-00-00-05"}, []string{"02:42:0a:00:00:05", ""}},
		{[]string{"sandbox", "create", "a", "--network", "app", "--mac-address", "02:42:0a:00:00:06"}, []string{"02:42:0a:00:00:06"}},
		{[]string{"sandbox", "create", "a", "--network", "app"}, []string{""}},
		{[]string{"network", "connect", "app", "b", "--mac", "02:42:0A:00:00:07"}, []string{"02:42:0a:00:00:07"}},
		{[]string{"network", "connect", "app", "b", "--mac-address", "02:42:0a:00:00:08"}, []string{"02:42:0a:00:00:08"}},
	} {
		if out, err := runAt(t, socket, c.args...); err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		var got []string
		if c.args[0] == "sandbox" {
			var spec model.SandboxSpec
			if err := json.Unmarshal(last(), &spec); err != nil {
				t.Fatal(err)
			}
			for _, a := range spec.Networks {
				got = append(got, a.MAC)
			}
		} else {
			var a model.AttachSpec
			if err := json.Unmarshal(last(), &a); err != nil {
				t.Fatal(err)
			}
			got = []string{a.MAC}
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%v sent macs %q, want %q (body %s)", c.args, got, c.want, last())
		}
	}

	socket, last = bodyDaemon(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sandbox", "create", "a", "--network", "app", "--mac", "01:00:5e:00:00:01"}, "multicast"},
		{[]string{"sandbox", "create", "a", "--network", "app", "--mac", "02:42:0a:00:00"}, "not an Ethernet address"},
		{[]string{"sandbox", "create", "a", "--network", "app", "--mac", "00:00:00:00:00:00"}, "cannot be an interface's address"},
		{[]string{"sandbox", "create", "a", "--network", "none", "--mac", "02:42:0a:00:00:05"}, "need a network"},
		{[]string{"sandbox", "create", "a", "--mac", "02:42:0a:00:00:05", "--mac-address", "02:42:0a:00:00:06"}, "not both"},
		{[]string{"network", "connect", "app", "b", "--mac", "ff:ff:ff:ff:ff:ff"}, "multicast"},
	} {
		out, err := runAt(t, socket, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v\n%s\nwant an error saying %q", c.args, err, out, c.want)
		}
	}
	if b := last(); b != nil {
		t.Errorf("refused flags sent a request: %s", b)
	}
	// run attaches as sandbox create does.
	if f := newRunCmd(&globals{}).Flags(); f.Lookup("mac") == nil || f.Lookup("mac-address") == nil {
		t.Error("pontoon run has no --mac or --mac-address")
	}
}
