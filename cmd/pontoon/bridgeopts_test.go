package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// bodyDaemon answers POST /v1/networks and POST /v1/sandboxes with what it
// was sent, and keeps the last body.
func bodyDaemon(t *testing.T) (socket string, last func() []byte) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		body = b.Bytes()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		switch r.URL.Path {
		case "/v1/networks":
			var spec model.NetworkSpec
			_ = json.Unmarshal(body, &spec)
			_ = json.NewEncoder(w).Encode(model.NetworkInfo{Network: model.Network{Name: spec.Name, BridgeOptions: spec.BridgeOptions}})
		default:
			_, _ = w.Write([]byte(`{"name": "a"}`))
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket, func() []byte { return body }
}

func runAt(t *testing.T, socket string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("PONTOON_SOCKET", socket)
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String() + errb.String(), err
}

func TestNetworkCreateBridgeOptionFlags(t *testing.T) {
	socket, last := bodyDaemon(t)
	for _, c := range []struct {
		args []string
		want string // the spec's bridge_options as JSON; "" for none
	}{
		{[]string{"network", "create", "plain"}, ""},
		{[]string{"network", "create", "app", "--stp", "--forward-delay", "4", "--ageing", "30", "--vlan-filtering", "--hairpin=false", "--multicast-snooping"},
			`{"stp":true,"forward_delay":4,"ageing_time":30,"vlan_filtering":true,"hairpin":false,"multicast_snooping":true}`},
		{[]string{"network", "create", "h", "--hairpin"}, `{"hairpin":true}`},
	} {
		if out, err := runAt(t, socket, c.args...); err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		var spec struct {
			BridgeOptions json.RawMessage `json:"bridge_options"`
		}
		if err := json.Unmarshal(last(), &spec); err != nil {
			t.Fatal(err)
		}
		if got := string(spec.BridgeOptions); got != c.want {
			t.Errorf("%v: bridge_options %s, want %s", c.args, got, c.want)
		}
	}
}

func TestVLANFlag(t *testing.T) {
	socket, last := bodyDaemon(t)
	if out, err := runAt(t, socket, "sandbox", "create", "a", "--network", "app", "--vlan", "10"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(last()), `"vlan":10`) {
		t.Errorf("sandbox create --vlan 10 sent %s", last())
	}
	for _, args := range [][]string{
		{"sandbox", "create", "b", "--network", "app", "--vlan", "0"},
		{"network", "connect", "app", "b", "--vlan", "0"},
	} {
		out, err := runAt(t, socket, args...)
		if err == nil || !strings.Contains(out+err.Error(), "VLAN 0 is out of range") {
			t.Errorf("%v: %v\n%s, want VLAN 0 refused", args, err, out)
		}
	}
}
