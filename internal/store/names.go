package store

import (
	"pontoon/internal/model"
)

// bEpNames indexes the DNS names of endpoints, so that an attach can find
// who on a network already answers to a name without reading every
// endpoint there (reading 1000 endpoints costs ~8 ms; a lookup here costs
// what one key does):
//
//	network \x00 model.DNSKey(name) \x00 kind \x00 sandbox → empty
//
// kind is "n" for the sandbox's own name and "a" for an alias. PutEndpoint
// and DeleteEndpoint keep it, and Open builds it for a state file written
// before it existed.
const bEpNames = "endpoint-names"

const (
	kindName  = "n"
	kindAlias = "a"
)

func nameKey(network, key, kind, sandbox string) []byte {
	return []byte(network + "\x00" + key + "\x00" + kind + "\x00" + sandbox)
}

// nameEntries are the index keys of an endpoint: its sandbox name and
// each alias, by DNS key (the same alias twice, in two cases, is one).
func nameEntries(e *model.Endpoint) map[string]bool {
	out := map[string]bool{string(nameKey(e.Network, model.DNSKey(e.Sandbox), kindName, e.Sandbox)): true}
	for _, a := range e.Aliases {
		out[string(nameKey(e.Network, model.DNSKey(a), kindAlias, e.Sandbox))] = true
	}
	return out
}

// reindexNames replaces the entries of old (nil: none) with those of e
// (nil: none).
func (t tx) reindexNames(old, e *model.Endpoint) error {
	var drop, add map[string]bool
	if old != nil {
		drop = nameEntries(old)
	}
	if e != nil {
		add = nameEntries(e)
	}
	for k := range drop {
		if !add[k] {
			if err := t.kv.del(bEpNames, []byte(k)); err != nil {
				return err
			}
		}
	}
	for k := range add {
		if !drop[k] {
			if err := t.kv.put(bEpNames, []byte(k), []byte{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// storedEndpoint returns the endpoint record as stored, nil when missing.
func (t tx) storedEndpoint(sandbox, network string) (*model.Endpoint, error) {
	return byName[model.Endpoint](t, bEpKeys, bEndpoints, key2(sandbox, network))
}

func (t tx) NameHolders(network, key string, alias bool) ([]string, error) {
	kind := kindName
	if alias {
		kind = kindAlias
	}
	prefix := nameKey(network, key, kind, "")
	var out []string
	err := t.kv.scan(bEpNames, prefix, func(k, _ []byte) error {
		out = append(out, string(k[len(prefix):]))
		return nil
	})
	return out, err
}

// indexAllNames builds the name index from every endpoint (Open, for a
// state file without it).
func (t tx) indexAllNames() (int, error) {
	eps, err := t.Endpoints()
	if err != nil {
		return 0, err
	}
	for _, e := range eps {
		if err := t.reindexNames(nil, e); err != nil {
			return 0, err
		}
	}
	return len(eps), nil
}
