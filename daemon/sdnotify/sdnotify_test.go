package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// manager plays systemd's side: a unix datagram socket at a temporary path
// named by NOTIFY_SOCKET.
type manager struct {
	t    *testing.T
	conn *net.UnixConn
}

func listen(t *testing.T) *manager {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &manager{t: t, conn: conn}
}

// next returns the next datagram, waiting at most 5 s.
func (m *manager) next() string {
	m.t.Helper()
	if err := m.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		m.t.Fatal(err)
	}
	b := make([]byte, 4096)
	n, err := m.conn.Read(b)
	if err != nil {
		m.t.Fatalf("read notification: %v", err)
	}
	return string(b[:n])
}

// none checks that nothing more arrived.
func (m *manager) none() {
	m.t.Helper()
	if err := m.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		m.t.Fatal(err)
	}
	b := make([]byte, 4096)
	if n, err := m.conn.Read(b); err == nil {
		m.t.Errorf("unexpected notification %q", b[:n])
	}
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestMessages(t *testing.T) {
	tests := []struct {
		name string
		send func(*Notifier) error
		want string
	}{
		{"ready", func(n *Notifier) error { return n.Ready("") }, "READY=1"},
		{"ready with status", func(n *Notifier) error { return n.Ready("config ok; IPAM leader; 3 IPs here") },
			"READY=1\nSTATUS=config ok; IPAM leader; 3 IPs here"},
		{"status", func(n *Notifier) error { return n.Status("waiting for the API server") }, "STATUS=waiting for the API server"},
		// A newline must not smuggle in another assignment.
		{"status newlines", func(n *Notifier) error { return n.Status("config refused:\na\nREADY=1\n") },
			"STATUS=config refused:; a; READY=1"},
		{"stopping", (*Notifier).Stopping, "STOPPING=1"},
		{"watchdog", (*Notifier).Watchdog, "WATCHDOG=1"},
		{"extend timeout", func(n *Notifier) error { return n.ExtendTimeout(30 * time.Second) }, "EXTEND_TIMEOUT_USEC=30000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := listen(t)
			if err := tt.send(New()); err != nil {
				t.Fatalf("send: %v", err)
			}
			if got := m.next(); got != tt.want {
				t.Errorf("message:\nwant %q\ngot  %q", tt.want, got)
			}
			m.none()
		})
	}
}

func TestReloadingIsOneMessageWithMonotonicTime(t *testing.T) {
	m := listen(t)
	n := New()
	before := monotonicUsec(t)
	if err := n.Reloading(); err != nil {
		t.Fatalf("Reloading: %v", err)
	}
	after := monotonicUsec(t)
	got := m.next()
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("want one message RELOADING=1\\nMONOTONIC_USEC=<µs>, got %q", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC: %v", err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d, want within [%d, %d] (CLOCK_MONOTONIC around the call)", usec, before, after)
	}
	m.none()
}

// The sequence the daemon sends over its life, in order, as systemd sees it.
func TestLifecycleOrder(t *testing.T) {
	m := listen(t)
	n := New()
	steps := []func() error{
		func() error { return n.Ready("config ok") },
		n.Watchdog,
		n.Reloading,
		func() error { return n.Ready("config ok") },
		n.Reloading,
		func() error { return n.Ready("config refused, keeping the last good one") },
		n.Stopping,
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []string{"READY=1", "WATCHDOG=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}
	for i, w := range want {
		got := m.next()
		if first, _, _ := strings.Cut(got, "\n"); first != w {
			t.Errorf("message %d: want first line %q, got %q", i, w, got)
		}
	}
	m.none()
}

func TestOutsideSystemdDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	t.Setenv("WATCHDOG_USEC", "")
	os.Unsetenv("WATCHDOG_USEC")
	for _, n := range []*Notifier{New(), {}, nil} {
		for name, f := range map[string]func() error{
			"Ready":         func() error { return n.Ready("x") },
			"Reloading":     n.Reloading,
			"Status":        func() error { return n.Status("x") },
			"Stopping":      n.Stopping,
			"Watchdog":      n.Watchdog,
			"ExtendTimeout": func() error { return n.ExtendTimeout(time.Second) },
		} {
			if err := f(); err != nil {
				t.Errorf("%s without NOTIFY_SOCKET: %v, want nil", name, err)
			}
		}
		if d := n.WatchdogInterval(); d != 0 {
			t.Errorf("WatchdogInterval without WATCHDOG_USEC = %v, want 0", d)
		}
	}
}

func TestErrorWhenManagerIsGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	err := New().Ready("")
	if err == nil {
		t.Fatal("Ready to a missing socket: want an error, got nil")
	}
	if !errors.Is(err, unix.ENOENT) || !strings.HasPrefix(err.Error(), "sd_notify ready: ") {
		t.Errorf("error = %q, want ENOENT wrapped with the operation", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"half of WatchdogSec=30s", "30000000", "", 15 * time.Second},
		{"for this process", "30000000", self, 15 * time.Second},
		{"for another process", "30000000", strconv.Itoa(os.Getpid() + 1), 0},
		{"off", "", "", 0},
		{"malformed", "30s", "", 0},
		{"zero", "0", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			if got := New().WatchdogInterval(); got != tt.want {
				t.Errorf("WatchdogInterval() with WATCHDOG_USEC=%q WATCHDOG_PID=%q: want %v, got %v", tt.usec, tt.pid, tt.want, got)
			}
		})
	}
}
