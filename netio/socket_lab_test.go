package netio

import (
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
	"golang.org/x/sys/unix"
)

// TestLabSocketClose checks the lifecycle of the real socket: a reader
// blocked in the kernel returns net.ErrClosed within its poll interval of
// Close, the descriptor is closed once (and only once) the reader is gone,
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
	fdLink := "/proc/self/fd/" + strconv.Itoa(s.fd)
	want, _ := os.Readlink(fdLink)

	served := make(chan error, 1)
	go func() { served <- s.serveFrames(func([]byte) {}) }()
	// Let the reader block in recvmmsg.
	time.Sleep(3 * pollInterval / 2)
	if got, _ := os.Readlink(fdLink); got != want {
		t.Fatalf("descriptor %s is %q while the reader runs, want %q", fdLink, got, want)
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
		if d := time.Since(start); d > 3*pollInterval {
			t.Errorf("serveFrames returned %v after Close, want within %v", d, 3*pollInterval)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveFrames still running 5s after Close")
	}
	if got, _ := os.Readlink(fdLink); got == want {
		t.Errorf("descriptor %s (%s) still open after the reader left", fdLink, want)
	}
	if _, err := s.WriteTo(make([]byte, minFrameLen), nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close = %v, want net.ErrClosed", err)
	}
	if err := s.serveFrames(func([]byte) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("serveFrames after Close = %v, want net.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
