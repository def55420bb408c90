package placement

import (
	"net/netip"
	"testing"
	"time"
)

// TestThawRevivesAPeerThatMissedRenewalsInAnOutage (found by review, against
// a rule that revived no peer after a freeze without a write gap of more
// than 2 renew intervals): an API outage in which a missed one renewal (its
// write gap exactly 2 renew intervals) while b, renewing half an interval
// later, missed two and got a 429/Retry-After on its first write after the
// outage. Under that rule a's thaw was judged "writes kept working": b,
// alive throughout (frozen, answering z), was not revived, and a took z a
// renew interval after the thaw, half a second before b's renewal came
// back. Lease = 2 × renew (allowed). Before 4f573ac b was revived at the
// thaw and kept z.
func TestThawRevivesAPeerThatMissedRenewalsInAnOutage(t *testing.T) {
	for _, c := range []struct {
		name string
		tm   Timings
		// aLost: a's renewal (by sent second) stored but its event lost
		// (the API server died before the watch sent it); aLate: a's
		// renewal seen back this late (the reflector relists).
		aLost map[int]bool
		aLate map[int]time.Duration
	}{
		{"lease 2R", Timings{Renew: time.Second, Lease: 2 * time.Second}, nil, nil},
		{"lease 3R, last event lost, relist 200ms after recovery", Timings{Renew: time.Second, Lease: 3 * time.Second},
			map[int]bool{10: true}, map[int]time.Duration{12: 200 * time.Millisecond}},
	} {
		t.Run(c.name, func(t *testing.T) { oneMissed(t, c.tm, c.aLost, c.aLate) })
	}
}

func oneMissed(t *testing.T, tm Timings, aLost map[int]bool, aLate map[int]time.Duration) {
	s := newSim(t, false)
	s.c = NewCore("a", tm)
	z := ownedBy("b", []string{"a", "b"})
	s.start(Observation{Services: []ServiceUpdate{svc("z", z)}, Leases: []LeaseUpdate{lease("b", z)}})
	t0 := s.now
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	// Writes that fail (by sent time, seconds after t0); b's seen delay.
	aFails := map[int]bool{11: true}                 // a: 11.0 refused (API down 10.3–11.8)
	bFails := map[int]bool{10: true, 11: true}       // b: 10.5 and 11.5 refused
	bExtra := map[int]time.Duration{12: time.Second} // b: 12.5 got 429, Retry-After: 1
	renew := 0
	type pending struct {
		at time.Time
		u  LeaseUpdate
		w  *Write
	}
	var queue []pending
	var took time.Time
	var thaw time.Time
	for n := 0; n <= 20*20; n++ { // 20 s in 50 ms steps
		s.now = t0.Add(time.Duration(n) * 50 * time.Millisecond)
		ms := n * 50
		var o Observation
		if ms%1000 == 0 && aFails[ms/1000] {
			o.Failed = []FailedWrite{{Sent: s.now, Unanswered: true}}
		}
		if ms%1000 == 0 && !aFails[ms/1000] {
			renew++
			r := time.Unix(0, 0).Add(time.Duration(renew) * time.Second)
			w := Write{Renew: r, Sent: s.now}
			queue = append(queue, pending{at: s.now, w: &w}) // result at once
			if !aLost[ms/1000] {
				queue = append(queue, pending{at: s.now.Add(50*time.Millisecond + aLate[ms/1000]), u: LeaseUpdate{Node: "a", Renew: r}})
			}
		}
		if ms%1000 == 500 && !bFails[ms/1000] {
			l := lease("b", z)
			l.Renew = s.now // b's clock
			queue = append(queue, pending{at: s.now.Add(50*time.Millisecond + bExtra[ms/1000]), u: l})
		}
		keep := queue[:0]
		for _, p := range queue {
			switch {
			case p.at.After(s.now):
				keep = append(keep, p)
			case p.w != nil:
				o.Writes = append(o.Writes, *p.w)
			default:
				o.Leases = append(o.Leases, p.u)
			}
		}
		queue = keep
		wasFrozen := s.c.frozen
		s.step(o)
		if wasFrozen && !s.c.frozen && s.now.After(at(5)) {
			thaw = s.now
		}
		if _, ok := s.c.owned[netip.MustParseAddr(z)]; ok && took.IsZero() && s.now.After(at(5)) {
			took = s.now
		}
	}
	if thaw.IsZero() {
		t.Fatal("setup: a never froze and thawed")
	}
	if !took.IsZero() {
		t.Errorf("a took b's %s at +%v (thaw +%v); b renewed at +12.5 (seen +13.55) and never stopped", z, took.Sub(t0), thaw.Sub(t0))
	}
}

