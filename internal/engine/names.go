package engine

import (
	"errors"
	"fmt"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// checkNames refuses an endpoint of sandbox, with aliases, on network when
// the network's resolver could not tell its names from another member's:
// DNS compares names without regard to case, and answers each name also
// under the network ("db" and "db.app"). A sandbox name must then be the
// only one of its kind on the network, among names and aliases alike; an
// alias must be no other member's name. Aliases may be shared (in any
// case): that is what a shared alias is for, and all its holders answer.
// Exact duplicates of a sandbox name cannot occur (sandbox names are
// unique), but an alias equal to another member's name was accepted before
// and is refused here too. Endpoints being removed hold no names: their
// records left DNS when the removal began.
//
// It reads the store's name index, so it costs the same however many
// endpoints the network has. Called inside the transaction that reserves
// the endpoint, so that two attaches racing for "MyWeb" and "myweb" cannot
// both succeed; CreateSandbox also calls it before it makes a namespace.
func checkNames(tx store.Tx, network, sandbox string, aliases []string) error {
	for _, key := range model.DNSKeysMeeting(network, sandbox) {
		for _, alias := range []bool{false, true} {
			ep, err := nameHolder(tx, network, key, alias, sandbox)
			if err != nil {
				return err
			}
			if ep == nil {
				continue
			}
			if !alias {
				return model.Conflictf("sandbox name %s is taken on network %s by sandbox %s (%s): pick another sandbox name",
					sandbox, network, ep.Sandbox, sameName(network, sandbox, ep.Sandbox))
			}
			held := heldAlias(ep, key)
			return model.Conflictf("sandbox name %s is taken on network %s by the alias %s of sandbox %s (%s): pick another sandbox name, or disconnect %s and connect it again without that alias",
				sandbox, network, held, ep.Sandbox, sameName(network, sandbox, held), ep.Sandbox)
		}
	}
	for _, a := range aliases {
		for _, key := range model.DNSKeysMeeting(network, a) {
			ep, err := nameHolder(tx, network, key, false, sandbox)
			if err != nil {
				return err
			}
			if ep != nil {
				return model.Conflictf("alias %s is taken on network %s by sandbox %s (%s): pick another alias; only aliases may be shared",
					a, network, ep.Sandbox, sameName(network, a, ep.Sandbox))
			}
		}
	}
	return nil
}

// nameHolder returns an endpoint on network, other than sandbox's and not
// being removed, that answers to key as its name (or alias); nil if none.
func nameHolder(tx store.Tx, network, key string, alias bool, sandbox string) (*model.Endpoint, error) {
	holders, err := tx.NameHolders(network, key, alias)
	if err != nil {
		return nil, err
	}
	for _, h := range holders {
		if h == sandbox {
			continue
		}
		ep, err := tx.Endpoint(h, network)
		if errors.Is(err, model.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ep.State != model.StateRemoving {
			return ep, nil
		}
	}
	return nil, nil
}

// heldAlias returns ep's alias with DNS key key, as it was spelled.
func heldAlias(ep *model.Endpoint, key string) string {
	for _, a := range ep.Aliases {
		if model.DNSKey(a) == key {
			return a
		}
	}
	return key
}

// sameName says why two names are one to DNS.
func sameName(network, a, b string) string {
	if model.DNSKey(a) == model.DNSKey(b) {
		return "DNS names do not differ by case"
	}
	short := a
	if len(b) < len(a) {
		short = b
	}
	return fmt.Sprintf("%s also answers as %s.%s", short, short, network)
}
