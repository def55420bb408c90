package placement

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestTakeoverReasons: every takeover carries the code the metrics count it
// by, one row per code.
func TestTakeoverReasons(t *testing.T) {
	// b wins z among a, b, c, and a wins it once b is out.
	z := addrWhere(func(ip string) bool { return winner(ip, abc...) == "b" && winner(ip, "a", "c") == "a" })
	x := ownedBy("a", abc)
	// fromB starts a with b claiming z, and returns what a takes over in
	// the step that o's change leads to.
	fromB := func(s *sim, o Observation) []Announced {
		s.start(Observation{Services: []ServiceUpdate{svc("z", z)}})
		s.fresh(lease("b", z), lease("c"))
		s.advance(10 * time.Millisecond)
		return s.step(s.renewed(o)).Announced
	}
	tests := []struct {
		name string
		run  func(t *testing.T, s *sim) []Announced
		ip   string
		want TakeoverReason
	}{
		{
			name: "a new Service's address",
			run: func(t *testing.T, s *sim) []Announced {
				s.start(Observation{})
				s.fresh(lease("b"), lease("c"))
				s.advance(10 * time.Millisecond)
				return s.step(Observation{Services: []ServiceUpdate{svc("x", x)}}).Announced
			},
			ip: x, want: TakeoverNew,
		},
		{
			name: "claimed by this node before it restarted",
			run: func(t *testing.T, s *sim) []Announced {
				return s.start(Observation{Services: []ServiceUpdate{svc("z", z)}, Leases: []LeaseUpdate{lease("a", z)}}).Announced
			},
			ip: z, want: TakeoverRestart,
		},
		{
			name: "its node deleted its Lease",
			run:  func(t *testing.T, s *sim) []Announced { return fromB(s, Observation{LeasesGone: []string{"b"}}) },
			ip:   z, want: TakeoverPeerStopped,
		},
		{
			name: "its node stopped renewing",
			run: func(t *testing.T, s *sim) []Announced {
				s.start(Observation{Services: []ServiceUpdate{svc("z", z)}})
				s.fresh(lease("b", z), lease("c"))
				var out []Announced
				for range 5 { // b renews no more
					s.advance(timings.Renew)
					out = append(out, s.step(s.renewed(Observation{Leases: s.renewPeers([]LeaseUpdate{lease("c")})})).Announced...)
				}
				return out
			},
			ip: z, want: TakeoverPeerExpired,
		},
		{
			name: "its Node is not Ready",
			run:  func(t *testing.T, s *sim) []Announced { return fromB(s, Observation{Nodes: []NodeUpdate{{Name: "b"}}}) },
			ip:   z, want: TakeoverPeerNotReady,
		},
		{
			name: "its Node is excluded",
			run: func(t *testing.T, s *sim) []Announced {
				return fromB(s, Observation{Nodes: []NodeUpdate{{Name: "b", Ready: true, Excluded: true}}})
			},
			ip: z, want: TakeoverPeerExcluded,
		},
		{
			name: "its Node no longer matches the pool's nodeSelector",
			run: func(t *testing.T, s *sim) []Announced {
				s.cfg = selectorConfig(t)
				s.start(Observation{Services: []ServiceUpdate{svc("z", z)}, Nodes: lbNodes("a", "b", "c")})
				s.fresh(lease("b", z), lease("c"))
				s.advance(10 * time.Millisecond)
				return s.step(Observation{Nodes: []NodeUpdate{{Name: "b", Ready: true}}}).Announced
			},
			ip: z, want: TakeoverPeerUnselected,
		},
		{
			name: "its node has no ready endpoint any more (Local)",
			run: func(t *testing.T, s *sim) []Announced {
				s.start(Observation{Services: []ServiceUpdate{localSvc("z", z, "a", "b")}})
				s.fresh(lease("b", z), lease("c"))
				s.advance(10 * time.Millisecond)
				return s.step(Observation{Services: []ServiceUpdate{localSvc("z", z, "a")}}).Announced
			},
			ip: z, want: TakeoverPeerIneligible,
		},
		{
			name: "its node hands it over to balance the load",
			run: func(t *testing.T, s *sim) []Announced {
				offer := lease("b")
				offer.Member.Handover, offer.Member.HandoverTo = netip.MustParseAddr(z), "a"
				return fromB(s, Observation{Leases: s.renewPeers([]LeaseUpdate{offer})})
			},
			ip: z, want: TakeoverHandover,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, false)
			got := tt.run(t, s)
			i := slices.IndexFunc(got, func(a Announced) bool { return a.IP.String() == tt.ip })
			if i < 0 {
				t.Fatalf("announced %v, want %s taken over", got, tt.ip)
			}
			if got[i].Reason != tt.want {
				t.Errorf("reason %s, want %s (notes %v)", got[i].Reason, tt.want, s.plan.Notes)
			}
		})
	}
}

// TestTakeoverReasonCodes: the codes are distinct label values, and every
// reason has one.
func TestTakeoverReasonCodes(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range TakeoverReasons() {
		code := r.String()
		if code == "" || code == "unknown" || seen[code] {
			t.Errorf("reason %d: code %q is empty, unknown or taken", r, code)
		}
		seen[code] = true
	}
	if got := TakeoverReason(200).String(); got != "unknown" {
		t.Errorf("an out-of-range reason is %q, want unknown", got)
	}
}
