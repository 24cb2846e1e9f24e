package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// A daemon started after a reboot (simulated: the boot ID beside the state
// file is another kernel's) keeps its networks and nothing else: the
// previous boot's sandboxes, addresses and, here, the kernel objects they
// left (a real reboot takes those along) are gone, and the network hands
// out addresses from the start again.
func TestStartAfterRebootKeepsNetworks(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "keep", "--subnet", "10.95.1.0/24", "--label", "team=blue")
	h.P("sandbox", "create", "a", "--network", "keep")
	h.P("sandbox", "create", "b")
	first := h.IP("a", "keep")
	h.Kill()
	if err := os.WriteFile(filepath.Join(h.Root, "pontoon.db.boot"), []byte("00000000-0000-0000-0000-000000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.Start()

	if out := h.P("network", "inspect", "keep"); !strings.Contains(out, "10.95.1.0/24") || !strings.Contains(out, "team") {
		t.Fatalf("network keep after the reboot:\n%s", out)
	}
	if out := strings.TrimSpace(h.P("sandbox", "ls", "--format", "json")); out != "[]" && out != "null" {
		t.Fatalf("sandboxes survived the reboot:\n%s", out)
	}
	if l := h.HostLinks(model.HostVethPrefix); len(l) > 0 {
		t.Fatalf("the previous boot's veths were not collected: %v", l)
	}
	if p := h.Pins(); len(p) > 0 {
		t.Fatalf("the previous boot's pins were not collected: %v", p)
	}
	if _, err := os.Stat(filepath.Join(h.Root, "pontoon.db.previous-boot")); err != nil {
		t.Errorf("the previous boot's state file was not kept aside: %v", err)
	}
	// The network works and starts handing out addresses afresh.
	h.P("sandbox", "create", "c", "--network", "keep")
	h.P("sandbox", "create", "d", "--network", "keep")
	if got := h.IP("c", "keep"); got != first {
		t.Errorf("first address after the reboot %s, want %s (the previous boot's reservations are gone)", got, first)
	}
	h.MustPing("c", h.IP("d", "keep"))
}
