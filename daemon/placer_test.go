package daemon

import (
	"net/netip"
	"testing"

	"github.com/l2lb/l2lb/daemon/placement"
)

// TestConflictSet: every distinct conflict reported between two steps
// reaches the next one, once, however many frames repeat it.
func TestConflictSet(t *testing.T) {
	s := &conflictSet{pending: map[placement.Conflict]bool{}}
	base := netip.MustParseAddr("2001:db8:100::")
	for round := range 3 { // each announced three times
		ip := base
		for i := range 5000 {
			ip = ip.Next()
			if added := s.add(placement.Conflict{IP: ip, MAC: "02:00:00:00:00:0b", Interface: "eth0"}); added != (round == 0) {
				t.Fatalf("round %d, conflict %d: added %v", round, i, added)
			}
		}
	}
	if got := len(s.take()); got != 5000 {
		t.Errorf("took %d conflicts, want 5000", got)
	}
	if got := s.take(); got != nil {
		t.Errorf("took %v again", got)
	}
}
