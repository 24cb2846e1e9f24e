package daemon

import (
	"slices"
	"strings"
	"testing"
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
