package chaos

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/l2lb/l2lb/daemon/placement"
	"github.com/l2lb/l2lb/test/lab"
)

// violation is a broken promise.
type violation struct {
	invariant string
	at, end   time.Time // the window concerned (end may be zero)
	node      string
	ip        netip.Addr
	what      string
}

// grace is a window in which an address may go unanswered, and why.
type grace struct {
	span
	why string
}

// stats are the run's figures beyond pass and fail.
type stats struct {
	longestGap, longestTwoMAC         time.Duration
	longestGapWhere, longestTwoMACWhy string
	longestTwoMACAt                   violation // where to show it, though no violation
	gaps, twoMACs                     int       // windows seen (over the resolution), excused or not
}

// checker checks invariants 1 and 2 for every address, after the run.
type checker struct {
	t          timings
	facts      *facts
	elig       *eligibility
	outages    []span
	logs       []logLine
	addrs      []netip.Addr                  // every address the client asked for
	logOf      func(netip.Addr) lab.ProbeLog // what it heard
	start, end time.Time                     // the checked period: from the first fault to the end of convergence

	violations []violation
	stats      stats
}

func (c *checker) checkAll() {
	c.facts.mu.Lock()
	defer c.facts.mu.Unlock()
	for _, ip := range c.addrs {
		c.checkAddress(ip)
	}
}

// held returns when ip belonged to some Service, within the checked period.
func (c *checker) held(ip netip.Addr) []span {
	var out []span
	for _, s := range c.facts.services {
		if !slices.Contains(s.ips, ip) {
			continue
		}
		to := s.deleted
		if to.IsZero() {
			to = c.end
		}
		out = append(out, span{later(s.assigned, c.start), earlier(to, c.end)})
	}
	return union(out)
}

// segment is a stretch of time over which the eligible nodes do not change.
type segment struct {
	span
	eligible uint64
}

func (c *checker) segments(ip netip.Addr, held []span) []segment {
	points := []time.Time{c.start}
	for _, b := range c.facts.breakpoints() {
		if b.After(c.start) && b.Before(c.end) {
			points = append(points, b)
		}
	}
	points = append(points, c.end)
	var out []segment
	for i := 0; i+1 < len(points); i++ {
		s := span{points[i], points[i+1]}
		if len(intersect([]span{s}, held)) > 0 {
			out = append(out, segment{s, c.elig.at(ip, s.from)})
		}
	}
	return out
}

// answering reports whether mac was answering for the address at t: it
// answered within the resolution before t, or in the probe period after.
func (c *checker) answering(log lab.ProbeLog, mac string, t time.Time) bool {
	return slices.ContainsFunc(log.Replies, func(r lab.Run) bool {
		return r.MAC == mac && !r.First.After(t.Add(c.t.probe)) && !r.Last.Before(t.Add(-c.t.resolution()))
	})
}

