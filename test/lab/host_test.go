package lab

import (
	"strings"
	"testing"
)

func TestOverlappingRoute(t *testing.T) {
	tests := []struct {
		name, json, wantErr string
	}{
		{"this machine", `[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},{"dst":"192.0.2.0/24","dev":"eth0"},{"type":"local","dst":"192.0.2.2","dev":"eth0","table":"local"}]`, ""},
		{"lab bridge", `[{"dst":"198.51.100.0/24","dev":"l2b1a2b"},{"type":"local","dst":"198.51.100.1","dev":"l2b1a2b","table":"local"}]`, ""},
		{"covering route", `[{"dst":"198.51.0.0/16","dev":"eth1"}]`, "host route 198.51.0.0/16 dev eth1 overlaps"},
		{"host address", `[{"type":"local","dst":"198.51.100.7","dev":"eth0","table":"local"}]`, "host route local 198.51.100.7 dev eth0 overlaps"},
		{"ipv6", `[{"dst":"2001:db8:100::/48","dev":"wg0"}]`, "host route 2001:db8:100::/48 dev wg0 overlaps"},
		{"ipv6 neighbour prefix", `[{"dst":"2001:db8:101::/64","dev":"eth0"},{"type":"multicast","dst":"ff00::/8","dev":"eth0","table":"local"}]`, ""},
		{"not json", `nope`, "parse ip route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := overlappingRoute([]byte(tt.json))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("overlappingRoute = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("overlappingRoute = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
