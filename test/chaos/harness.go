package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
)

// l2lbd is the daemon binary under test, built once by TestMain.
var l2lbd string

// options are one run's shape.
type options struct {
	seed     uint64
	nodes    int
	duration time.Duration // of the faults
	apiMax   time.Duration // longest API outage
}

// schedule is the shape of the run's schedule: a fault every 1 to 5 s.
func (o options) schedule() scheduleOptions {
	return scheduleOptions{nodes: o.nodes, duration: o.duration, gapMin: time.Second, gapMax: 5 * time.Second, apiMax: o.apiMax}
}

// harness is one run: the lab, the daemons, the client, the record.
type harness struct {
	t       *testing.T
	o       options
	tm      timings
	l       *lab.Lab
	l2lbd   string
	daemons []*daemon
	facts   *facts
	mix     *serviceMix
	prober  *lab.Prober
	variant int          // the valid config variant in force
	garbage map[int]bool // nodes whose config file is garbage now

	mu         sync.Mutex
	violations []violation
	logsKept   bool
}

func (h *harness) report(v violation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.violations = append(h.violations, v)
}

// run runs the whole chaos run of o and fails t on any violation.
func run(t *testing.T, o options) {
	tm := defaultTimings
	sched := newSchedule(o.seed, o.schedule())
	t.Logf("chaos: seed %d, %d nodes, %d faults over %v (replay: L2LB_CHAOS_SEED=%d)", o.seed, o.nodes, len(sched), o.duration, o.seed)

	l := lab.Start(t, lab.Options{Nodes: o.nodes})
	var names, macs []string
	for _, n := range l.Nodes {
		l.ManagementNIC(n) // carrier faults leave the API reachable
		names = append(names, n.Name)
		macs = append(macs, strings.ToLower(n.MAC.String()))
	}
	h := &harness{t: t, o: o, tm: tm, l: l, l2lbd: l2lbd, facts: newFacts(names, macs), garbage: map[int]bool{}}
	dir := t.TempDir()
	for i, n := range l.Nodes {
		d := newDaemon(i, n, dir)
		h.must(os.Mkdir(d.state, 0o700)) // as systemd's StateDirectory= does
		h.must(d.writeConfig(configVariants[0]))
		d.start(t, l2lbd)
		h.daemons = append(h.daemons, d)
	}
	// A run that fails for any reason (a harness error too) keeps the
	// logs; this runs before the temporary directory is removed.
	t.Cleanup(func() {
		if t.Failed() && !h.logsKept {
			h.keepLogs()
		}
	})
	h.prober = l.Net.StartProber(t, tm.probe)
	rng := rand.New(rand.NewPCG(o.seed, ^o.seed))
	h.mix = &serviceMix{l: l, facts: h.facts, rng: rng, maxV4: 14}
	ctx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	watch := &statusWatch{l: l, facts: h.facts, prober: h.prober, report: h.report}
	wg.Go(func() { watch.run(ctx) })
	defer func() { stopWatch(); wg.Wait() }()

	// The starting mix: every shape once, placed before any fault.
	for k := range svcKinds {
		h.mix.create(k)
	}
	h.waitAssigned(30 * time.Second)
	time.Sleep(2 * tm.lease) // settled: claims written, answering
	resources := h.measure()

	hostileCtx, stopHostile := context.WithCancel(context.Background())
	waitHostile := h.startHostile(hostileCtx)
	start := time.Now()
	h.inject(start, sched)
	faultsEnd := time.Now()
	stopHostile()
	hostile, hostileErr := waitHostile()
	h.facts.logEvent(-1, "last fault ended")
	converged, convergeErr := h.converge(faultsEnd, tm.converge())
	// A little more answering after convergence shows it holds.
	time.Sleep(2 * tm.lease)
	end := time.Now()
	stopWatch()
	wg.Wait()
	h.prober.Stop()
	h.checkExits()

	logs := h.readLogs()
	h.facts.mu.Lock()
	elig := h.facts.eligibility(end)
	h.facts.mu.Unlock()
	c := &checker{t: tm, facts: h.facts, elig: elig, outages: h.facts.apiOutages(end), logs: logs,
		addrs: h.prober.Addrs(), logOf: h.prober.Log, start: start, end: end}
	c.checkAll()
	h.violations = append(h.violations, c.violations...)
	h.violations = append(h.violations, checkConflictLines(logs, names, h.facts.stopped())...)
	h.violations = append(h.violations, checkAsInstalled(logs, names)...)
	h.checkHostile(hostile, hostileErr, faultsEnd)
	if convergeErr != nil {
		h.report(violation{invariant: "4: convergence", at: faultsEnd.Add(tm.converge()), what: convergeErr.Error()})
	}
	r := &reporter{h: h, sched: sched, c: c, logs: logs, start: start, end: end, faultsEnd: faultsEnd,
		converged: converged, before: resources, after: h.measure()}
	r.summary()
	for _, v := range h.violations {
		r.explain(v)
	}
	if len(h.violations) > 0 {
		t.Errorf("chaos: %d invariant violations with seed %d (replay: L2LB_CHAOS_SEED=%d)", len(h.violations), o.seed, o.seed)
		h.keepLogs()
	}
}

// waitAssigned waits until every Service has its addresses.
func (h *harness) waitAssigned(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		h.facts.mu.Lock()
		done := true
		for _, s := range h.facts.services {
			done = done && (!s.assigned.IsZero() || !s.live())
		}
		h.facts.mu.Unlock()
		if done {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("chaos: the starting Services got no addresses within %v", timeout)
}

// readLogs reads every daemon's decisions.
func (h *harness) readLogs() []logLine {
	var out []logLine
	for _, d := range h.daemons {
		lines, err := readLog(d.log, d.index)
		if err != nil {
			h.t.Errorf("chaos: %v", err)
		}
		out = append(out, lines...)
	}
	return out
}

// resources are the daemons' RSS and CPU at one moment, and the test
// process's CPU (the client and the harness).
type resources struct {
	at   time.Time
	rss  []int64 // kB, of the current processes
	pids []int
	cpu  []time.Duration
	self time.Duration
}

func (h *harness) measure() resources {
	r := resources{at: time.Now()}
	r.self, _ = lab.ProcCPU(os.Getpid())
	for _, d := range h.daemons {
		r.rss = append(r.rss, d.rssKB())
		r.pids = append(r.pids, d.current().PID)
		r.cpu = append(r.cpu, d.cpu())
	}
	return r
}

func (r resources) String() string {
	var parts []string
	for i := range r.rss {
		parts = append(parts, fmt.Sprintf("pid %d %.1f MiB", r.pids[i], float64(r.rss[i])/1024))
	}
	return strings.Join(parts, ", ")
}

// keepLogs copies the daemons' whole logs where they outlive the run (the
// timelines show only what is near each violation), and says where.
func (h *harness) keepLogs() {
	h.logsKept = true
	dir, err := os.MkdirTemp("", fmt.Sprintf("l2lb-chaos-%d-", h.o.seed))
	if err != nil {
		h.t.Logf("chaos: cannot keep the daemons' logs: %v", err)
		return
	}
	for _, d := range h.daemons {
		data, err := os.ReadFile(d.log)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, d.node.Name+".log"), data, 0o644)
		}
		if err != nil {
			h.t.Logf("chaos: cannot keep %s's log: %v", d.node.Name, err)
		}
	}
	h.t.Logf("chaos: the daemons' whole logs are in %s", dir)
}
