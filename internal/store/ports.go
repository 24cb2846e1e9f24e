package store

import (
	"encoding/binary"
	"fmt"
	"strings"

	"pontoon/internal/model"
)

// bEpPorts indexes the host ports endpoints publish, so that an attach
// with published ports finds who already holds a host port without
// reading every endpoint (it did, once per attach: a cost that grew with
// the number of endpoints on the host):
//
//	proto \x00 host port (2 bytes, big-endian) \x00 sandbox \x00 network → empty
//
// A mapping of a range has an entry for each port of it. PutEndpoint and
// DeleteEndpoint keep it, and Open builds it for a state file written
// before it existed.
const bEpPorts = "endpoint-ports"

func portPrefix(proto string, port uint16) []byte {
	k := make([]byte, 0, len(proto)+4)
	k = append(k, proto...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0)
}

// portEntries are the index keys of an endpoint's mappings.
func portEntries(e *model.Endpoint) map[string]bool {
	out := map[string]bool{}
	for _, m := range e.Ports {
		for p := int(m.HostPort); p <= int(m.HostPortEnd); p++ {
			out[string(portPrefix(m.Proto, uint16(p)))+e.Sandbox+"\x00"+e.Network] = true
		}
	}
	return out
}

// reindexPorts replaces the entries of old (nil: none) with those of e
// (nil: none).
func (t tx) reindexPorts(old, e *model.Endpoint) error {
	var drop, add map[string]bool
	if old != nil {
		drop = portEntries(old)
	}
	if e != nil {
		add = portEntries(e)
	}
	for k := range drop {
		if !add[k] {
			if err := t.kv.del(bEpPorts, []byte(k)); err != nil {
				return err
			}
		}
	}
	for k := range add {
		if !drop[k] {
			if err := t.kv.put(bEpPorts, []byte(k), []byte{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// EndpointsOnHostPort returns the endpoints, in any state, with a mapping
// of proto that covers host port port (on any host address), sorted by
// sandbox, then network.
func (t tx) EndpointsOnHostPort(proto string, port uint16) ([]*model.Endpoint, error) {
	prefix := portPrefix(proto, port)
	var out []*model.Endpoint
	err := t.kv.scan(bEpPorts, prefix, func(k, _ []byte) error {
		sb, nw, ok := strings.Cut(string(k[len(prefix):]), "\x00")
		if !ok {
			return fmt.Errorf("store: bad host port index key %q", k)
		}
		ep, err := t.Endpoint(sb, nw)
		if err != nil {
			return fmt.Errorf("store: host port index names %s on %s: %w", sb, nw, err)
		}
		out = append(out, ep)
		return nil
	})
	return out, err
}

// indexAllPorts builds the host port index from every endpoint (Open, for
// a state file without it).
func (t tx) indexAllPorts() (int, error) {
	eps, err := t.Endpoints()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range eps {
		if len(e.Ports) == 0 {
			continue
		}
		if err := t.reindexPorts(nil, e); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}