// graces lists the windows in which ip may go unanswered: after it was
// given out, after a node became eligible where none was, after its
// answering owner lost eligibility (the fault that removes its owner), and
// after a hand-over its owner logged; each extended past an API outage it
// overlaps, since takeovers need the API.
func (c *checker) graces(ip netip.Addr, log lab.ProbeLog, segs []segment) []grace {
	var gs []grace
	for _, s := range c.facts.services {
		if slices.Contains(s.ips, ip) && s.assigned.After(c.start) {
			gs = append(gs, grace{span{s.assigned, s.assigned.Add(c.t.takeover())}, "address newly given out"})
		}
	}
	for i := 1; i < len(segs); i++ {
		prev, cur := segs[i-1], segs[i]
		at := cur.from
		if prev.to.Before(cur.from) {
			prev.eligible = 0 // not held in between
		}
		if prev.eligible == 0 && cur.eligible != 0 {
			gs = append(gs, grace{span{at, at.Add(c.t.takeover())}, "a node became eligible where none was"})
		}
		for removed := prev.eligible &^ cur.eligible; removed != 0; removed &= removed - 1 {
			n := bits.TrailingZeros64(removed)
			if c.answering(log, c.facts.macs[n], at) {
				gs = append(gs, grace{span{at, at.Add(c.t.takeover())},
					fmt.Sprintf("its owner %s became ineligible (%s)", c.facts.nodes[n], c.why(n, at))})
			}
		}
	}
	for _, l := range c.logs {
		if l.ip == ip && l.msg == placement.HandoverLog {
			gs = append(gs, grace{span{l.at, l.at.Add(c.t.handover())}, c.facts.nodes[l.node] + " handed it over to balance the load"})
		}
	}
	takers := c.takerEvents(ip, log)
	for i := range gs {
		for changed := true; changed; {
			changed = false
			for _, o := range c.outages {
				if o.from.Before(gs[i].to) && o.to.After(gs[i].from.Add(-c.t.lease)) && o.to.Add(c.t.afterAPI()).After(gs[i].to) {
					gs[i].to = o.to.Add(c.t.afterAPI())
					gs[i].why += ", and the API server was down"
					changed = true
				}
			}
			// A node that starts or thaws cannot judge a peer's Lease by
			// its own clock until it has watched it for a lease duration:
			// a taker that turns fresh inside the window starts the
			// takeover over.
			for _, e := range takers {
				if !e.lapsed && c.answering(log, c.facts.macs[e.node], gs[i].from) {
					continue // the owner, back before its claims lapsed: it answers at once
				}
				if !e.at.Before(gs[i].from) && e.at.Before(gs[i].to) && e.at.Add(c.t.takeover()).After(gs[i].to) {
					gs[i].to = e.at.Add(c.t.takeover())
					gs[i].why += fmt.Sprintf(", and %s, which would take it over, %s", c.facts.nodes[e.node], e.what)
					changed = true
				}
			}
		}
	}
	return gs
}

// takerEvent is something that happened to the node that would take an
// address over, and restarts the takeover's clock.
type takerEvent struct {
	node int
	at   time.Time
	what string
	// lapsed: the node came back from a restart, or from a pause or a cut
	// long enough for its claims to lapse; only then does its fresh view
	// restart the window of an address it answered itself.
	lapsed bool
}

// takerEvents lists what restarts a takeover of ip: the node rendezvous
// hashing prefers among the eligible ones (the others defer to it) became
// ineligible before it took the address (its peers wait a lease duration
// to see it gone; not the owner's own fault, which opened the window), or
// turned fresh after a fault injected into it or the API server: from then
// it gives every peer a lease duration by its own clock, the claims of a
// dead one too (a restarted owner restores no claim a peer still holds).
func (c *checker) takerEvents(ip netip.Addr, log lab.ProbeLog) []takerEvent {
	var out []takerEvent
	for n := range c.facts.nodes {
		for k, ivs := range c.facts.conds {
			if k.node != n || !k.cond.disqualifies() {
				continue
			}
			for _, iv := range ivs {
				if c.answering(log, c.facts.macs[n], iv.from) {
					continue
				}
				if before := iv.from.Add(-time.Millisecond); c.preferred(ip, c.elig.at(ip, before)) == n {
					out = append(out, takerEvent{n, iv.from, "became ineligible (" + k.cond.String() + ")", false})
				}
			}
		}
	}
	for _, l := range c.logs {
		if l.msg != placement.FreshLog || c.preferred(ip, c.elig.at(ip, l.at)) != l.node {
			continue
		}
		if what, lapsed := c.returnedFrom(l.node, l.at); what != "" {
			out = append(out, takerEvent{l.node, l.at, "turned fresh after " + what, lapsed})
		}
	}
	return out
}

// returnedFrom names the fault that node n came back from shortly before
// its view turned fresh at t (a restart, a pause, a cut from the API or the
// API server's outage); "" if none did: a view that turns fresh with no
// fault injected excuses nothing. lapsed: a restart, or a pause or a cut
// that outlasted the node's claims (timings.claims).
func (c *checker) returnedFrom(n int, t time.Time) (what string, lapsed bool) {
	for _, k := range []condKey{{n, procDown}, {n, procStopped}, {n, cutOff}, {-1, apiDown}} {
		for _, iv := range c.facts.conds[k] {
			if !iv.to.IsZero() && !iv.to.After(t) && t.Sub(iv.to) <= c.t.afterAPI() {
				long := k.cond != apiDown && iv.to.Sub(iv.from) >= c.t.claims()
				return k.cond.String(), k.cond == procDown || long
			}
		}
	}
	return "", false
}

