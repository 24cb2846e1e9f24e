package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// fdbDaemon answers GET /v1/networks/{name}/fdb: with fdb for "web", a
// refusal for "wire", not found for the rest.
func fdbDaemon(t *testing.T, fdb *model.NetworkFDB) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/networks/{name}/fdb", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.PathValue("name") {
		case "web":
			_ = json.NewEncoder(w).Encode(fdb)
		case "wire":
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "network wire (driver link) has no bridge", Kind: "invalid"})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "network " + r.PathValue("name") + " not found", Kind: "not_found"})
		}
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return socket
}

func TestNetworkFDB(t *testing.T) {
	fdb := &model.NetworkFDB{Network: "web", Driver: model.DriverOverlay, Devices: []model.FDBDevice{
		{Name: "ptbr-1", Kind: "bridge",
			Entries: []model.FDBEntry{
				{MAC: "02:42:0a:c8:00:02", Port: "ptv-a", Sandbox: "a", IfName: "eth0", State: "dynamic", AgeSeconds: 65.4},
				{MAC: "02:42:0a:c8:00:09", Port: "ptv-x", State: "static"},
			},
			Neighbours: []model.Neighbour{
				{IP: netip.MustParseAddr("10.200.0.2"), MAC: "02:42:0a:c8:00:02", State: "REACHABLE", Sandbox: "a", IfName: "eth0"},
				{IP: netip.MustParseAddr("10.200.0.99"), State: "FAILED"},
			}},
		{Name: "ptvx-42", Kind: "vxlan",
			Entries:    []model.FDBEntry{{MAC: "02:aa:00:00:00:02", Port: "ptvx-42", State: "permanent", Dst: netip.MustParseAddr("192.0.2.2"), Node: "h2"}},
			Neighbours: []model.Neighbour{{IP: netip.MustParseAddr("10.200.1.0"), MAC: "02:aa:00:00:00:02", State: "PERMANENT", Node: "h2"}}},
	}}
	socket := fdbDaemon(t, fdb)
	out, err := runAt(t, socket, "network", "fdb", "web")
	if err != nil {
		t.Fatalf("network fdb web: %v\n%s", err, out)
	}
	want := `Bridge ptbr-1: MACs by port
  MAC                PORT   SANDBOX  IFACE  STATE    AGE
  02:42:0a:c8:00:02  ptv-a  a        eth0   dynamic  1m5s
  02:42:0a:c8:00:09  ptv-x  -        -      static   -
Neighbours of the host on ptbr-1:
  IP           MAC                STATE      SANDBOX  IFACE
  10.200.0.2   02:42:0a:c8:00:02  REACHABLE  a        eth0
  10.200.0.99  -                  FAILED     -        -

VXLAN device ptvx-42: the other nodes' VTEPs
  MAC                DST        NODE  STATE
  02:aa:00:00:00:02  192.0.2.2  h2    permanent
Neighbours of the host on ptvx-42:
  IP          MAC                STATE      NODE
  10.200.1.0  02:aa:00:00:00:02  PERMANENT  h2
`
	if out != want {
		t.Errorf("network fdb web:\n%s\nwant\n%s", out, want)
	}
	out, err = runAt(t, socket, "network", "fdb", "--format", "json", "web")
	var back model.NetworkFDB
	if err != nil || json.Unmarshal([]byte(out), &back) != nil || len(back.Devices) != 2 || back.Devices[1].Entries[0].Node != "h2" {
		t.Errorf("--format json: %v\n%s", err, out)
	}

	// Nothing learned yet: said so, not an empty table.
	fdb.Devices = fdb.Devices[:1]
	fdb.Devices[0].Entries, fdb.Devices[0].Neighbours = nil, nil
	out, err = runAt(t, socket, "network", "fdb", "web")
	if err != nil || !strings.Contains(out, "(none learned: a MAC shows once its sandbox sent a frame") || !strings.Contains(out, "Neighbours of the host on ptbr-1:\n  (none)\n") {
		t.Errorf("empty tables (%v):\n%s", err, out)
	}

	// The daemon's refusals come through as they are.
	if _, err := runAt(t, socket, "network", "fdb", "wire"); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "has no bridge") {
		t.Errorf("network fdb wire: %v", err)
	}
	if _, err := runAt(t, socket, "network", "fdb", "nosuch"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("network fdb nosuch: %v", err)
	}
	if _, err := runAt(t, socket, "network", "fdb", "a", "b"); err == nil || !strings.Contains(err.Error(), "needs NETWORK") {
		t.Errorf("network fdb a b: %v", err)
	}
}
