package placement

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/l2lb/l2lb/config"
)

func TestInterfaceFor(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`
pools:
  - name: lan
    addresses: [198.51.100.200-198.51.100.210, "2001:db8:100::200/120"]
  - name: pinned
    addresses: [203.0.113.10]
    interface: eth1
  - name: nowhere
    addresses: [100.64.0.1]
`), "n")
	if err != nil {
		t.Fatal(err)
	}
	links := []Link{
		{Name: "eth0", Usable: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}},
		{Name: "eth1", Usable: true},
		// Down, or up without carrier: unusable either way.
		{Name: "eth2", Usable: false, Prefixes: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24")}},
	}
	tests := []struct {
		pool, ip, want string
	}{
		{"lan", "198.51.100.205", "eth0"},
		{"lan", "2001:db8:100::2ff", "eth0"},
		{"pinned", "203.0.113.10", "eth1"},
		{"nowhere", "100.64.0.1", ""}, // its only subnet is on an unusable link
	}
	for _, tc := range tests {
		p, _ := cfg.Pool(tc.pool)
		got, _ := interfaceFor(cfg, p, netip.MustParseAddr(tc.ip), links)
		if got != tc.want {
			t.Errorf("%s %s: got %q, want %q", tc.pool, tc.ip, got, tc.want)
		}
	}
	if got := slices.Sorted(maps.Keys(servablePools(cfg, links))); !slices.Equal(got, []string{"lan", "pinned"}) {
		t.Errorf("servable pools %v", got)
	}
	// interfaces: restricts the subnet match, not a pool's own interface.
	only := *cfg
	only.Interfaces = []string{"eth1"}
	p, _ := only.Pool("lan")
	if got, ok := interfaceFor(&only, p, netip.MustParseAddr("198.51.100.205"), links); ok {
		t.Errorf("answered on %s, which interfaces: does not allow", got)
	}
}