// preferred is the node of the set that rendezvous hashing prefers for ip,
// as placement.Owner picks among nodes that claim nothing; -1 if none.
func (c *checker) preferred(ip netip.Addr, set uint64) int {
	best, bestScore := -1, uint64(0)
	for n, name := range c.facts.nodes {
		if set&(1<<n) == 0 {
			continue
		}
		if s := placement.Score(ip, name); best < 0 || s > bestScore || s == bestScore && name < c.facts.nodes[best] {
			best, bestScore = n, s
		}
	}
	return best
}

// why names what made node n ineligible at t: its conditions, or the
// endpoints of a Local Service.
func (c *checker) why(n int, t time.Time) string {
	var names []string
	for _, cond := range c.facts.conditionsAt(n, t) {
		names = append(names, cond.String())
	}
	if len(names) == 0 {
		return "no ready endpoint of a Local Service"
	}
	return strings.Join(names, ", ")
}

func (c *checker) checkAddress(ip netip.Addr) {
	held := c.held(ip)
	if len(held) == 0 {
		return
	}
	log := c.logOf(ip)
	segs := c.segments(ip, held)
	gs := c.graces(ip, log, segs)
	var covered, excused []span
	for _, s := range segs {
		if s.eligible != 0 {
			covered = append(covered, s.span)
		}
	}
	for _, g := range gs {
		excused = append(excused, g.span)
	}
	required := subtract(intersect(union(covered), held), union(excused))
	c.checkGaps(ip, log, held, required, gs)
	c.checkTwoMACs(ip, log)
	c.checkAnnouncements(ip, log)
}

// checkGaps finds the stretches in which the client asked for ip and
// nobody answered (invariant 2).
func (c *checker) checkGaps(ip netip.Addr, log lab.ProbeLog, held, required []span, gs []grace) {
	res := c.t.resolution()
	var answered, asked []span
	for _, r := range log.Replies {
		if c.facts.nodeOfMAC(r.MAC) < 0 {
			c.violations = append(c.violations, violation{invariant: "1: one MAC per address", at: r.First, end: r.Last, ip: ip,
				what: fmt.Sprintf("%s answered by %s, no node's MAC", ip, r.MAC)})
		}
		answered = append(answered, span{r.First, r.Last.Add(res)})
	}
	for _, r := range log.Requests {
		asked = append(asked, span{r.First, r.Last.Add(c.t.probe)})
	}
	unanswered := intersect(subtract(intersect(union(asked), held), union(answered)), held)
	for _, u := range unanswered {
		window := span{u.from.Add(-res), u.to} // from the last answer
		c.stats.gaps++
		if window.dur() > c.stats.longestGap {
			c.stats.longestGap = window.dur()
			c.stats.longestGapWhere = fmt.Sprintf("%s at %s (%s)", ip, clock(window.from), c.excuse(window, gs))
		}
		bad := intersect([]span{u}, required)
		if len(bad) == 0 {
			continue
		}
		c.violations = append(c.violations, violation{invariant: "2: every address answered", at: window.from, end: window.to, ip: ip,
			what: fmt.Sprintf("%s unanswered for %v, %v of it outside every allowed window (%s)", ip,
				window.dur().Round(time.Millisecond), total(bad).Round(time.Millisecond), c.excuse(window, gs))})
	}
}

// excuse says which grace windows overlap w.
func (c *checker) excuse(w span, gs []grace) string {
	var whys []string
	for _, g := range gs {
		if g.from.Before(w.to) && g.to.After(w.from) {
			whys = append(whys, fmt.Sprintf("%s from %s until %s", g.why, clock(g.from), clock(g.to)))
		}
	}
	if len(whys) == 0 {
		return "no fault removed its owner"
	}
	return strings.Join(whys, "; ")
}

