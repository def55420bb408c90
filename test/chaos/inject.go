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
	for _, s := range steps(sched) {
		time.Sleep(time.Until(start.Add(s.at)))
		if s.end {
			h.undo(s.f)
		} else {
			h.do(s.f)
		}
		h.checkExits()
	}
}

func (h *harness) do(f fault) {
	d := h.nodeDaemon(f)
	switch f.kind {
	case kill, term, pause:
		sig := map[faultKind]syscall.Signal{kill: syscall.SIGKILL, term: syscall.SIGTERM, pause: syscall.SIGSTOP}[f.kind]
		if err := d.signal(sig); err != nil {
			h.t.Errorf("chaos: %v to %s: %v", sig, d.node.Name, err)
			return
		}
		h.facts.begin(d.index, map[faultKind]condition{kill: procDown, term: procDown, pause: procStopped}[f.kind])
		h.facts.logEvent(d.index, "%v to l2lbd (pid %d)", f.kind, d.current().PID)
	case carrier:
		h.l.SetCarrier(d.node, false)
		h.facts.begin(d.index, nicDown)
		h.facts.logEvent(d.index, "eth0 lost carrier")
	case linkDown:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.node.SetLinkDown(ctx, d.node.Link); err != nil {
			h.t.Fatalf("chaos: %v", err)
		}
		h.facts.begin(d.index, nicDown)
		h.facts.logEvent(d.index, "eth0 set down")
	case isolate:
		h.l.CutOff(d.node)
		h.facts.begin(d.index, cutOff)
		h.facts.logEvent(d.index, "cut off from the API server")
	case apiOutage:
		h.facts.begin(-1, apiDown)
		h.facts.logEvent(-1, "stopping the API server for %v", f.dur.Round(time.Millisecond))
		h.l.StopAPI()
	case nodeNotReady:
		h.l.SetNodeReady(d.node.Name, false)
		h.facts.begin(d.index, notReady)
		h.facts.logEvent(d.index, "Node NotReady")
	case exclude:
		h.label(d, true)
		h.facts.begin(d.index, excluded)
		h.facts.logEvent(d.index, "Node labelled %s", excludeLabel)
	case goodConfig:
		h.variant = (h.variant + 1 + f.variant%(len(configVariants)-1)) % len(configVariants)
		for _, d := range h.daemons {
			if !h.garbage[d.index] {
				h.must(d.writeConfig(configVariants[h.variant]))
			}
		}
		h.facts.logEvent(-1, "config of every node edited: %s", configVariants[h.variant].name)
	case badConfigEdit:
		h.must(d.writeGarbage(f.variant))
		h.garbage[d.index] = true
		h.facts.begin(d.index, badConfig)
		h.facts.logEvent(d.index, "config garbage written: %q", garbage[f.variant%len(garbage)])
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

func (h *harness) undo(f fault) {
	d := h.nodeDaemon(f)
	switch f.kind {
	case kill, term:
		p := d.current()
		if err := p.Wait(10 * time.Second); err != nil && !p.Exited() {
			h.report(violation{invariant: "4: daemons stop when told", at: time.Now(), node: d.node.Name,
				what: fmt.Sprintf("l2lbd on %s still running 10 s after %v", d.node.Name, f.kind)})
			p.Kill()
		}
		d.start(h.t, h.l2lbd)
		h.facts.end(d.index, procDown)
		h.facts.logEvent(d.index, "l2lbd started again (pid %d)", d.current().PID)
	case pause:
		h.must(d.signal(syscall.SIGCONT))
		h.facts.end(d.index, procStopped)
		h.facts.logEvent(d.index, "SIGCONT to l2lbd")
	case carrier:
		h.l.SetCarrier(d.node, true)
		h.facts.end(d.index, nicDown)
		h.facts.logEvent(d.index, "eth0 carrier back")
	case linkDown:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.must(d.node.SetLinkUp(ctx, d.node.Link))
		h.facts.end(d.index, nicDown)
		h.facts.logEvent(d.index, "eth0 set up")
	case isolate:
		h.l.Restore(d.node)
		h.facts.end(d.index, cutOff)
		h.facts.logEvent(d.index, "API server reachable again")
	case apiOutage:
		h.l.StartAPI()
		h.facts.end(-1, apiDown)
		h.facts.logEvent(-1, "API server ready again")
	case nodeNotReady:
		h.l.SetNodeReady(d.node.Name, true)
		h.facts.end(d.index, notReady)
		h.facts.logEvent(d.index, "Node Ready")
	case exclude:
		h.label(d, false)
		h.facts.end(d.index, excluded)
		h.facts.logEvent(d.index, "exclusion label removed")
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
