package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/sdnotify"
)

// lifecycle tells systemd how the daemon is doing: READY once it can serve,
// RELOADING/READY around reloads, a STATUS line, WATCHDOG pings while the
// decision loop is alive, and STOPPING.
type lifecycle struct {
	notify *sdnotify.Notifier
	log    *slog.Logger

	ready     atomic.Bool
	leader    atomic.Bool
	answering atomic.Int64
	config    atomic.Pointer[string] // the config part of the status line
	loopAt    atomic.Int64           // unix nanoseconds of the placer's last decision

	reloadsOK, reloadsRefused atomic.Uint64
}

func newLifecycle(log *slog.Logger, cfg *config.Config) *lifecycle {
	l := &lifecycle{notify: sdnotify.New(), log: log}
	l.setConfig(fmt.Sprintf("config ok (digest %s)", cfg.Digest()))
	return l
}

func (l *lifecycle) setConfig(s string) { l.config.Store(&s) }

// status is the human line systemctl status shows.
func (l *lifecycle) status() string {
	role := "not the IPAM leader"
	if l.leader.Load() {
		role = "IPAM leader"
	}
	return fmt.Sprintf("%s; %s; answering for %d IPs here", *l.config.Load(), role, l.answering.Load())
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
	if l.ready.CompareAndSwap(false, true) {
		l.warn("READY", l.notify.Ready(l.status()))
		l.log.Info("ready", "status", l.status())
	}
}

// reloading precedes a reload systemd asked for (SIGHUP).
func (l *lifecycle) reloading() { l.warn("RELOADING", l.notify.Reloading()) }

// reloaded reports the outcome of a reload attempt; a requested one is
// always followed by READY=1, refused or not, so systemctl reload returns.
func (l *lifecycle) reloaded(r config.Reload) {
	if r.Err != nil {
		l.reloadsRefused.Add(1)
		l.setConfig(fmt.Sprintf("config edit refused, running digest %s: %s", r.Config.Digest(), firstLine(r.Err)))
	} else {
		l.reloadsOK.Add(1)
		l.setConfig(fmt.Sprintf("config ok (digest %s)", r.Config.Digest()))
	}
	if r.Requested && l.ready.Load() {
		l.warn("READY", l.notify.Ready(l.status()))
		return
	}
	l.warn("STATUS", l.notify.Status(l.status()))
}

// decided records a placer decision: the loop is alive and answers for n IPs.
// The first one means the daemon serves: config loaded, informers synced,
// responders running.
func (l *lifecycle) decided(n int) {
	l.loopAt.Store(time.Now().UnixNano())
	l.serving()
	if int64(n) != l.answering.Swap(int64(n)) && l.ready.Load() {
		l.warn("STATUS", l.notify.Status(l.status()))
	}
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
