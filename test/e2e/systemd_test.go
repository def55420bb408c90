package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l2lb/l2lb/test/lab"
)

// notifySocket plays systemd's side of sd_notify: a unix datagram socket
// collecting every message.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func listenNotify(t *testing.T) (*notifySocket, string) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySocket{conn: conn, msgs: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return s, path
}

// next returns the next message that is not a watchdog ping, status update
// or timeout extension, counting the pings it skipped.
func (s *notifySocket) next(t *testing.T, pings *int) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			switch {
			case m == "WATCHDOG=1":
				*pings++
			case strings.HasPrefix(m, "STATUS="), strings.HasPrefix(m, "EXTEND_TIMEOUT_USEC="):
			default:
				return m
			}
		case <-timeout:
			t.Fatal("no sd_notify message within 30s")
		}
	}
}

// TestSystemdNotify checks the order of READY, RELOADING with
// MONOTONIC_USEC, READY, WATCHDOG and STOPPING across a start, a good
// reload, a refused reload and a stop.
func TestSystemdNotify(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 1})
	sock, path := listenNotify(t)
	node := l.Nodes[0]
	conf := writeConfig(t, node, defaultPools, "metrics: {address: \"127.0.0.1:9473\"}\n")
	// env execs l2lbd, so the daemon is the process systemd would watch.
	proc := node.Start(t, "env", "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=1000000",
		l2lbd, "run", "--config", conf)

	pings := 0
	if m := sock.next(t, &pings); !strings.HasPrefix(m, "READY=1\nSTATUS=config ok (digest ") {
		t.Fatalf("first message %q, want READY=1 with a status line", m)
	}

	// The metrics endpoint, on the node's own loopback.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := node.Exec(ctx, "curl", "-sS", "--noproxy", "*", "http://127.0.0.1:9473/metrics")
	// One processor unless GOMAXPROCS is set (the lab does not set it).
	for _, want := range []string{"l2lbd_ready 1\n", `l2lbd_info{node="node-0"`, "l2lbd_answering_ips 0\n", "go_sched_gomaxprocs_threads 1\n"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("metrics lack %q (%v):\n%s", want, err, out)
		}
	}

	reload := func(content string, wantStatus string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		proc.Signal(syscall.SIGHUP)
		m := sock.next(t, &pings)
		usec, ok := strings.CutPrefix(m, "RELOADING=1\nMONOTONIC_USEC=")
		if !ok {
			t.Fatalf("after SIGHUP got %q, want RELOADING=1 and MONOTONIC_USEC in one message", m)
		}
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		got, _ := strconv.ParseInt(usec, 10, 64)
		if now := ts.Nano() / 1000; got <= 0 || now-got > 5e6 || got > now {
			t.Errorf("MONOTONIC_USEC=%d, want CLOCK_MONOTONIC (now %d)", got, now)
		}
		if m := sock.next(t, &pings); !strings.HasPrefix(m, "READY=1\nSTATUS=") || !strings.Contains(m, wantStatus) {
			t.Fatalf("after the reload got %q, want READY=1 with status containing %q", m, wantStatus)
		}
	}
	good := strings.Replace(mustRead(t, conf), "log: {level: debug}", "log: {level: info}", 1)
	reload(good, "config ok (digest ")
	reload("pools: [\n", "config edit refused")

	time.Sleep(1500 * time.Millisecond) // watchdog pings at half of WATCHDOG_USEC
	proc.Signal(syscall.SIGTERM)
	if m := sock.next(t, &pings); m != "STOPPING=1" {
		t.Fatalf("after SIGTERM got %q, want STOPPING=1", m)
	}
	if pings < 2 {
		t.Errorf("%d watchdog pings, want several at 500ms intervals", pings)
	}
	if err := proc.Wait(10 * time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
}