// checkTwoMACs finds the windows in which two MACs answered for ip
// (invariant 1): a run of answers from one MAC that starts while another
// MAC's run goes on. The newcomer's first answer to the older run's last
// is the window; it must end within the bound (the old owner has seen the
// takeover), and a newcomer that was paused just before must not be
// answering at all (a paused owner taking its address back).
func (c *checker) checkTwoMACs(ip netip.Addr, log lab.ProbeLog) {
	for i, older := range log.Replies {
		for _, newer := range log.Replies[i+1:] {
			if newer.First.After(older.Last) {
				break // runs are in the order they started
			}
			if newer.MAC == older.MAC {
				continue
			}
			w := span{newer.First, earlier(older.Last, newer.Last)}
			c.stats.twoMACs++
			olderNode, newerNode := c.facts.nameOfMAC(older.MAC), c.facts.nameOfMAC(newer.MAC)
			if w.dur() >= c.stats.longestTwoMAC {
				c.stats.longestTwoMAC = w.dur()
				c.stats.longestTwoMACWhy = fmt.Sprintf("%s at %s: %s answering, then %s", ip, clock(w.from), olderNode, newerNode)
				c.stats.longestTwoMACAt = violation{at: w.from, end: w.to, ip: ip}
			}
			if w.dur() > c.t.twoMACs() {
				c.violations = append(c.violations, violation{invariant: "1: one MAC per address", at: w.from, end: w.to, ip: ip,
					what: fmt.Sprintf("%s answered by %s and %s for %v (bound %v)", ip, olderNode, newerNode, w.dur().Round(time.Millisecond), c.t.twoMACs())})
			}
			if n := c.facts.nodeOfMAC(newer.MAC); n >= 0 && c.resumedBefore(n, newer.First) {
				c.violations = append(c.violations, violation{invariant: "1: one MAC per address", at: w.from, end: w.to, ip: ip,
					what: fmt.Sprintf("%s answered for %s after resuming from SIGSTOP while %s answered", newerNode, ip, olderNode)})
			}
		}
	}
}

// checkAnnouncements finds gratuitous ARPs and unsolicited NAs from a node
// that resumed from a pause less than a renew interval before, while
// another MAC answered (invariant 1): it may not claim anything yet. The
// owner's answers before it handed the address over to that node (it stops
// first: a live peer back from a pause shorter than its Lease may be
// offered one) do not count, unless it withdrew the offer.
func (c *checker) checkAnnouncements(ip netip.Addr, log lab.ProbeLog) {
	for _, a := range log.Announcements {
		n := c.facts.nodeOfMAC(a.MAC)
		if n < 0 || !c.resumedBefore(n, a.At) {
			continue
		}
		from := c.handedBy(ip, n, a.At)
		others := slices.ContainsFunc(log.Replies, func(r lab.Run) bool {
			return r.MAC != a.MAC && !r.First.After(a.At) && !r.Last.Before(a.At.Add(-time.Second)) &&
				(from < 0 || r.MAC != c.facts.macs[from] || r.Last.After(a.At))
		})
		if others {
			c.violations = append(c.violations, violation{invariant: "1: one MAC per address", at: a.At, ip: ip,
				what: fmt.Sprintf("%s announced %s right after resuming from SIGSTOP, while another node answered", c.facts.nodes[n], ip)})
		}
	}
}

// handedBy returns the node that logged handing ip over to node n less
// than a hand-over's allowance before t, and withdrew no offer since; -1
// if none did.
func (c *checker) handedBy(ip netip.Addr, n int, t time.Time) int {
	by, at := -1, time.Time{}
	for _, l := range c.logs {
		if l.ip != ip || l.at.After(t) {
			continue
		}
		switch {
		case l.msg == placement.HandoverLog && t.Sub(l.at) < c.t.handover() &&
			parseSlog(l.text)["to"] == c.facts.nodes[n]:
			by, at = l.node, l.at
		case l.msg == placement.WithdrawLog && by == l.node && l.at.After(at):
			by = -1
		}
	}
	return by
}

// resumedBefore reports whether node n was continued after a SIGSTOP less
// than a renew interval before t: a node that resumes answers nothing until
// its view is fresh again, and then takes nothing new while it settles for
// a renew interval, so it cannot have won an address since.
func (c *checker) resumedBefore(n int, t time.Time) bool {
	return slices.ContainsFunc(c.facts.conds[condKey{n, procStopped}], func(iv interval) bool {
		return !iv.to.IsZero() && !iv.to.After(t) && t.Sub(iv.to) < c.t.renew
	})
}

// clock formats a time of the run for the timeline.
func clock(t time.Time) string { return t.Format("15:04:05.000") }
