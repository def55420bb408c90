package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/sdnotify"
)

// notifier is the part of sdnotify.Notifier the lifecycle uses; tests
// record the messages instead.
type notifier interface {
	Ready(status string) error
	Reloading() error
	Status(status string) error
	Stopping() error
	Watchdog() error
	ExtendTimeout(time.Duration) error
	WatchdogInterval() time.Duration
}

var _ notifier = (*sdnotify.Notifier)(nil)

// lifecycle tells systemd how the daemon is doing: READY once it can serve,
// RELOADING/READY around reloads, a STATUS line that follows every fact it
// reports, WATCHDOG pings while the decision loop is alive, and STOPPING.
type lifecycle struct {
	notify notifier
	log    *slog.Logger

	// The facts of the status line (and of the metrics).
	ready     atomic.Bool
	leader    atomic.Bool
	frozen    atomic.Bool
	wasFresh  atomic.Bool // the view has been fresh since the start
	answering atomic.Int64
	pools     atomic.Int64
	config    atomic.Pointer[string] // the config part of the status line
	loopAt    atomic.Int64           // unix nanoseconds of the placer's last decision

	reloadsOK, reloadsRefused atomic.Uint64
	decisions                 atomic.Uint64

	// mu orders the status messages: each one is computed from the latest
	// facts and sent while it is held, so an older line never follows a
	// newer one.
	mu   sync.Mutex
	sent string // the last status line sent
}

func newLifecycle(log *slog.Logger, cfg *config.Config) *lifecycle {
	l := &lifecycle{notify: sdnotify.New(), log: log}
	l.setConfig(cfg, fmt.Sprintf("config ok (digest %s)", cfg.Digest()))
	return l
}

func (l *lifecycle) setConfig(cfg *config.Config, s string) {
	l.config.Store(&s)
	l.pools.Store(int64(len(cfg.Pools)))
}

// statusFacts are what the STATUS line reports.
type statusFacts struct {
	Config string // config ok, or the refused edit
	Pools  int
	Frozen bool // the view of the cluster is stale
	// Starting: it has not been fresh since the start. A frozen view then
	// is no fault: the first renewal has not come back yet.
	Starting  bool
	Leader    bool
	Answering int
}

func (l *lifecycle) facts() statusFacts {
	f := statusFacts{Leader: l.leader.Load(), Frozen: l.frozen.Load(), Starting: !l.wasFresh.Load(), Answering: int(l.answering.Load()), Pools: int(l.pools.Load())}
	if c := l.config.Load(); c != nil {
		f.Config = *c
	}
	return f
}

// statusLine is the human line systemctl status shows.
func statusLine(f statusFacts) string {
	parts := []string{f.Config}
	if f.Pools == 0 {
		parts = append(parts, "no pools configured: serving no address")
	}
	switch {
	case f.Frozen && f.Starting:
		parts = append(parts, "starting: waiting for its first Lease renewal to come back")
	case f.Frozen:
		parts = append(parts, "frozen (view of the cluster stale): keeping its addresses, taking none over")
	}
	if f.Leader {
		parts = append(parts, "IPAM leader")
	} else {
		parts = append(parts, "not the IPAM leader")
	}
	parts = append(parts, fmt.Sprintf("answering for %d IPs here", f.Answering))
	return strings.Join(parts, "; ")
}

func (l *lifecycle) status() string { return statusLine(l.facts()) }

// report sends the status line if it changed since the last one sent. Before
// READY the line is not sent: "waiting for the Kubernetes API" stays.
func (l *lifecycle) report() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ready.Load() {
		return
	}
	if s := l.status(); s != l.sent {
		l.sent = s
		l.warn("STATUS", l.notify.Status(s))
	}
}

// setLeader records whether this node runs the IPAM allocator.
func (l *lifecycle) setLeader(lead bool) {
	if l.leader.Swap(lead) != lead {
		l.report()
	}
}

func (l *lifecycle) warn(what string, err error) {
	if err != nil {
		l.log.Warn("sd_notify failed", "message", what, "err", err)
	}
}

// connecting keeps systemd's start timeout from expiring while the API is
// unreachable (a node booting before its control plane), until ctx is done.
func (l *lifecycle) connecting(ctx context.Context) {
	const every = 10 * time.Second
	l.warn("STATUS", l.notify.Status("waiting for the Kubernetes API (see the log)"))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		l.warn("EXTEND_TIMEOUT_USEC", l.notify.ExtendTimeout(3*every))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serving sends READY=1 with the status line, once.
func (l *lifecycle) serving() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready.CompareAndSwap(false, true) {
		l.sent = l.status()
		l.warn("READY", l.notify.Ready(l.sent))
		l.log.Info("ready", "status", l.sent)
	}
}

// reloading precedes a reload systemd asked for (SIGHUP).
func (l *lifecycle) reloading() { l.warn("RELOADING", l.notify.Reloading()) }

// reloaded reports the outcome of a reload attempt; a requested one is
// always followed by READY=1, refused or not, so systemctl reload returns.
// startedOnLastGood records a start on the last good copy of the config
// because the file was refused: the status says so, as after a refused
// reload, but no reload is counted.
func (l *lifecycle) startedOnLastGood(c *config.Config, refused error) {
	l.setConfig(c, refusedText(c, refused))
}

func refusedText(c *config.Config, err error) string {
	return fmt.Sprintf("config edit refused, running digest %s: %s", c.Digest(), firstLine(err))
}

func (l *lifecycle) reloaded(r config.Reload) {
	if r.Err != nil {
		l.reloadsRefused.Add(1)
		l.setConfig(r.Config, refusedText(r.Config, r.Err))
	} else {
		l.reloadsOK.Add(1)
		l.setConfig(r.Config, fmt.Sprintf("config ok (digest %s)", r.Config.Digest()))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ready.Load() {
		return
	}
	l.sent = l.status()
	if r.Requested {
		l.warn("READY", l.notify.Ready(l.sent))
		return
	}
	l.warn("STATUS", l.notify.Status(l.sent))
}

// decided records a placer decision: the loop is alive, answers for n IPs,
// and its view is fresh or frozen. The first one means the daemon serves:
// config loaded, informers synced, responders running.
func (l *lifecycle) decided(n int, frozen bool) {
	l.decisions.Add(1)
	l.loopAt.Store(time.Now().UnixNano())
	l.answering.Store(int64(n))
	l.frozen.Store(frozen)
	if !frozen {
		l.wasFresh.Store(true)
	}
	l.serving()
	l.report()
}

// watchdog pings systemd at half its interval while the decision loop has
// run within maxQuiet, until ctx is done. An API outage does not stop the
// loop, so it never gets the daemon (and the data plane) restarted.
func (l *lifecycle) watchdog(ctx context.Context, maxQuiet time.Duration) {
	every := l.notify.WatchdogInterval()
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last := l.loopAt.Load()
		if !l.ready.Load() || time.Since(time.Unix(0, last)) < maxQuiet {
			l.warn("WATCHDOG", l.notify.Watchdog())
		} else {
			l.log.Error("decision loop stuck; withholding the watchdog ping", "last", time.Unix(0, last))
		}
	}
}

func (l *lifecycle) stopping() { l.warn("STOPPING", l.notify.Stopping()) }

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
