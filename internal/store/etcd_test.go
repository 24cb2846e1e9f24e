package store

import (
	"context"
	"testing"

	"pontoon/internal/store/etcdtest"
)

// openEtcd opens an etcd store on a throwaway etcd server of t's own.
func openEtcd(t testing.TB) Store {
	t.Helper()
	s, err := OpenEtcd(context.Background(), etcdtest.Start(t), "/pontoon/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
