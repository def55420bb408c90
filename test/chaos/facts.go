package chaos

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// condition is a fault state of a node, or of the API server.
type condition int

const (
	procDown    condition = iota // killed or terminated, not yet started again
	procStopped                  // SIGSTOP, not yet continued
	nicDown                      // the service NIC lost carrier or is set down
	cutOff                       // the node cannot reach the API server
	notReady                     // the Node's Ready condition is False
	excluded                     // the Node carries the exclusion label
	apiDown                      // the API server is stopped (node -1)
	badConfig                    // the node's config file is garbage
)

var conditionNames = [...]string{"process down", "process stopped", "service NIC down", "cut off from the API",
	"NotReady", "excluded", "API server down", "config garbage"}

func (c condition) String() string { return conditionNames[c] }

// disqualifies reports whether the condition keeps a node from answering
// for an address it does not already hold. The API server's outage does
// not: owners keep answering through it (it only delays takeovers, which
// the checker allows for), and a garbage config changes nothing.
func (c condition) disqualifies() bool { return c != apiDown && c != badConfig }

type interval struct {
	from, to time.Time // to is zero while the condition lasts
}

func (iv interval) covers(t time.Time) bool {
	return !t.Before(iv.from) && (iv.to.IsZero() || t.Before(iv.to))
}

type condKey struct {
	node int // -1 for the API server
	cond condition
}

// event is one thing the harness did, for the timeline.
type event struct {
	at   time.Time
	node int // -1: not about one node
	what string
}

// facts is the ground truth of the run, recorded by the harness as it
// injects faults and changes Services: what was true when.
type facts struct {
	mu       sync.Mutex
	nodes    []string // node names by index
	macs     []string // their service NICs' MACs, lower case
	conds    map[condKey][]interval
	services []*service
	events   []event
}

func newFacts(nodes, macs []string) *facts {
	return &facts{nodes: nodes, macs: macs, conds: map[condKey][]interval{}}
}

func (f *facts) logEvent(node int, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, event{at: time.Now(), node: node, what: fmt.Sprintf(format, args...)})
}

// begin and end record a condition starting or ending now.
func (f *facts) begin(node int, c condition) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := condKey{node, c}
	f.conds[k] = append(f.conds[k], interval{from: time.Now()})
}

func (f *facts) end(node int, c condition) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ivs := f.conds[condKey{node, c}]
	if n := len(ivs); n > 0 && ivs[n-1].to.IsZero() {
		ivs[n-1].to = time.Now()
	}
}

// apiOutages returns the API server's outages, an open one ending at end.
func (f *facts) apiOutages(end time.Time) []span {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.spans(condKey{-1, apiDown}, end)
}

// stopped returns each node's SIGSTOP intervals.
func (f *facts) stopped() map[int][]interval {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int][]interval{}
	for k, ivs := range f.conds {
		if k.cond == procStopped {
			out[k.node] = slices.Clone(ivs)
		}
	}
	return out
}

// spans returns the intervals of a condition, open ones ending at end. The
// caller holds f.mu.
func (f *facts) spans(k condKey, end time.Time) []span {
	var out []span
	for _, iv := range f.conds[k] {
		to := iv.to
		if to.IsZero() {
			to = end
		}
		out = append(out, span{iv.from, to})
	}
	return out
}

// conditionsAt names the disqualifying conditions of node n at t. The
// caller holds f.mu.
func (f *facts) conditionsAt(n int, t time.Time) []condition {
	var out []condition
	for k, ivs := range f.conds {
		if k.node == n && k.cond.disqualifies() && slices.ContainsFunc(ivs, func(iv interval) bool { return iv.covers(t) }) {
			out = append(out, k.cond)
		}
	}
	slices.Sort(out)
	return out
}

// sharers returns the Services holding ip at t. The caller holds f.mu.
func (f *facts) sharers(ip netip.Addr, t time.Time) []*service {
	var out []*service
	for _, s := range f.services {
		if slices.Contains(s.ips, ip) && s.holdsAt(t) {
			out = append(out, s)
		}
	}
	return out
}

// eligibility answers, after the run, which nodes could answer for an
// address when by the ground truth.
type eligibility struct {
	f *facts
	// disqualified holds each node's spans under a disqualifying
	// condition.
	disqualified [][]span
}

// eligibility snapshots the conditions; the caller holds f.mu.
func (f *facts) eligibility(end time.Time) *eligibility {
	e := &eligibility{f: f, disqualified: make([][]span, len(f.nodes))}
	for k := range f.conds {
		if k.node >= 0 && k.cond.disqualifies() {
			e.disqualified[k.node] = append(e.disqualified[k.node], f.spans(k, end)...)
		}
	}
	for n := range e.disqualified {
		e.disqualified[n] = union(e.disqualified[n])
	}
	return e
}

// at returns the nodes that may answer for ip at t, as a bit set: no
// disqualifying condition, and a ready endpoint of every Local Service
// sharing the address.
func (e *eligibility) at(ip netip.Addr, t time.Time) uint64 {
	sharers := e.f.sharers(ip, t)
	var set uint64
nodes:
	for n, dq := range e.disqualified {
		i, _ := slices.BinarySearchFunc(dq, t, func(s span, t time.Time) int { return s.to.Compare(t) })
		if i < len(dq) && !t.Before(dq[i].from) && t.Before(dq[i].to) {
			continue
		}
		for _, s := range sharers {
			if st := s.stateAt(t); st.local && !slices.Contains(st.endpoints, n) {
				continue nodes
			}
		}
		set |= 1 << n
	}
	return set
}

// breakpoints returns every time at which eligibility may change, sorted.
// The caller holds f.mu.
func (f *facts) breakpoints() []time.Time {
	var out []time.Time
	for _, ivs := range f.conds {
		for _, iv := range ivs {
			out = append(out, iv.from)
			if !iv.to.IsZero() {
				out = append(out, iv.to)
			}
		}
	}
	for _, s := range f.services {
		for _, st := range s.states {
			out = append(out, st.at)
		}
		if !s.assigned.IsZero() {
			out = append(out, s.assigned)
		}
		if !s.deleted.IsZero() {
			out = append(out, s.deleted)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return slices.Compact(out)
}

// nodeOfMAC returns the index of the node whose MAC mac is, or -1.
func (f *facts) nodeOfMAC(mac string) int {
	return slices.Index(f.macs, mac)
}

// name returns a node's name, or the MAC when it is no node's.
func (f *facts) nameOfMAC(mac string) string {
	if n := f.nodeOfMAC(mac); n >= 0 {
		return f.nodes[n]
	}
	return "unknown MAC " + mac
}
