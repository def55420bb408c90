package placement

import (
	"net/netip"
	"testing"
	"time"
)

// The tests here drive one core through a hand-over to a peer that dies,
// with the timings of a real loop: a step at every event, or when the plan's
// Wake says. Found by review.

// driver steps a's core like placer.run: at every event, or when Wake
// says, whichever comes first.
type driver struct {
	s        *sim
	steps    int
	spin     time.Duration // time spent with Wake == 1 ms
	ownDelay time.Duration // own renewals seen back this long after sent; <0: never
	nextOwn  time.Time
	pending  []Write
	renewNo  int
	peers    map[string]time.Time // next renewal of each live peer; zero: dead
}

func (d *driver) until(t *testing.T, end time.Time, each func(p Plan)) {
	for d.s.now.Before(end) {
		next := d.s.now.Add(d.s.plan.Wake)
		if d.nextOwn.Before(next) {
			next = d.nextOwn
		}
		for _, w := range d.pending {
			if w.Sent.Add(d.ownDelay).Before(next) {
				next = w.Sent.Add(d.ownDelay)
			}
		}
		for _, at := range d.peers {
			if !at.IsZero() && at.Before(next) {
				next = at
			}
		}
		if !next.After(d.s.now) {
			next = d.s.now.Add(time.Millisecond)
		}
		if d.s.plan.Wake <= time.Millisecond {
			d.spin += next.Sub(d.s.now)
		}
		d.s.now = next
		var o Observation
		if !d.nextOwn.After(next) { // a renewal sent now, its result now
			d.renewNo++
			w := Write{Renew: time.Unix(0, 0).Add(time.Duration(d.renewNo) * time.Second), Sent: next}
			o.Writes = append(o.Writes, w)
			if d.ownDelay >= 0 {
				d.pending = append(d.pending, w)
			}
			d.nextOwn = next.Add(d.s.c.t.Renew)
		}
		keep := d.pending[:0]
		for _, w := range d.pending {
			if !w.Sent.Add(d.ownDelay).After(next) {
				o.Leases = append(o.Leases, LeaseUpdate{Node: "a", Renew: w.Renew})
			} else {
				keep = append(keep, w)
			}
		}
		d.pending = keep
		for name, at := range d.peers {
			if !at.IsZero() && !at.After(next) {
				l := lease(name)
				l.Renew = next
				o.Leases = append(o.Leases, l)
				d.peers[name] = next.Add(d.s.c.t.Renew)
			}
		}
		d.steps++
		each(d.s.step(o))
	}
}

// offerToDying: a (holding twelve) and b only; a steps until it offers an
// address to b; b renews once more, renewAfter after the offer (never if
// negative), then dies.
func offerToDying(t *testing.T, tm Timings, renewAfter time.Duration) (*driver, netip.Addr, time.Time) {
	t.Helper()
	s := newSim(t, true)
	s.c = NewCore("a", tm)
	svcs, all := twelve()
	s.start(Observation{Services: svcs, Leases: []LeaseUpdate{lease("a", all...)}})
	d := &driver{s: s, ownDelay: 50 * time.Millisecond, nextOwn: s.now, peers: map[string]time.Time{"b": s.now}}
	for !s.plan.Publish.Handover.IsValid() {
		d.until(t, s.now.Add(time.Millisecond), func(Plan) {})
		if s.now.Sub(time.Unix(1000, 0)) > time.Minute {
			t.Fatal("setup: no offer")
		}
	}
	if s.plan.Publish.HandoverTo != "b" {
		t.Fatalf("setup: offer to %q", s.plan.Publish.HandoverTo)
	}
	d.peers["b"] = time.Time{}
	if renewAfter >= 0 {
		d.peers["b"] = s.now.Add(renewAfter)
	}
	return d, s.plan.Publish.Handover, s.now
}

