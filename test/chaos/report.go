package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// reporter prints a run's figures and explains its violations.
type reporter struct {
	h                     *harness
	sched                 []fault
	c                     *checker
	logs                  []logLine
	start, end, faultsEnd time.Time
	converged             time.Duration
	before, after         resources
	explained             int
}

// summary logs the figures the soak reports in BENCHMARKS.md.
func (r *reporter) summary() {
	h, t := r.h, r.h.t
	var kinds []string
	cs := counts(r.sched)
	for _, k := range sortedKinds(cs) {
		kinds = append(kinds, fmt.Sprintf("%v %d", k, cs[k]))
	}
	t.Logf("chaos: seed %d, %d nodes, faults for %v: %s", h.o.seed, h.o.nodes, r.faultsEnd.Sub(r.start).Round(time.Second), strings.Join(kinds, ", "))
	t.Logf("chaos: %d invariant violations; converged %v after the last fault (bound %v)",
		len(h.violations), r.converged.Round(time.Millisecond), h.tm.converge())
	s := r.c.stats
	t.Logf("chaos: longest unanswered window %v: %s; %d windows over the %v resolution",
		s.longestGap.Round(time.Millisecond), s.longestGapWhere, s.gaps, h.tm.resolution())
	t.Logf("chaos: longest two-MAC window %v%s; %d windows (bound %v)",
		s.longestTwoMAC.Round(time.Millisecond), prefixed(": ", s.longestTwoMACWhy), s.twoMACs, h.tm.twoMACs())
	if s.twoMACs > 0 {
		t.Logf("chaos: the longest two-MAC window, %s", r.timeline(s.longestTwoMACAt))
	}
	t.Logf("chaos: RSS after warm-up: %v", r.before)
	t.Logf("chaos: RSS at the end:    %v", r.after)
	elapsed := r.after.at.Sub(r.before.at).Seconds()
	var cpu []string
	for i, d := range h.daemons {
		cpu = append(cpu, fmt.Sprintf("%s %.2f%%", d.node.Name, 100*(r.after.cpu[i]-r.before.cpu[i]).Seconds()/elapsed))
	}
	cpu = append(cpu, fmt.Sprintf("test process (client, harness) %.2f%%", 100*(r.after.self-r.before.self).Seconds()/elapsed))
	t.Logf("chaos: CPU of a core, all processes of each daemon: %s", strings.Join(cpu, ", "))
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// maxExplained bounds the timelines printed: the first violations explain
// the rest, which are usually their consequences.
const maxExplained = 8

// explain prints a violation with the seed and a timeline: the faults, the
// daemons' decisions about the address (or the node), and which MAC
// answered when.
func (r *reporter) explain(v violation) {
	h := r.h
	h.t.Errorf("VIOLATION of invariant %s (seed %d): %s", v.invariant, h.o.seed, v.what)
	if r.explained >= maxExplained {
		return
	}
	r.explained++
	h.t.Log(r.timeline(v))
}

// timeline tells what happened around v.
func (r *reporter) timeline(v violation) string {
	h := r.h
	end := v.end
	if end.IsZero() {
		end = v.at
	}
	w := span{v.at.Add(-2*h.tm.lease - 5*time.Second), end.Add(3 * time.Second)}
	type entry struct {
		at   time.Time
		text string
	}
	var tl []entry
	in := func(t time.Time) bool { return !t.Before(w.from) && t.Before(w.to) }
	h.facts.mu.Lock()
	for _, e := range h.facts.events {
		if in(e.at) {
			who := "harness"
			if e.node >= 0 {
				who = "harness " + h.facts.nodes[e.node]
			}
			tl = append(tl, entry{e.at, fmt.Sprintf("%-22s %s", who, e.what)})
		}
	}
	h.facts.mu.Unlock()
	for _, l := range r.logs {
		if in(l.at) && (l.ip == v.ip || !l.ip.IsValid() && (v.node == "" || v.node == h.facts.nodes[l.node])) {
			tl = append(tl, entry{l.at, fmt.Sprintf("%-22s %s", "l2lbd "+h.facts.nodes[l.node], l.text)})
		}
	}
	if v.ip.IsValid() {
		log := h.prober.Log(v.ip)
		for _, run := range log.Replies {
			if run.First.Before(w.to) && run.Last.After(w.from) {
				tl = append(tl, entry{run.First, fmt.Sprintf("%-22s %s answered until %s (%d answers)",
					"client", h.facts.nameOfMAC(run.MAC), clock(run.Last), run.N)})
			}
		}
		for _, a := range log.Announcements {
			if in(a.At) {
				tl = append(tl, entry{a.At, fmt.Sprintf("%-22s announcement from %s", "client", h.facts.nameOfMAC(a.MAC))})
			}
		}
		for _, run := range log.Requests {
			if run.First.Before(w.to) && run.Last.After(w.from) && (run.First.After(w.from) || run.Last.Before(w.to)) {
				tl = append(tl, entry{run.First, fmt.Sprintf("%-22s asking for %s until %s", "client", v.ip, clock(run.Last))})
			}
		}
	}
	slices.SortStableFunc(tl, func(a, b entry) int { return a.at.Compare(b.at) })
	var b strings.Builder
	fmt.Fprintf(&b, "timeline %s to %s (seed %d):\n", clock(w.from), clock(w.to), h.o.seed)
	const maxLines = 250
	for i, e := range tl {
		if i == maxLines {
			fmt.Fprintf(&b, "  ... %d more\n", len(tl)-maxLines)
			break
		}
		fmt.Fprintf(&b, "  %s  %s\n", clock(e.at), e.text)
	}
	return b.String()
}
