package chaos

import (
	"slices"
	"testing"
	"time"
)

// TestScheduleFromSeed: a seed alone determines the faults, and the rules
// of the schedule hold: one node is always left alone, one node at most is
// cut off, and no harness API write falls in an outage.
func TestScheduleFromSeed(t *testing.T) {
	o := scheduleOptions{nodes: 3, duration: 10 * time.Minute, gapMin: time.Second, gapMax: 5 * time.Second, apiMax: time.Minute}
	a, b := newSchedule(7, o), newSchedule(7, o)
	if !slices.Equal(a, b) {
		t.Fatal("two schedules from seed 7 differ")
	}
	if c := newSchedule(8, o); slices.Equal(a, c) {
		t.Error("seeds 7 and 8 give the same schedule")
	}
	if len(counts(a)) != int(faultKinds) {
		t.Errorf("10 minutes drew only %v", counts(a))
	}
	for _, f := range a {
		if f.at+f.dur > o.duration {
			t.Errorf("%v ends after the run", f)
		}
		faulty := map[int]bool{}
		for _, g := range a {
			if g.node >= 0 && g.kind != badConfigEdit && g.at <= f.at && f.at < g.at+g.dur {
				faulty[g.node] = true
				if g != f && g.kind == isolate && f.kind == isolate {
					t.Errorf("two nodes cut off at once: %v and %v", f, g)
				}
			}
			if f.kind == apiOutage && g.kind.needsAPI() && (inOutage(f, g.at) || inOutage(f, g.at+g.dur)) {
				t.Errorf("%v falls in %v", g, f)
			}
		}
		if len(faulty) >= o.nodes {
			t.Errorf("at %v every node is under a fault", f.at)
		}
	}
}

// TestShortSeedsCoverEveryFault: the fixed seeds of the short run draw,
// between them, every kind of fault.
func TestShortSeedsCoverEveryFault(t *testing.T) {
	seen := map[faultKind]int{}
	for _, seed := range shortSeeds {
		for k, n := range counts(newSchedule(seed, short(seed).schedule())) {
			seen[k] += n
		}
	}
	for k := range faultKinds {
		if seen[k] == 0 {
			t.Errorf("the short seeds %v never draw %v", shortSeeds, k)
		}
	}
}
