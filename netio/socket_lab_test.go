package netio

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
	"golang.org/x/sys/unix"
)

// TestLabSocketClose checks the lifecycle of the real socket: a wait with
// input queued returns at once without allocating, a waiting reader
// returns net.ErrClosed at once on Close, the descriptor is closed once (and only once) the reader is gone,
// and nothing can be read or written after Close.
func TestLabSocketClose(t *testing.T) {
	n := lab.Network(t, 1)
	node := n.Nodes[0]
	var s *packetSocket
	if err := node.Do(func() error {
		ifi, err := net.InterfaceByName(node.Link)
		if err != nil {
			return err
		}
		s, err = openPacketSocket(iface{name: ifi.Name, index: ifi.Index, mac: ifi.HardwareAddr}, etherTypeARP, arpFilter)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.fd, &st); err != nil {
		t.Fatal(err)
	}
	// With input waiting (the eventfd, never read), a wait returns at
	// once, and allocates nothing.
	if _, err := unix.Write(s.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, s.wait); n != 0 {
		t.Errorf("a wait allocates %v times, want 0", n)
	}
	var drained [8]byte
	if _, err := unix.Read(s.wake, drained[:]); err != nil {
		t.Fatal(err)
	}
	// The packet socket, the Close eventfd and the epoll instance: each
	// is closed when the reader leaves.
	fds := []int{s.fd, s.wake}
	// Not waiter.Fd(): that would set the epoll File blocking.
	if err := s.waitConn.Control(func(fd uintptr) { fds = append(fds, int(fd)) }); err != nil {
		t.Fatal(err)
	}
	opened := make([]string, len(fds))
	for i, fd := range fds {
		opened[i], _ = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	}

	served := make(chan error, 1)
	go func() { served <- s.serveFrames(func([]byte, bool) {}) }()
	// Let the reader wait.
	time.Sleep(200 * time.Millisecond)
	for i, fd := range fds {
		if got, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); got != opened[i] || got == "" {
			t.Fatalf("descriptor %d is %q while the reader runs, want %q", fd, got, opened[i])
		}
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("serveFrames after Close = %v, want net.ErrClosed", err)
		}
		// Close wakes the reader; without that it would wait for a frame.
		if d := time.Since(start); d > time.Second {
			t.Errorf("serveFrames returned %v after Close, want at once", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveFrames still running 5s after Close")
	}
	for i, fd := range fds {
		if got, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); got == opened[i] {
			t.Errorf("descriptor %d (%s) still open after the reader left", fd, opened[i])
		}
	}
	if _, err := s.WriteTo(make([]byte, minFrameLen), nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close = %v, want net.ErrClosed", err)
	}
	if err := s.serveFrames(func([]byte, bool) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("serveFrames after Close = %v, want net.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// TestLabStaleRequests checks, on a real socket, that requests which waited
// in it while nobody read (as they do while the process is stopped) are
// not answered when the reader comes back, and that a fresh one is.
func TestLabStaleRequests(t *testing.T) {
	n := lab.Network(t, 1)
	node, client := n.Nodes[0], n.Client
	v := newView()
	v.desired.Store(&desiredSet{svc4: node.Link, svc6: node.Link})
	e := env{view: v, report: func(Conflict) {}}
	for _, tc := range []struct {
		name      string
		etherType uint16
		filter    []bpfInstruction
		target    netip.Addr
		request   func(*probe) []byte
		serve     func(iface, net.PacketConn, *counters) func() error
	}{
		{
			name: "ARP", etherType: etherTypeARP, filter: arpFilter, target: svc4,
			request: func(p *probe) []byte { return p.arpRequest(t, svc4) },
			serve: func(ifi iface, c net.PacketConn, st *counters) func() error {
				return newARPResponder(ifi, c, e, st).serve
			},
		},
		{
			name: "NDP", etherType: etherTypeIPv6, filter: ndpFilter, target: svc6,
			request: func(p *probe) []byte { return p.nsRequest(t, svc6) },
			serve: func(ifi iface, c net.PacketConn, st *counters) func() error {
				return newNDPResponder(ifi, c, e, st).serve
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *packetSocket
			var ifi iface
			if err := node.Do(func() error {
				i, err := net.InterfaceByName(node.Link)
				if err != nil {
					return err
				}
				ifi = iface{name: i.Name, index: i.Index, mac: i.HardwareAddr}
				s, err = openPacketSocket(ifi, tc.etherType, tc.filter)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			var stats counters
			serve := tc.serve(ifi, s, &stats)
			p := openProbe(t, client, tc.etherType)
			answers := 0
			// read counts the answers that reach the client until
			// want have or d has passed.
			read := func(want int, d time.Duration) {
				buf, oob := make([]byte, 2048), make([]byte, 256)
				for deadline := time.Now().Add(d); answers < want && time.Now().Before(deadline); {
					if f, outgoing, _, err := p.recv(buf, oob); err == nil && !outgoing && isAnswer(f, tc.target) {
						answers++
					}
				}
			}
			// The first socket that asks for receive timestamps
			// switches them on for the whole kernel from a deferred
			// work item; frames that arrive before it ran are stamped
			// when read, as if fresh.
			time.Sleep(100 * time.Millisecond)

			const queued = 3
			req := tc.request(p)
			for range queued {
				if err := p.send(req); err != nil {
					t.Fatal(err)
				}
			}
			// The pause: nobody reads.
			time.Sleep(500 * time.Millisecond)
			served := make(chan error, 1)
			go func() { served <- serve() }()
			defer func() {
				s.Close()
				select {
				case <-served:
				case <-time.After(5 * time.Second):
					t.Error("serve still running 5s after Close")
				}
			}()
			lab.WaitFor(t, 2*time.Second, "the queued requests to be read", func(context.Context) bool { return stats.requests.Load() == queued })
			read(1, 300*time.Millisecond)
			if got := stats.snapshot(); got.Stale != queued || got.Replies != 0 || answers != 0 {
				t.Errorf("after the pause: counters %+v and %d answers on the wire, want %d stale and no reply", got, answers, queued)
			}

			if err := p.send(req); err != nil {
				t.Fatal(err)
			}
			read(1, 2*time.Second)
			read(2, 300*time.Millisecond)
			if got := stats.snapshot(); got.Requests != queued+1 || got.Stale != queued || got.Replies != 1 || answers != 1 {
				t.Errorf("after a fresh request: counters %+v and %d answers on the wire, want 1 reply", got, answers)
			}
		})
	}
}

// TestLabGroupSockets checks that solicited-node groups spread over as many
// sockets as option memory requires, and that groups coming and going do
// not leave empty sockets open. A small net.core.optmem_max in the node's
// namespace makes a socket full after a few dozen groups.
func TestLabGroupSockets(t *testing.T) {
	n := lab.Network(t, 1)
	node := n.Nodes[0]
	ctx := ctxFor(t, 10*time.Second)
	if out, err := node.Exec(ctx, "sysctl", "-qw", "net.core.optmem_max=2048"); err != nil {
		t.Fatalf("sysctl: %v\n%s", err, out)
	}
	const perRound, rounds = 100, 5
	// Groups ff02::1:ff42:0 on, clear of the node's own.
	group := func(i int) netip.Addr {
		return solicitedNode(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: 0x42, 14: byte(i >> 8), 15: byte(i)}))
	}
	var g *ipv6Groups
	var first int
	err := node.Do(func() error {
		ifi, err := net.InterfaceByName(node.Link)
		if err != nil {
			return err
		}
		gj, err := linuxSystem{}.openGroups(iface{name: ifi.Name, index: ifi.Index, mac: ifi.HardwareAddr})
		if err != nil {
			return err
		}
		g = gj.(*ipv6Groups)
		for r := range rounds {
			for i := range perRound {
				if err := g.join(group(r*perRound + i)); err != nil {
					return err
				}
			}
			if r == 0 {
				first = len(g.fds)
			} else if len(g.fds) > first+1 {
				return fmt.Errorf("round %d: %d sockets for %d groups, want at most %d as in round 0", r, len(g.fds), perRound, first+1)
			}
			if r == rounds-1 {
				break
			}
			for i := range perRound {
				if err := g.leave(group(r*perRound + i)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if g != nil {
		defer g.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if first < 2 {
		t.Fatalf("%d groups fit one socket; the test needs them spread", perRound)
	}
	// The kernel holds exactly the groups of the last round.
	b, err := node.Exec(ctx, "cat", "/proc/net/igmp6")
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == node.Link && strings.HasPrefix(f[2], "ff0200000000000000000001ff") {
			held[f[2]] = true
		}
	}
	for r := range rounds {
		for i := range perRound {
			a := group(r*perRound + i).As16()
			if got, want := held[hex.EncodeToString(a[:])], r == rounds-1; got != want {
				t.Errorf("group %v of round %d joined = %v, want %v", group(r*perRound+i), r, got, want)
			}
		}
	}
	t.Logf("%d groups per round on %d sockets", perRound, first)
}
