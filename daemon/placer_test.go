package daemon

import (
	"net/netip"
	"testing"
	"time"

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

// TestPlaceStatsCount: takeovers are counted by reason, and a hand-over
// once per offer however many plans publish it.
func TestPlaceStatsCount(t *testing.T) {
	ip := netip.MustParseAddr
	offer := func(addr, to string) placement.Plan {
		var p placement.Plan
		if addr != "" {
			p.Publish.Handover, p.Publish.HandoverTo = ip(addr), to
		}
		return p
	}
	took := func(reasons ...placement.TakeoverReason) placement.Plan {
		var p placement.Plan
		for _, r := range reasons {
			p.Announced = append(p.Announced, placement.Announced{IP: ip("198.51.100.1"), Reason: r})
		}
		return p
	}
	tests := []struct {
		name      string
		plans     []placement.Plan
		handovers uint64
		takeovers map[placement.TakeoverReason]uint64
	}{
		{name: "no plan", handovers: 0},
		{name: "one offer published by three plans", plans: []placement.Plan{offer("198.51.100.1", "b"), offer("198.51.100.1", "b"), offer("198.51.100.1", "b")}, handovers: 1},
		{name: "an offer taken, then the next", plans: []placement.Plan{offer("198.51.100.1", "b"), offer("", ""), offer("198.51.100.2", "c")}, handovers: 2},
		{name: "the next offer in the step that ends the last", plans: []placement.Plan{offer("198.51.100.1", "b"), offer("198.51.100.2", "b")}, handovers: 2},
		{name: "the same address offered again later", plans: []placement.Plan{offer("198.51.100.1", "b"), offer("", ""), offer("198.51.100.1", "b")}, handovers: 2},
		{
			name:      "takeovers by reason",
			plans:     []placement.Plan{took(placement.TakeoverPeerExpired, placement.TakeoverPeerExpired, placement.TakeoverNew), took(placement.TakeoverHandover)},
			takeovers: map[placement.TakeoverReason]uint64{placement.TakeoverPeerExpired: 2, placement.TakeoverNew: 1, placement.TakeoverHandover: 1},
		},
		{
			name:  "an address moved to another interface is no takeover",
			plans: []placement.Plan{{Announced: []placement.Announced{{Reason: placement.TakeoverNew, Moved: true}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newPlaceStats()
			for _, p := range tt.plans {
				st.count(p)
			}
			if got := st.handovers.Load(); got != tt.handovers {
				t.Errorf("handovers %d, want %d", got, tt.handovers)
			}
			for _, r := range placement.TakeoverReasons() {
				if got := st.takeovers[r].Load(); got != tt.takeovers[r] {
					t.Errorf("takeovers %s: %d, want %d", r, got, tt.takeovers[r])
				}
			}
		})
	}
}

func TestStepGap(t *testing.T) {
	const window = 2 * time.Second // the default timings'
	for _, tc := range []struct {
		name         string
		cost, window time.Duration
		burst        bool
		want         time.Duration
	}{
		{"quiet: a change after a quiet moment is decided at once", 50 * time.Millisecond, window, false, minStepGap},
		{"burst, a cheap step: the floor", 500 * time.Microsecond, window, true, minStepGap},
		{"burst: ten times the step's cost", 3 * time.Millisecond, window, true, 30 * time.Millisecond},
		{"burst, a cold start's steps: at most maxStepGap", 10 * time.Millisecond, window, true, maxStepGap},
		{"burst, a step that stalled: still at most maxStepGap", time.Second, window, true, maxStepGap},
		// The fastest timings the config allows (renew 100 ms, lease 200
		// ms): the next step must come well within the 100 ms a decision
		// is good for, or the node takes itself for paused.
		{"burst at the fastest timings: a quarter of the window", 10 * time.Millisecond, 100 * time.Millisecond, true, 25 * time.Millisecond},
	} {
		if got := stepGap(tc.cost, tc.window, tc.burst); got != tc.want {
			t.Errorf("%s: stepGap(%v, %v, %v) = %v, want %v", tc.name, tc.cost, tc.window, tc.burst, got, tc.want)
		}
	}
}
