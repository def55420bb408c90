// Package sdnotify tells systemd how l2lbd is doing, over the sd_notify
// protocol (sd_notify(3)): readiness, reloads, a status line, watchdog pings
// and shutdown. It is a thin layer over github.com/coreos/go-systemd/v22/daemon
// that fixes l2lbd's messages in one place, so that the unit's Type=notify and
// WatchdogSec= and the daemon agree.
//
// Outside systemd (NOTIFY_SOCKET unset) every method does nothing and returns
// nil. Errors are returned for the caller to log; none of them is a reason to
// stop serving.
package sdnotify

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends state changes to the service manager. A nil or zero
// Notifier, and one made outside systemd, does nothing. It is safe for concurrent use:
// every message is one datagram on its own connection.
type Notifier struct {
	enabled  bool
	watchdog time.Duration
}

// New reads the environment systemd gives a Type=notify service
// (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID). It leaves the variables set:
// with NotifyAccess=main systemd ignores messages from any child process.
func New() *Notifier {
	n := &Notifier{enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	// A malformed WATCHDOG_USEC, or one meant for another PID, means no
	// watchdog for us, as in sd_watchdog_enabled(3).
	if d, err := daemon.SdWatchdogEnabled(false); err == nil {
		n.watchdog = d
	}
	return n
}

// Ready reports that start-up or a reload is complete (READY=1), with a
// status line in the same message when status is not empty.
func (n *Notifier) Ready(status string) error {
	if status == "" {
		return n.send("ready", daemon.SdNotifyReady)
	}
	return n.send("ready", daemon.SdNotifyReady+"\nSTATUS="+oneLine(status))
}

// Reloading reports that a reload has begun. RELOADING=1 and MONOTONIC_USEC=
// travel in one message, as systemd (253 and later, for Type=notify-reload)
// requires to tell this reload from an earlier one; follow it with Ready,
// also when the new configuration was refused.
func (n *Notifier) Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sd_notify reloading: read CLOCK_MONOTONIC: %w", err)
	}
	usec := ts.Nano() / int64(time.Microsecond)
	return n.send("reloading", fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, usec))
}

// Status sets the line `systemctl status` shows (STATUS=). Newlines would
// end the assignment and start another one, so they become "; ".
func (n *Notifier) Status(status string) error {
	return n.send("status", "STATUS="+oneLine(status))
}

// Stopping reports that shutdown has begun (STOPPING=1).
func (n *Notifier) Stopping() error {
	return n.send("stopping", daemon.SdNotifyStopping)
}

// Watchdog pings the service manager's watchdog (WATCHDOG=1). Call it every
// WatchdogInterval, and only while the daemon is healthy: missing pings are
// how a stuck daemon gets restarted.
func (n *Notifier) Watchdog() error {
	return n.send("watchdog", daemon.SdNotifyWatchdog)
}

// ExtendTimeout asks for d more time to finish the current start-up, reload
// or shutdown (EXTEND_TIMEOUT_USEC=). A daemon that is waiting for the API
// server sends it every d/2 or so, so that TimeoutStartSec= catches a hung
// daemon but not an unreachable control plane.
func (n *Notifier) ExtendTimeout(d time.Duration) error {
	return n.send("extend timeout", fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

// WatchdogInterval is how often to call Watchdog: half of WatchdogSec=, as
// sd_watchdog_enabled(3) recommends, or 0 when the watchdog is off.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog / 2
}

func (n *Notifier) send(op, msg string) error {
	if n == nil || !n.enabled {
		return nil
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		return fmt.Errorf("sd_notify %s: %w", op, err)
	}
	return nil
}

func oneLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return strings.ReplaceAll(s, "\n", "; ")
}
