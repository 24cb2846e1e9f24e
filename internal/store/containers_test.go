package store

import (
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"pontoon/internal/model"
)

func ofContainer(t *testing.T, tx Tx, id string) []string {
	t.Helper()
	names, err := tx.SandboxesOfContainer(id)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// The container index follows PutSandbox and DeleteSandbox, and a
// container ID never matches a longer one that starts with it.
func TestSandboxesOfContainer(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		update(t, s, func(tx Tx) error {
			for _, sb := range []*model.Sandbox{
				{ID: "1", Name: "cni-c1", ContainerID: "c1"},
				{ID: "2", Name: "other", ContainerID: "c1"},
				{ID: "3", Name: "cni-c10", ContainerID: "c10"},
				{ID: "4", Name: "nul", ContainerID: "c1\x00x"},
				{ID: "5", Name: "plain"},
			} {
				if err := tx.PutSandbox(sb); err != nil {
					return err
				}
			}
			return nil
		})
		view(t, s, func(tx Tx) error {
			if got := ofContainer(t, tx, "c1"); !slices.Equal(got, []string{"cni-c1", "other"}) {
				t.Errorf("c1: %v", got)
			}
			if got := ofContainer(t, tx, ""); len(got) != 0 {
				t.Errorf("no container ID: %v", got)
			}
			return nil
		})
		update(t, s, func(tx Tx) error {
			if err := tx.DeleteSandbox("cni-c1"); err != nil {
				return err
			}
			// Another container ID for the same sandbox moves its entry.
			return tx.PutSandbox(&model.Sandbox{ID: "2", Name: "other", ContainerID: "c2", State: model.SandboxReady})
		})
		view(t, s, func(tx Tx) error {
			if got := ofContainer(t, tx, "c1"); len(got) != 0 {
				t.Errorf("c1 after its sandboxes went: %v", got)
			}
			if got := ofContainer(t, tx, "c2"); !slices.Equal(got, []string{"other"}) {
				t.Errorf("c2: %v", got)
			}
			if got := ofContainer(t, tx, "c1\x00x"); !slices.Equal(got, []string{"nul"}) {
				t.Errorf("c1 NUL x: %v", got)
			}
			return nil
		})
	})
}

// A state file written before the container index gets it built when
// opened.
func TestBoltIndexesContainersOfOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := mustOpen(t, path)
	update(t, s, func(tx Tx) error {
		return tx.PutSandbox(&model.Sandbox{ID: "1", Name: "cni-c1", ContainerID: "c1"})
	})
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(btx *bolt.Tx) error { return btx.DeleteBucket([]byte(bSbContainers)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = mustOpen(t, path)
	defer s.Close()
	view(t, s, func(tx Tx) error {
		if got := ofContainer(t, tx, "c1"); !slices.Equal(got, []string{"cni-c1"}) {
			t.Errorf("after reopening: %v", got)
		}
		return nil
	})
}
