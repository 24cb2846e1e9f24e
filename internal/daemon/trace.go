package daemon

import (
	"net/http"

	"pontoon/internal/model"
)

// trace answers POST /v1/trace: where a packet goes, and which rule
// decides its fate (engine.Trace).
func (s *Server) trace(r *http.Request) (int, any, error) {
	var spec model.TraceSpec
	if err := decode(r, &spec); err != nil {
		return 0, nil, err
	}
	v, err := s.eng.Trace(r.Context(), spec)
	return http.StatusOK, v, err
}
