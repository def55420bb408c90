package status

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// TestWatch: the liveness rule, list by list; leaseDuration 3 s.
func TestWatch(t *testing.T) {
	at := func(s float64) time.Time { return now.Add(time.Duration(s * float64(time.Second))) }
	// renew times are seconds on the node's clock, which need not agree
	// with this machine's; unset means no renewTime.
	const unset = -1
	type list struct {
		sent, received float64
		renew          map[string]float64
		done           bool // after this list
	}
	tests := []struct {
		name  string
		lists []list
		live  []string // at the end; the others watched are not
	}{
		{
			name: "every node renews: done as soon as the last is seen renewing",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100, "b": 100.5}, false},
				{0.2, 0.21, map[string]float64{"a": 101, "b": 100.5}, false},
				{0.4, 0.41, map[string]float64{"a": 101, "b": 101.5}, true},
			},
			live: []string{"a", "b"},
		},
		{
			name: "a renewal late by almost a lease duration is live",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100}, false},
				{1.4, 1.41, map[string]float64{"a": 100}, false},
				{2.9, 2.91, map[string]float64{"a": 102.9}, true},
			},
			live: []string{"a"},
		},
		{
			name: "no renewal for a lease duration: not live, done once the window is watched whole",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100, "b": 100}, false},
				{1, 1.01, map[string]float64{"a": 101, "b": 100}, false},
				{2.9, 2.91, map[string]float64{"a": 102, "b": 100}, false},
				{3.01, 3.02, map[string]float64{"a": 103, "b": 100}, true},
			},
			live: []string{"a"},
		},
		{
			name: "the window starts when the first list arrives, not when it was asked for",
			lists: []list{
				{0, 0.5, map[string]float64{"a": 100}, false},
				{3.2, 3.21, map[string]float64{"a": 100}, false},
				{3.5, 3.51, map[string]float64{"a": 100}, true},
			},
		},
		{
			name: "a clock far off is no matter: only changes count",
			lists: []list{
				{0, 0.01, map[string]float64{"a": -86400}, false},
				{1, 1.01, map[string]float64{"a": -86399}, true},
			},
			live: []string{"a"},
		},
		{
			name: "a renewTime that moves back still counts (the node's clock was stepped)",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100}, false},
				{1, 1.01, map[string]float64{"a": 50}, true},
			},
			live: []string{"a"},
		},
		{
			name: "a Lease deleted meanwhile is not live and not waited for",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100, "b": 100}, false},
				{1, 1.01, map[string]float64{"a": 101}, true},
			},
			live: []string{"a"},
		},
		{
			name: "a Lease deleted after renewing is not live",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100, "b": 100}, false},
				{0.2, 0.21, map[string]float64{"a": 100, "b": 101}, false},
				{1, 1.01, map[string]float64{"a": 101}, true},
			},
			live: []string{"a"},
		},
		{
			name: "a Lease that appears while watching must be seen renewing too",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100}, false},
				{1, 1.01, map[string]float64{"a": 101, "c": 5}, false},
				{2, 2.01, map[string]float64{"a": 102, "c": 6}, true},
			},
			live: []string{"a", "c"},
		},
		{
			name: "a Lease without a renewTime, then with one, is live",
			lists: []list{
				{0, 0.01, map[string]float64{"a": unset}, false},
				{1, 1.01, map[string]float64{"a": 101}, true},
			},
			live: []string{"a"},
		},
		{
			name: "a renewTime that goes away is no renewal",
			lists: []list{
				{0, 0.01, map[string]float64{"a": 100}, false},
				{1, 1.01, map[string]float64{"a": unset}, false},
			},
		},
		{
			name:  "no member Lease at all: nothing to watch",
			lists: []list{{0, 0.01, map[string]float64{}, true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWatch(3 * time.Second)
			watched := map[string]bool{}
			for i, l := range tt.lists {
				var listed []Listed
				for _, node := range slices.Sorted(maps.Keys(l.renew)) {
					ls := Listed{Node: node}
					if r := l.renew[node]; r != unset {
						ls.Renew = at(r)
					}
					listed = append(listed, ls)
					watched[node] = true
				}
				w.Observe(at(l.sent), at(l.received), listed)
				if got := w.Done(); got != l.done {
					t.Errorf("after list %d: done %v, want %v", i, got, l.done)
				}
			}
			got := map[string]bool{}
			for _, l := range w.Leases() {
				got[l.Node] = l.Live
			}
			for node := range watched {
				if want := slices.Contains(tt.live, node); got[node] != want {
					t.Errorf("node %s: live %v, want %v", node, got[node], want)
				}
			}
		})
	}
}

// TestWatchWait: lists every interval, the last one right at the window's end.
func TestWatchWait(t *testing.T) {
	w := NewWatch(3 * time.Second)
	w.Observe(now, now.Add(100*time.Millisecond), []Listed{{Node: "a", Renew: now}})
	for _, tc := range []struct {
		after time.Duration
		want  time.Duration
	}{
		{time.Second, 200 * time.Millisecond},
		{3 * time.Second, 100 * time.Millisecond},
		{3100 * time.Millisecond, 0},
		{4 * time.Second, 0},
	} {
		if got := w.Wait(now.Add(tc.after), 200*time.Millisecond); got != tc.want {
			t.Errorf("wait at +%v: %v, want %v", tc.after, got, tc.want)
		}
	}
}
