package daemon

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/l2lb/l2lb/config"
)

// recorder is a notifier that keeps every message.
type recorder struct{ msgs []string }

func (r *recorder) Ready(s string) error              { r.add("READY " + s); return nil }
func (r *recorder) Reloading() error                  { r.add("RELOADING"); return nil }
func (r *recorder) Status(s string) error             { r.add("STATUS " + s); return nil }
func (r *recorder) Stopping() error                   { r.add("STOPPING"); return nil }
func (r *recorder) Watchdog() error                   { return nil }
func (r *recorder) ExtendTimeout(time.Duration) error { return nil }
func (r *recorder) WatchdogInterval() time.Duration   { return 0 }
func (r *recorder) add(m string)                      { r.msgs = append(r.msgs, m) }
func (r *recorder) take() []string                    { m := r.msgs; r.msgs = nil; return m }

var _ notifier = (*recorder)(nil)

func TestStatusLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    statusFacts
		want string
	}{
		{"follower", statusFacts{Config: "config ok (digest d)", Pools: 1},
			"config ok (digest d); not the IPAM leader; answering for 0 IPs here"},
		{"leader answering", statusFacts{Config: "config ok (digest d)", Pools: 2, Leader: true, Answering: 3},
			"config ok (digest d); IPAM leader; answering for 3 IPs here"},
		{"no pools", statusFacts{Config: "config ok (digest d)", Leader: true},
			"config ok (digest d); no pools configured: serving no address; IPAM leader; answering for 0 IPs here"},
		{"frozen", statusFacts{Config: "config ok (digest d)", Pools: 1, Frozen: true, Answering: 2},
			"config ok (digest d); frozen (view of the cluster stale): keeping its addresses, taking none over; not the IPAM leader; answering for 2 IPs here"},
		{"starting", statusFacts{Config: "config ok (digest d)", Pools: 1, Frozen: true, Starting: true},
			"config ok (digest d); starting: waiting for its first Lease renewal to come back; not the IPAM leader; answering for 0 IPs here"},
		{"fresh since the start", statusFacts{Config: "config ok (digest d)", Pools: 1, Starting: true},
			"config ok (digest d); not the IPAM leader; answering for 0 IPs here"},
		{"refused", statusFacts{Config: "config edit refused, running digest d: f.yaml:1:1: bad", Pools: 1},
			"config edit refused, running digest d: f.yaml:1:1: bad; not the IPAM leader; answering for 0 IPs here"},
	} {
		if got := statusLine(tc.f); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestStatusFollowsChanges: every fact the STATUS line reports sends a new
// line when it changes, and only then; nothing but READY goes out before
// the daemon serves.
func TestStatusFollowsChanges(t *testing.T) {
	pools := &config.Config{Pools: []config.Pool{{Name: "lan"}}}
	rec := &recorder{}
	l := &lifecycle{notify: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l.setConfig(pools, "config ok (digest a)")
	const tail = "; answering for 0 IPs here"

	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"leader before ready: nothing yet", func() { l.setLeader(true) }, nil},
		{"first decision, its first renewal not back yet: READY, starting", func() { l.decided(0, true) },
			[]string{"READY config ok (digest a); starting: waiting for its first Lease renewal to come back; IPAM leader" + tail}},
		{"fresh", func() { l.decided(0, false) },
			[]string{"STATUS config ok (digest a); IPAM leader" + tail}},
		{"same decision again: nothing", func() { l.decided(0, false) }, nil},
		{"leadership lost", func() { l.setLeader(false) },
			[]string{"STATUS config ok (digest a); not the IPAM leader" + tail}},
		{"leadership won", func() { l.setLeader(true) },
			[]string{"STATUS config ok (digest a); IPAM leader" + tail}},
		{"answering 2", func() { l.decided(2, false) },
			[]string{"STATUS config ok (digest a); IPAM leader; answering for 2 IPs here"}},
		{"frozen", func() { l.decided(2, true) },
			[]string{"STATUS config ok (digest a); frozen (view of the cluster stale): keeping its addresses, taking none over; IPAM leader; answering for 2 IPs here"}},
		{"fresh again", func() { l.decided(2, false) },
			[]string{"STATUS config ok (digest a); IPAM leader; answering for 2 IPs here"}},
		{"refused reload (SIGHUP)", func() {
			l.reloading()
			l.reloaded(config.Reload{Config: pools, Err: errors.New("f.yaml:3:1: bad\nmore"), Requested: true})
		}, []string{"RELOADING", "READY config edit refused, running digest " + pools.Digest() + ": f.yaml:3:1: bad; IPAM leader; answering for 2 IPs here"}},
		{"good edit to no pools, noticed on disk", func() {
			l.reloaded(config.Reload{Config: &config.Config{}, Changed: true})
		}, []string{"STATUS config ok (digest " + (&config.Config{}).Digest() + "); no pools configured: serving no address; IPAM leader; answering for 2 IPs here"}},
	}
	for _, s := range steps {
		s.do()
		if got := rec.take(); !slices.Equal(got, s.want) {
			t.Errorf("%s:\n got %q\nwant %q", s.name, got, s.want)
		}
	}
}

// TestStartedOnLastGood: a start on the last good copy says in its first
// status that the file was refused, and counts no reload.
func TestStartedOnLastGood(t *testing.T) {
	pools := &config.Config{Pools: []config.Pool{{Name: "lan"}}}
	rec := &recorder{}
	l := &lifecycle{notify: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l.setConfig(pools, "config ok (digest a)")
	l.startedOnLastGood(pools, errors.New("/etc/l2lb/l2lbd.yaml:3:17: bad\nmore"))
	l.decided(0, false)
	want := []string{"READY config edit refused, running digest " + pools.Digest() + ": /etc/l2lb/l2lbd.yaml:3:17: bad; not the IPAM leader; answering for 0 IPs here"}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if n := l.reloadsRefused.Load(); n != 0 {
		t.Errorf("refused reloads counted: %d, want 0", n)
	}
}
