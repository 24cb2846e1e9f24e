package model

import (
	"slices"
	"testing"
)

func TestDNSKeysMeeting(t *testing.T) {
	for _, tt := range []struct {
		network, name string
		want          []string
	}{
		{"app", "MyWeb", []string{"myweb", "myweb.app"}},
		{"App", "db.", []string{"db", "db.app"}},
		{"app", "DB.APP", []string{"db.app", "db.app.app", "db"}},
		{"app", "app", []string{"app", "app.app"}},
	} {
		if got := DNSKeysMeeting(tt.network, tt.name); !slices.Equal(got, tt.want) {
			t.Errorf("DNSKeysMeeting(%s, %s) = %v, want %v", tt.network, tt.name, got, tt.want)
		}
	}
}