// TestProven: the time the API server is shown to have served this node
// between two renewals seen back is the sum of the spans between
// consecutive renewals written, each at most silent (2 s) long and without
// a failed write in it. The heartbeat's results come in steps, in any
// order within one, each failure reported before the next write is sent.
func TestProven(t *testing.T) {
	at := func(s float64) time.Time { return time.Unix(1000, 0).Add(time.Duration(s * float64(time.Second))) }
	type results struct{ sent, failed []float64 } // one step's
	for _, tc := range []struct {
		name     string
		steps    []results
		from, to float64
		want     time.Duration
	}{
		{"one a second", []results{{sent: []float64{1, 2, 3}}}, 0, 3, 3 * time.Second},
		{"out of order", []results{{sent: []float64{3, 1, 2}}}, 0, 3, 3 * time.Second},
		{"an outage between two renewals proves nothing of it", []results{{sent: []float64{1, 6, 7}}}, 0, 7, 2 * time.Second},
		{"a gap of silent still counts (a slow write)", []results{{sent: []float64{2, 4}}}, 0, 4, 4 * time.Second},
		{"a gap over silent is an outage", []results{{sent: []float64{1, 3.1, 4}}}, 0, 4, 1900 * time.Millisecond},
		// Review (session 14): a write sent on a claim change, then a
		// tick's that failed fast, then the next tick's: the gap is
		// short, and a peer's renewal may have failed with the tick.
		{"a failed write between two renewals: the span counts nothing", []results{{sent: []float64{1, 1.6, 3}, failed: []float64{2}}}, 0, 3, 1600 * time.Millisecond},
		{"the failure reported a step before the renewal after it", []results{{sent: []float64{1}, failed: []float64{2}}, {sent: []float64{3}}}, 0, 3, time.Second},
		{"failures on either side of a renewal in one step", []results{{sent: []float64{1, 3}, failed: []float64{2, 4}}, {sent: []float64{5}}}, 0, 5, time.Second},
		{"a failure after the last renewal spoils nothing before it", []results{{sent: []float64{1, 2}, failed: []float64{2.5}}}, 0, 2, 2 * time.Second},
		// Review (session 14): only the newest 16 renewals are kept.
		{"a failure before renewals dropped from memory still spoils the span of the first kept", []results{{
			sent:   []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7},
			failed: []float64{0.05},
		}}, 0, 1.7, 1500 * time.Millisecond},
		{"writes outside the span are not counted", []results{{sent: []float64{-1, 1, 2, 9}}}, 0, 2, 2 * time.Second},
		{"nothing written since", nil, 0, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCore("a", timings)
			for _, r := range tc.steps {
				var ws []Write
				for _, s := range r.sent {
					ws = append(ws, Write{Sent: at(s)})
				}
				var fs []FailedWrite
				for _, s := range r.failed {
					fs = append(fs, FailedWrite{Sent: at(s)})
				}
				c.recordWrites(ws, fs, at(10))
			}
			if got := c.proven(at(tc.from), at(tc.to)); got != tc.want {
				t.Errorf("proven = %v, want %v", got, tc.want)
			}
		})
	}
}