// TestHandoverToDeadTarget: a healthy node answers an address again within
// five renew intervals of offering it to a peer that dies (the chaos
// checker's allowance), whatever the lease duration, and is never asked to
// wake every millisecond meanwhile.
func TestHandoverToDeadTarget(t *testing.T) {
	for _, tm := range []Timings{{time.Second, 2 * time.Second}, {time.Second, 3 * time.Second}, {time.Second, 10 * time.Second}} {
		d, ip, at := offerToDying(t, tm, 900*time.Millisecond)
		var back time.Duration
		d.until(t, at.Add(tm.Lease+5*tm.Renew), func(Plan) {
			if d.s.now.After(at.Add(900 * time.Millisecond)) {
				d.peers["b"] = time.Time{}
			}
			if _, ok := d.s.c.owned[ip]; ok && back == 0 {
				back = d.s.now.Sub(at)
			}
		})
		if back == 0 || back > 5*tm.Renew || d.spin > 0 {
			t.Errorf("lease %v: %s answered again %v after the offer (0: never; want within %v), %v at Wake = 1 ms",
				tm.Lease, ip, back, 5*tm.Renew, d.spin)
		}
	}
}

// TestHandoverWakeWhileFrozen: a frozen node cannot prove the target
// silent; it waits for the offer's end without stepping every millisecond.
func TestHandoverWakeWhileFrozen(t *testing.T) {
	tm := Timings{Renew: time.Second, Lease: 10 * time.Second}
	d, _, at := offerToDying(t, tm, -1)
	d.ownDelay, d.pending = -1, nil // own renewals never come back
	d.until(t, at.Add(tm.Lease+time.Second), func(Plan) {})
	if d.spin > tm.Renew {
		t.Errorf("asked to be woken every millisecond for %v", d.spin)
	}
}

// TestHandoverLagThenThaw: own renewals written but not seen back for a
// while (informer lag) freeze the node; the offer to the dead target ends
// meanwhile; the thaw gives the dead target a lease duration, as every
// peer live before the freeze, and the address is answered again within a
// lease duration and two renew intervals of the thaw.
func TestHandoverLagThenThaw(t *testing.T) {
	tm := Timings{Renew: time.Second, Lease: 3 * time.Second}
	for _, thawAfter := range []time.Duration{2500 * time.Millisecond, 5 * time.Second} {
		d, ip, at := offerToDying(t, tm, -1)
		d.ownDelay, d.pending = -1, nil
		d.until(t, at.Add(thawAfter), func(Plan) {})
		d.ownDelay = 50 * time.Millisecond
		var back time.Duration
		d.until(t, at.Add(thawAfter+2*tm.Lease), func(Plan) {
			if _, ok := d.s.c.owned[ip]; ok && back == 0 {
				back = d.s.now.Sub(at)
			}
		})
		if want := thawAfter + tm.Lease + 2*tm.Renew; back == 0 || back > want {
			t.Errorf("thaw at +%v: %s answered again %v after the offer (0: never), want by %v", thawAfter, ip, back, want)
		}
	}
}

// TestBurstyInformerRevivesNoDeadPeer: the Lease watch delivers in bursts
// every 2.5 s while every write succeeds, so the view freezes and thaws in
// turn. A thaw must not revive the dead target each time: it would never
// expire, and the address it was offered never be answered again.
func TestBurstyInformerRevivesNoDeadPeer(t *testing.T) {
	tm := Timings{Renew: time.Second, Lease: 3 * time.Second}
	d, ip, at := offerToDying(t, tm, -1)
	s := d.s
	n := d.renewNo
	var answered time.Duration
	everLive := true
	for i := 1; s.now.Before(at.Add(60 * time.Second)); i++ {
		s.advance(250 * time.Millisecond)
		var o Observation
		if i%4 == 0 { // a renewal written every renew interval
			n++
			o.Writes = []Write{{Renew: time.Unix(0, 0).Add(time.Duration(n) * time.Second), Sent: s.now}}
		}
		if i%10 == 0 { // the watch delivers what it holds
			o.Leases = []LeaseUpdate{{Node: "a", Renew: time.Unix(0, 0).Add(time.Duration(n) * time.Second)}}
		}
		s.step(o)
		if s.now.After(at.Add(10*time.Second)) && !s.c.peers["b"].live {
			everLive = false
		}
		if _, ok := s.c.owned[ip]; ok && answered == 0 {
			answered = s.now.Sub(at)
		}
	}
	if everLive || answered == 0 {
		t.Errorf("dead target live in the view throughout: %v; %s answered again after %v (0: never)", everLive, ip, answered)
	}
}
