package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// faultKind is one kind of fault the schedule draws.
type faultKind int

const (
	kill          faultKind = iota // SIGKILL, start again later
	term                           // SIGTERM, start again once it has exited
	pause                          // SIGSTOP, SIGCONT after 1-10 s
	carrier                        // the service NIC loses carrier
	linkDown                       // the service NIC is set down
	isolate                        // cut off from the API
	apiOutage                      // the API server is stopped
	nodeNotReady                   // the Node's Ready condition goes False
	exclude                        // the Node gets the exclusion label
	goodConfig                     // every node's config switches to another valid variant
	badConfigEdit                  // one node's config becomes garbage for a while
	createService
	deleteService
	changeService
	moveEndpoints
	faultKinds
)

var faultNames = [...]string{"SIGKILL", "SIGTERM", "SIGSTOP", "carrier loss", "NIC down", "cut off", "API outage",
	"NotReady", "excluded", "config edit", "garbage config", "Service created", "Service deleted", "Service changed",
	"endpoints moved"}

func (k faultKind) String() string { return faultNames[k] }

// weights say how often each kind is drawn.
var weights = [faultKinds]int{
	kill: 4, term: 4, pause: 4, carrier: 3, linkDown: 2, isolate: 3, apiOutage: 2,
	nodeNotReady: 2, exclude: 2, goodConfig: 2, badConfigEdit: 2,
	createService: 2, deleteService: 2, changeService: 3, moveEndpoints: 4,
}

// slot groups the faults that cannot overlap on one node.
type slot int

const (
	slotNone    slot = iota
	slotProcess      // kill, term, pause
	slotNet          // carrier, link down, cut off
	slotNode         // NotReady, excluded
	slotConfig       // garbage config (a restart meanwhile runs on the last good copy)
)

func (k faultKind) slot() slot {
	switch k {
	case kill, term, pause:
		return slotProcess
	case badConfigEdit:
		return slotConfig
	case carrier, linkDown, isolate:
		return slotNet
	case nodeNotReady, exclude:
		return slotNode
	}
	return slotNone
}

// needsAPI: the fault's start and end are API writes by the harness.
func (k faultKind) needsAPI() bool {
	return k == nodeNotReady || k == exclude || k >= createService
}

// fault is one scheduled fault: at offset at from the start of the faults,
// lasting dur (0 for instant ones), on node (-1 for none), with variant
// choosing among its forms.
type fault struct {
	kind    faultKind
	at, dur time.Duration
	node    int
	variant int
}

func (f fault) String() string {
	s := fmt.Sprintf("%v +%v %v", f.kind, f.at.Round(time.Millisecond), f.dur.Round(time.Millisecond))
	if f.node >= 0 {
		s += fmt.Sprintf(" node %d", f.node)
	}
	return s
}

// scheduleOptions shape a schedule.
type scheduleOptions struct {
	nodes    int
	duration time.Duration // faults start and end within it
	gapMin   time.Duration // between fault starts
	gapMax   time.Duration
	apiMax   time.Duration // longest API outage
}

// newSchedule draws the faults of a run from its seed alone. Node faults
// never touch every node at once (one is always left alone, so that an
// address has somewhere to go), at most one node is cut off at a time, the
// harness's own API writes never fall in an outage, and every fault ends
// within the duration.
func newSchedule(seed uint64, o scheduleOptions) []fault {
	rng := rand.New(rand.NewPCG(seed, seed^0x6c326c62))
	var total int
	for _, w := range weights {
		total += w
	}
	var out []fault
	for at := o.gapMin; ; at += o.gapMin + time.Duration(rng.Int64N(int64(o.gapMax-o.gapMin))) {
		k := draw(rng, total)
		f := fault{kind: k, at: at, node: -1, variant: rng.IntN(1 << 16), dur: duration(rng, k, o)}
		if at+f.dur+time.Second > o.duration {
			if at > o.duration {
				return out
			}
			continue
		}
		if !fits(out, &f, rng, o.nodes) {
			continue
		}
		out = append(out, f)
	}
}

func draw(rng *rand.Rand, total int) faultKind {
	r := rng.IntN(total)
	for k, w := range weights {
		if r < w {
			return faultKind(k)
		}
		r -= w
	}
	panic("unreachable")
}

func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// duration draws how long a fault lasts.
func duration(rng *rand.Rand, k faultKind, o scheduleOptions) time.Duration {
	switch k {
	case kill:
		return uniform(rng, 500*time.Millisecond, 5*time.Second) // until the restart
	case term:
		return uniform(rng, time.Second, 4*time.Second)
	case pause:
		return uniform(rng, time.Second, 10*time.Second)
	case carrier, linkDown, nodeNotReady, exclude:
		return uniform(rng, 2*time.Second, 10*time.Second)
	case isolate:
		return uniform(rng, 3*time.Second, 10*time.Second)
	case apiOutage:
		return uniform(rng, 5*time.Second, o.apiMax)
	case badConfigEdit:
		return uniform(rng, 2*time.Second, 8*time.Second)
	}
	return 0
}

// fits places f among the faults so far, choosing its node; false when it
// cannot go anywhere.
func fits(sched []fault, f *fault, rng *rand.Rand, nodes int) bool {
	overlaps := func(g fault) bool { return f.at < g.at+g.dur+time.Second && g.at < f.at+f.dur+time.Second }
	// API writes of the harness (at a fault's start and end) never fall
	// in an outage, nor an outage on them.
	for _, g := range sched {
		if g.kind == apiOutage && f.kind == apiOutage && overlaps(g) {
			return false
		}
		if g.kind == apiOutage && f.kind.needsAPI() && (inOutage(g, f.at) || inOutage(g, f.at+f.dur)) {
			return false
		}
		if f.kind == apiOutage && g.kind.needsAPI() && (inOutage(*f, g.at) || inOutage(*f, g.at+g.dur)) {
			return false
		}
	}
	s := f.kind.slot()
	if s == slotNone {
		return true
	}
	// Nodes under a fault (other than a garbage config) in f's time: one
	// is always left alone.
	faulty := map[int]bool{}
	for _, g := range sched {
		if overlaps(g) && g.node >= 0 && g.kind != badConfigEdit {
			faulty[g.node] = true
		}
	}
	var free []int
	for n := range nodes {
		busy := false
		for _, g := range sched {
			if overlaps(g) && (g.node == n && g.kind.slot() == s || g.kind == isolate && f.kind == isolate) {
				busy = true // one fault per slot; one node cut off at a time
			}
		}
		wouldBe := len(faulty)
		if !faulty[n] && f.kind != badConfigEdit {
			wouldBe++
		}
		if !busy && wouldBe < nodes {
			free = append(free, n)
		}
	}
	if len(free) == 0 {
		return false
	}
	f.node = free[rng.IntN(len(free))]
	return true
}

// inOutage reports whether t falls in the outage o, or within a second of it.
func inOutage(o fault, t time.Duration) bool {
	return t >= o.at-time.Second && t <= o.at+o.dur+time.Second
}

// counts tallies the faults by kind, for the report.
func counts(sched []fault) map[faultKind]int {
	out := map[faultKind]int{}
	for _, f := range sched {
		out[f.kind]++
	}
	return out
}

func sortedKinds(m map[faultKind]int) []faultKind {
	var ks []faultKind
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
