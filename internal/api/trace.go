package api

import (
	"context"
	"net/http"

	"pontoon/internal/model"
)

// Trace asks where a packet goes (POST /v1/trace).
func (c *Client) Trace(ctx context.Context, spec model.TraceSpec) (*model.Trace, error) {
	var v model.Trace
	return &v, c.do(ctx, http.MethodPost, "/v1/trace", spec, &v)
}
