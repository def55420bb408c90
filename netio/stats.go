package netio

import (
	"sync"
	"sync/atomic"
)

// Counters are cumulative packet counts for one interface and family since
// the Announcer was created.
type Counters struct {
	// Requests is every valid ARP request or Neighbor Solicitation seen,
	// whoever it asked for.
	Requests uint64
	// Replies is every ARP reply or Neighbor Advertisement sent in answer.
	Replies uint64
	// Announcements is every gratuitous ARP or unsolicited Neighbor
	// Advertisement sent.
	Announcements uint64
	// Conflicts is every frame in which another MAC claimed an owned IP.
	Conflicts uint64
	// Stale is every request that would have been answered but had
	// waited in the socket longer than 200 ms: the process was stopped or
	// starved, and what it knew then may no longer hold.
	Stale uint64
	// Expired is every request that would have been answered but was
	// read after the answer deadline (Announcer.AnswerUntil).
	Expired uint64
}

// InterfaceStats are the counters of one interface, per family.
type InterfaceStats struct {
	IPv4, IPv6 Counters
}

// counters is the live, lock-free form of Counters the packet path updates.
type counters struct {
	requests, replies, announcements, conflicts atomic.Uint64
	stale, expired                              atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		Requests:      c.requests.Load(),
		Replies:       c.replies.Load(),
		Announcements: c.announcements.Load(),
		Conflicts:     c.conflicts.Load(),
		Stale:         c.stale.Load(),
		Expired:       c.expired.Load(),
	}
}

// ifaceCounters survive the sockets of an interface being re-opened, so the
// numbers stay monotonic for metrics.
type ifaceCounters struct {
	v4, v6 counters
}

// statsTable hands out the counters of an interface by name. The mutex is
// taken when a port opens and when Stats is called, never per packet.
type statsTable struct {
	mu sync.Mutex
	m  map[string]*ifaceCounters
}

func (t *statsTable) get(name string) *ifaceCounters {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*ifaceCounters)
	}
	c, ok := t.m[name]
	if !ok {
		c = new(ifaceCounters)
		t.m[name] = c
	}
	return c
}

func (t *statsTable) snapshot() map[string]InterfaceStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]InterfaceStats, len(t.m))
	for name, c := range t.m {
		out[name] = InterfaceStats{IPv4: c.v4.snapshot(), IPv6: c.v6.snapshot()}
	}
	return out
}
