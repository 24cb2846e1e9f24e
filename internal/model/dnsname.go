package model

import "strings"

// DNSKey is the form in which DNS compares a sandbox name or alias: ASCII
// case folded (names are ASCII, see ValidateName) and a trailing dot
// dropped. Two names with the same key are the same DNS name: "MyWeb" and
// "myweb." both answer for myweb.
func DNSKey(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// DNSKeysMeeting returns the keys of the names that answer for at least one
// DNS name in common with name on network. The embedded resolver answers a
// name both alone and under the network ("db" and "db.app" on app), so on
// app "DB" meets "db" (case) and also "db.app" (whose "db.app" is db's
// second name) — and "db.app" meets "db" and "db.app.app".
func DNSKeysMeeting(network, name string) []string {
	k, zone := DNSKey(name), "."+DNSKey(network)
	out := []string{k, k + zone}
	if base, ok := strings.CutSuffix(k, zone); ok && base != "" {
		out = append(out, base)
	}
	return out
}
