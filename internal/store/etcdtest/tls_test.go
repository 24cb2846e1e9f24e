package etcdtest

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A TLS etcd answers a client with the test CA's client pair, and refuses
// one without a certificate.
func TestStartServerTLS(t *testing.T) {
	s := StartServerTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Client.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	if !strings.HasPrefix(s.Client.Endpoints()[0], "unixs://") {
		t.Errorf("endpoint %s: want unixs://", s.Client.Endpoints()[0])
	}
	cfg, err := (&TLSFiles{CA: s.TLS.CA}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	anon, err := clientv3.New(clientv3.Config{Endpoints: s.Client.Endpoints(), TLS: cfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer acancel()
	if _, err := anon.Get(actx, "k"); err == nil {
		t.Error("a client without a certificate read from an etcd with --client-cert-auth")
	}
}
