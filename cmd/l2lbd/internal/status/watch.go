package status

import (
	"time"

	"github.com/l2lb/l2lb/daemon/kube"
)

// Listed is one member Lease in a list the command read.
type Listed struct {
	Node   string
	Member kube.Member
	Renew  time.Time // its renewTime; zero if unset
}

// Watch judges liveness from successive lists of the member Leases as the
// daemons do: a node is live when its renewTime is seen to change within a
// lease duration, by this machine's clock. renewTimes are written by each
// node's clock and are only compared with each other, never with a clock
// of another machine, so a node whose clock is off is judged right. Every
// node renews once per renew interval, so a healthy cluster is judged in
// about that; only a node that renews late or not at all keeps the command
// watching, for at most a lease duration.
type Watch struct {
	window   time.Duration
	deadline time.Time // zero before the first list
	lastSent time.Time
	first    map[string]time.Time // renewTime in the first list that had the node
	leases   map[string]*Lease
	present  map[string]bool // in the latest list
	order    []string
}

// NewWatch watches for leaseDuration.
func NewWatch(leaseDuration time.Duration) *Watch {
	return &Watch{window: leaseDuration, first: map[string]time.Time{}, leases: map[string]*Lease{}}
}

// Observe takes a list requested at sent and received at received. The
// window starts when the first list is received and ends with the first
// list requested after it ended: what the lists show then spans at least
// a lease duration of the API server's state.
func (w *Watch) Observe(sent, received time.Time, list []Listed) {
	if w.deadline.IsZero() {
		w.deadline = received.Add(w.window)
	}
	w.lastSent = sent
	w.present = map[string]bool{}
	for _, l := range list {
		w.present[l.Node] = true
		s, known := w.leases[l.Node]
		if !known {
			s = &Lease{Node: l.Node}
			w.leases[l.Node] = s
			w.order = append(w.order, l.Node)
			w.first[l.Node] = l.Renew
		}
		s.Member = l.Member
		if !l.Renew.IsZero() && !l.Renew.Equal(w.first[l.Node]) {
			s.Live = true
		}
	}
	for node, s := range w.leases {
		if !w.present[node] { // deleted meanwhile: a graceful stop
			s.Live = false
		}
	}
}

// Done reports whether another list could change nothing: every Lease
// there is has been seen renewing, or the window has been watched whole.
func (w *Watch) Done() bool {
	if w.deadline.IsZero() {
		return false
	}
	if !w.lastSent.Before(w.deadline) {
		return true
	}
	for node := range w.present {
		if !w.leases[node].Live {
			return false
		}
	}
	return true
}

// Wait is how long to wait at now before the next list: every, but the
// last list is requested right when the window ends.
func (w *Watch) Wait(now time.Time, every time.Duration) time.Duration {
	return max(0, min(every, w.deadline.Sub(now)))
}

// Leases are the member Leases watched, in the order first seen.
func (w *Watch) Leases() []Lease {
	out := make([]Lease, 0, len(w.order))
	for _, node := range w.order {
		out = append(out, *w.leases[node])
	}
	return out
}
