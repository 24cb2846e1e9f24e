package daemon

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"pontoon/internal/link"
)

func TestEtcdEndpoints(t *testing.T) {
	for _, c := range []struct {
		in   string
		tls  bool
		want []string
		err  string
	}{
		{in: "etcd://10.0.0.5:2379,etcd://10.0.0.6:2379", want: []string{"http://10.0.0.5:2379", "http://10.0.0.6:2379"}},
		{in: "etcd://10.0.0.5:2379", tls: true, want: []string{"https://10.0.0.5:2379"}},
		{in: "10.0.0.5:2379", want: []string{"http://10.0.0.5:2379"}},
		{in: "http://a:2379, unix:///run/etcd.sock", want: []string{"http://a:2379", "unix:///run/etcd.sock"}},
		{in: "ftp://a:2379", err: "unknown scheme"},
		{in: " , ", err: "names no etcd endpoint"},
	} {
		got, err := etcdEndpoints(c.in, c.tls)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one with %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%q (tls %v): %v, %v; want %v", c.in, c.tls, got, err, c.want)
		}
	}
}

// An --underlay whose name the firewall's sets cannot take is refused
// before anything is dialled or written (it would fail every firewall
// sync later); one it can take goes on to the address check.
func TestJoinClusterChecksUnderlayName(t *testing.T) {
	lk := link.NewFake()
	root := t.TempDir()
	_, _, err := joinCluster(context.Background(), "unix:///nonexistent", transport.TLSInfo{}, "h1", "eth+0", root, 0, lk, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "--underlay") || !strings.Contains(err.Error(), "eth+0") {
		t.Fatalf("--underlay eth+0: %v, want an error naming the flag and the link", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("a refused join wrote into the root: %v", entries)
	}
	_, _, err = joinCluster(context.Background(), "unix:///nonexistent", transport.TLSInfo{}, "h1", "eth0", root, 0, lk, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "has no IPv4 address") {
		t.Fatalf("--underlay eth0 without an address: %v, want the address check's error", err)
	}
}
