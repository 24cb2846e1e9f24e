package engine

import (
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Ports lists every published mapping (of ready endpoints), optionally of
// one sandbox, with where it is reachable from.
func (e *Engine) Ports(sandbox string) ([]model.PortInfo, error) {
	out := []model.PortInfo{}
	err := e.st.View(func(tx store.Tx) error {
		var eps []*model.Endpoint
		var err error
		if sandbox != "" {
			if _, err := tx.Sandbox(sandbox); err != nil {
				return err
			}
			eps, err = tx.EndpointsOfSandbox(sandbox)
		} else {
			eps, err = tx.Endpoints()
		}
		if err != nil {
			return err
		}
		for _, ep := range liveEndpoints(eps) {
			for _, m := range ep.Ports {
				out = append(out, model.PortInfo{Sandbox: ep.Sandbox, Network: ep.Network, IP: ep.IP.String(),
					Mapping: m, Reachable: reachable(m)})
			}
		}
		return nil
	})
	return out, err
}

func reachable(m model.PortMapping) string {
	switch {
	case !m.HostIP.IsValid():
		return "LAN, host, sandboxes (every host address)"
	case m.HostIP.IsLoopback():
		return "host only (" + m.HostIP.String() + ")"
	default:
		return "LAN, host, sandboxes (through " + m.HostIP.String() + " only)"
	}
}
