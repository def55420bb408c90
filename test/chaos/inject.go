package chaos

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// excludeLabel keeps a node from answering for any LoadBalancer address.
const excludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// step is one end of a fault: its start, or its end (undoing it).
type step struct {
	at  time.Duration
	f   fault
	end bool
}

// steps orders the starts and ends of the faults in time.
func steps(sched []fault) []step {
	var out []step
	for _, f := range sched {
		out = append(out, step{at: f.at, f: f})
		if f.dur > 0 {
			out = append(out, step{at: f.at + f.dur, f: f, end: true})
		}
	}
	slices.SortStableFunc(out, func(a, b step) int { return int(a.at - b.at) })
	return out
}

// inject carries out the schedule from start, on the test's goroutine.
// A step that finds the harness late (a previous one blocked) runs at once;
// the facts record when things really happened.
func (h *harness) inject(start time.Time, sched []fault) {
	const progressEvery = 5 * time.Minute // a soak shows it is alive
	nextProgress := start.Add(progressEvery)
	all := steps(sched)
	for i, s := range all {
		time.Sleep(time.Until(start.Add(s.at)))
		if time.Now().After(nextProgress) {
			h.t.Logf("chaos: %v in, %d of %d fault steps done", time.Since(start).Round(time.Second), i, len(all))
			nextProgress = nextProgress.Add(progressEvery)
		}
		if s.end {
			h.undo(s.f)
		} else {
			h.do(s.f)
		}
		h.checkExits()
	}
}

// toggle is a fault that is a state of a node or of the API server: set
// at the fault's start, cleared at its end.
type toggle struct {
	cond       condition
	set, clear string // what the timeline says
	apply      func(h *harness, d *daemon, on bool)
}

var toggles = map[faultKind]toggle{
	pause: {procStopped, "SIGSTOP to l2lbd", "SIGCONT to l2lbd", func(h *harness, d *daemon, on bool) {
		sig := syscall.SIGCONT
		if on {
			sig = syscall.SIGSTOP
		}
		h.must(d.signal(sig))
	}},
	carrier: {nicDown, "eth0 lost carrier", "eth0 has carrier again", func(h *harness, d *daemon, on bool) {
		h.l.SetCarrier(d.node, !on)
	}},
	linkDown: {nicDown, "eth0 set down", "eth0 set up", func(h *harness, d *daemon, on bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		set := d.node.SetLinkUp
		if on {
			set = d.node.SetLinkDown
		}
		h.must(set(ctx, d.node.Link))
	}},
	isolate: {cutOff, "cut off from the API server", "API server reachable again", func(h *harness, d *daemon, on bool) {
		if on {
			h.l.CutOff(d.node)
		} else {
			h.l.Restore(d.node)
		}
	}},
	apiOutage: {apiDown, "API server stopped", "API server ready again", func(h *harness, _ *daemon, on bool) {
		if on {
			h.l.StopAPI()
		} else {
			h.l.StartAPI()
		}
	}},
	nodeNotReady: {notReady, "Node NotReady", "Node Ready", func(h *harness, d *daemon, on bool) {
		h.l.SetNodeReady(d.node.Name, !on)
	}},
	exclude: {excluded, "Node labelled " + excludeLabel, "exclusion label removed", func(h *harness, d *daemon, on bool) {
		h.label(d, on)
	}},
}

// do starts a fault. A condition is recorded as starting before it is
// applied and as ending after (the tolerances then count from no later
// than the fault itself).
func (h *harness) do(f fault) {
	d := h.nodeDaemon(f)
	if tg, ok := toggles[f.kind]; ok {
		h.facts.begin(f.node, tg.cond)
		h.facts.logEvent(f.node, "%s (for %v)", tg.set, f.dur.Round(time.Millisecond))
		tg.apply(h, d, true)
		return
	}
	switch f.kind {
	case kill, term:
		sig := syscall.SIGKILL
		if f.kind == term {
			sig = syscall.SIGTERM
		}
		h.checkExits() // an exit on its own is a violation, not the harness's error
		h.facts.begin(d.index, procDown)
		h.facts.logEvent(d.index, "%v to l2lbd (pid %d)", f.kind, d.current().PID)
		if err := d.signal(sig); err != nil && !d.current().Exited() {
			h.must(err)
		}
	case goodConfig:
		h.variant = (h.variant + 1 + f.variant%(len(configVariants)-1)) % len(configVariants)
		for _, d := range h.daemons {
			if !h.garbage[d.index] {
				h.must(d.writeConfig(configVariants[h.variant]))
			}
		}
		h.facts.logEvent(-1, "config of every node edited: %s", configVariants[h.variant].name)
	case badConfigEdit:
		h.facts.begin(d.index, badConfig)
		h.facts.logEvent(d.index, "config garbage written: %q", garbage[f.variant%len(garbage)])
		h.must(d.writeGarbage(f.variant))
		h.garbage[d.index] = true
	case createService:
		h.mix.createRandom()
	case deleteService:
		h.mix.deleteRandom()
	case changeService:
		h.mix.changeRandom()
	case moveEndpoints:
		h.mix.moveEndpoints()
	}
}

// undo ends a fault.
func (h *harness) undo(f fault) {
	d := h.nodeDaemon(f)
	if tg, ok := toggles[f.kind]; ok {
		tg.apply(h, d, false)
		h.facts.end(f.node, tg.cond)
		h.facts.logEvent(f.node, "%s", tg.clear)
		return
	}
	switch f.kind {
	case kill, term:
		p := d.current()
		if err := p.Wait(10 * time.Second); err != nil && !p.Exited() {
			h.report(violation{invariant: "4: daemons stop when told", at: time.Now(), node: d.node.Name,
				what: fmt.Sprintf("l2lbd on %s still running 10 s after %v (its goroutines are in its log)", d.node.Name, f.kind)})
			// SIGQUIT: the Go runtime writes every goroutine's stack to
			// the log before exiting, which shows what the stop waits on.
			p.Signal(syscall.SIGQUIT)
			if p.Wait(2*time.Second) != nil {
				p.Kill()
			}
		}
		d.start(h.t, h.l2lbd)
		h.facts.end(d.index, procDown)
		h.facts.logEvent(d.index, "l2lbd started again (pid %d)", d.current().PID)
	case badConfigEdit:
		h.must(d.writeConfig(configVariants[h.variant]))
		h.garbage[d.index] = false
		h.facts.end(d.index, badConfig)
		h.facts.logEvent(d.index, "config restored: %s", configVariants[h.variant].name)
	}
}

func (h *harness) nodeDaemon(f fault) *daemon {
	if f.node < 0 {
		return nil
	}
	return h.daemons[f.node]
}

// label adds or removes the exclusion label on d's Node.
func (h *harness) label(d *daemon, on bool) {
	value := "null"
	if on {
		value = `""`
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, excludeLabel, value)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := h.l.Client.CoreV1().Nodes().Patch(ctx, d.node.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	h.must(err)
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("chaos: %v", err)
	}
}

// checkExits reports daemons that exited on their own (invariant 4).
func (h *harness) checkExits() {
	for _, d := range h.daemons {
		if msg, ok := d.checkExit(); ok {
			h.report(violation{invariant: "4: no exit unless killed", at: time.Now(), node: d.node.Name, what: msg})
		}
	}
}
