package daemon

import "net/http"

// topology serves GET /v1/topology: the engine's picture of the host.
func (s *Server) topology(r *http.Request) (int, any, error) {
	t, err := s.eng.Topology(r.Context())
	return http.StatusOK, t, err
}
