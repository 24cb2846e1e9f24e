package daemon

import (
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// jsonFields lists the JSON names of t's fields, embedded structs included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// docs/api.md documents every route the server has and every field of the
// types its routes take and return.
func TestAPIDocMatchesAPI(t *testing.T) {
	data, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, p := range NewServer(nil, slog.New(slog.DiscardHandler)).patterns {
		if !strings.Contains(doc, "`"+p) {
			t.Errorf("docs/api.md does not document the route %s", p)
		}
	}
	for _, v := range []any{
		api.Status{}, api.Healing{}, api.ConnectRequest{}, api.DisconnectRequest{}, api.ErrorBody{}, api.Problem{}, api.Finding{},
		api.CNIAddRequest{}, api.CNIAddResult{}, api.CNIDelRequest{},
		model.NetworkSpec{}, model.Network{}, model.NetworkInfo{}, model.SandboxSpec{}, model.SandboxInfo{},
		model.AttachSpec{}, model.Endpoint{}, model.EndpointStats{}, model.PortMapping{}, model.PortInfo{}, model.Event{},
		model.Topology{}, model.TopoUplink{}, model.TopoNetwork{}, model.TopoPort{}, model.TopoSandbox{},
		model.TraceSpec{}, model.Trace{}, model.TraceProbe{}, model.TraceHop{}, model.TraceVerdict{}, model.TraceLive{},
		model.ClusterNode{}, model.ClusterNodeInfo{}, model.ClusterNetwork{}, model.ClusterNetworkNode{},
		model.NetworkFDB{}, model.FDBDevice{}, model.FDBEntry{}, model.Neighbour{},
	} {
		typ := reflect.TypeOf(v)
		for _, f := range jsonFields(typ) {
			if !strings.Contains(doc, `"`+f+`"`) {
				t.Errorf("docs/api.md does not document field %q of %s", f, typ)
			}
		}
	}
}
