package daemon

import (
	"maps"
	"slices"

	"pontoon/internal/api"
)

// hostGW reports, per host-gw overlay network, the cluster's nodes this
// host does not reach because they are on another L2 segment (the engine
// refused their routes and programmed the others').
func (d *doctor) hostGW() []api.Finding {
	var out []api.Finding
	refused := d.eng.HostGWRefusals()
	for _, network := range slices.Sorted(maps.Keys(refused)) {
		for _, why := range refused[network] {
			out = append(out, finding(api.LevelError, "host-gw", "network %s: %s", network, why))
		}
	}
	return out
}
