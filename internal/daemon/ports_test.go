package daemon

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/netns"
	"pontoon/internal/testutil"
)

// probePorts in a throwaway namespace with real listeners of this process:
// every family's holder is named, a v6-only server conflicts with a
// mapping on every address, and an address the host does not have is
// refused as invalid.
func TestKernelProbePorts(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t)
	comm, _ := os.ReadFile("/proc/self/comm")
	holder := "process " + strconv.Itoa(os.Getpid()) + " (" + strings.TrimSpace(string(comm)) + ")"
	var ls []interface{ Close() error }
	t.Cleanup(func() {
		for _, l := range ls {
			l.Close()
		}
	})
	if err := netns.Do(ns, func() error {
		for _, a := range []struct{ network, addr string }{
			{"tcp", "[::]:8080"},  // dual-stack
			{"tcp6", "[::]:8081"}, // IPv6 only: 0.0.0.0:8081 is free
			{"udp6", "[::1]:5353"},
		} {
			var l interface{ Close() error }
			var err error
			if strings.HasPrefix(a.network, "udp") {
				l, err = net.ListenPacket(a.network, a.addr)
			} else {
				l, err = net.Listen(a.network, a.addr)
			}
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	m := func(ip string, port uint16, proto string) model.PortMapping {
		var a netip.Addr
		if ip != "" {
			a = netip.MustParseAddr(ip)
		}
		return model.PortMapping{HostIP: a, HostPort: port, HostPortEnd: port, Port: 80, PortEnd: 80, Proto: proto}
	}
	for _, c := range []struct {
		m    model.PortMapping
		kind error // nil: accepted
		want string
	}{
		{m("", 8080, "tcp"), model.ErrConflict, "host port 8080/tcp is in use by " + holder + " on [::]:8080"},
		{m("127.0.0.1", 8080, "tcp"), model.ErrConflict, holder + " on [::]:8080"},
		{m("", 8081, "tcp"), model.ErrConflict, holder + " on [::]:8081"},
		{m("127.0.0.1", 8081, "tcp"), nil, ""}, // the v6-only server leaves v4 free
		{m("::1", 5353, "udp"), model.ErrConflict, holder + " on [::1]:5353"},
		{m("", 5353, "udp"), model.ErrConflict, holder + " on [::1]:5353"},
		{m("", 5353, "tcp"), nil, ""},
		{m("2001:db8::7", 9000, "tcp"), model.ErrInvalid, "host address 2001:db8::7 of mapping"},
	} {
		var err error
		if derr := netns.Do(ns, func() error { err = probePorts(c.m, nil); return nil }); derr != nil {
			t.Fatal(derr)
		}
		switch {
		case c.kind == nil && err != nil:
			t.Errorf("%s: %v, want accepted", c.m, err)
		case c.kind != nil && (!errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %v saying %q", c.m, err, c.kind, c.want)
		}
	}
}
