package store

import (
	"strings"

	"pontoon/internal/model"
)

// bSbContainers indexes sandboxes by container ID, so that creating a
// sandbox for a container finds the container's other sandboxes without
// reading every sandbox (reading 600 costs ~3 ms, and a CNI ADD did it):
//
//	container ID \x00 sandbox → empty
//
// PutSandbox and DeleteSandbox keep it, and Open builds it for a state
// file written before it existed.
const bSbContainers = "sandbox-containers"

func containerKey(containerID, sandbox string) []byte {
	return []byte(containerID + "\x00" + sandbox)
}

// SandboxesOfContainer returns the names of the sandboxes recorded with
// containerID, sorted.
func (t tx) SandboxesOfContainer(containerID string) ([]string, error) {
	if containerID == "" {
		return nil, nil
	}
	prefix := []byte(containerID + "\x00")
	var out []string
	err := t.kv.scan(bSbContainers, prefix, func(k, _ []byte) error {
		// A NUL in the rest means a longer container ID that starts with
		// this one and a NUL (names hold no NUL).
		if rest := string(k[len(prefix):]); !strings.Contains(rest, "\x00") {
			out = append(out, rest)
		}
		return nil
	})
	return out, err
}

// reindexContainer replaces the entry of old (nil: none) with that of s
// (nil: none).
func (t tx) reindexContainer(old, s *model.Sandbox) error {
	same := old != nil && s != nil && old.ContainerID == s.ContainerID && old.Name == s.Name
	if old != nil && old.ContainerID != "" && !same {
		if err := t.kv.del(bSbContainers, containerKey(old.ContainerID, old.Name)); err != nil {
			return err
		}
	}
	if s != nil && s.ContainerID != "" && !same {
		return t.kv.put(bSbContainers, containerKey(s.ContainerID, s.Name), []byte{})
	}
	return nil
}

func (t tx) storedSandbox(name string) (*model.Sandbox, error) {
	return byName[model.Sandbox](t, bSbNames, bSandboxes, []byte(name))
}

// indexAllContainers builds the container index from every sandbox (Open,
// for a state file without it).
func (t tx) indexAllContainers() (int, error) {
	sbs, err := t.Sandboxes()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range sbs {
		if s.ContainerID == "" {
			continue
		}
		if err := t.reindexContainer(nil, s); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}
