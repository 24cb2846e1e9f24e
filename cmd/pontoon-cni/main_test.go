package main

import (
	"errors"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// Without "network" the config's "name" is the pontoon network, and an
// error about that network says where the name came from.
func TestNetworkFromName(t *testing.T) {
	c, err := loadConf([]byte(`{"cniVersion": "1.1.0", "name": "mynet", "type": "pontoon"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Network != "mynet" {
		t.Fatalf("network %q, want the name mynet", c.Network)
	}
	nf := model.NotFoundf(`network "mynet" not found`)
	got := c.explain(nf)
	if !errors.Is(got, model.ErrNotFound) || !strings.Contains(got.Error(), `sets no "network", so its "name" "mynet" was taken as the pontoon network`) {
		t.Fatalf("explain: %v", got)
	}
	if other := errors.New("boom"); c.explain(other) != other {
		t.Fatal("explain changed an error that is not about a missing network")
	}

	c, err = loadConf([]byte(`{"cniVersion": "1.1.0", "name": "mynet", "type": "pontoon", "network": "back"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Network != "back" || c.explain(nf) != nf {
		t.Fatalf("with network set: %q, %v", c.Network, c.explain(nf))
	}
}
