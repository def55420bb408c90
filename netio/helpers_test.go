package netio

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	"github.com/l2lb/l2lb/test/lab"
)

var (
	nodeMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}

	clientV4 = netip.MustParseAddr("198.51.100.2")
	ownedV4  = netip.MustParseAddr("198.51.100.200")
	freeV4   = netip.MustParseAddr("198.51.100.201")
	hostV4   = netip.MustParseAddr("198.51.100.202")
	clientV6 = netip.MustParseAddr("2001:db8:100::2")
	ownedV6  = netip.MustParseAddr("2001:db8:100::200")
	freeV6   = netip.MustParseAddr("2001:db8:100::201")
	hostV6   = netip.MustParseAddr("2001:db8:100::202")
)

// written is one frame a fakeConn was asked to send.
type written struct {
	frame []byte
	to    net.HardwareAddr
}

// fakeConn is a net.PacketConn carrying Ethernet frames in memory. Reads
// block on a channel, so under testing/synctest a reader is durably blocked.
type fakeConn struct {
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	mu  sync.Mutex
	out []written
}

var _ net.PacketConn = (*fakeConn)(nil)

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 16), closed: make(chan struct{})}
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case f := <-c.in:
		return copy(b, f), &packet.Addr{HardwareAddr: net.HardwareAddr(f[6:12])}, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, written{frame: append([]byte(nil), b...), to: append(net.HardwareAddr(nil), addr.(*packet.Addr).HardwareAddr...)})
	return len(b), nil
}

// sent returns and forgets what was written so far.
func (c *fakeConn) sent() []written {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.out
	c.out = nil
	return out
}

func (c *fakeConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fakeConn) LocalAddr() net.Addr { return &packet.Addr{HardwareAddr: nodeMAC} }

func (*fakeConn) SetDeadline(time.Time) error      { return nil }
func (*fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (*fakeConn) SetWriteDeadline(time.Time) error { return nil }

// testView is a view with ownedV4, ownedV6, hostV4 and hostV6 on eth0; the
// host has configured hostV4 and hostV6 itself.
func testView() *view {
	v := newView()
	v.desired.Store(&desiredSet{
		ownedV4: "eth0", ownedV6: "eth0",
		hostV4: "eth0", hostV6: "eth0",
	})
	v.host.Store(&addrSet{hostV4: {}, hostV6: {}})
	return v
}

// conflictLog collects reported conflicts.
type conflictLog struct {
	mu sync.Mutex
	c  []Conflict
}

func (l *conflictLog) report(c Conflict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.c = append(l.c, c)
}

func (l *conflictLog) all() []Conflict {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Conflict(nil), l.c...)
}

var eth0 = iface{name: "eth0", index: 2, mac: nodeMAC}

// The frame builders are the lab's (mdlayher/arp and mdlayher/ndp, the
// reference), failing the test instead of returning errors.

func arpFrame(t testing.TB, op arp.Operation, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr, ethDst net.HardwareAddr) []byte {
	t.Helper()
	b, err := lab.ARPFrame(op, sha, spa, tha, tpa, ethDst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ndpFrame(t testing.TB, ethSrc, ethDst net.HardwareAddr, src, dst netip.Addr, hop byte, m ndp.Message) []byte {
	t.Helper()
	b, err := lab.NDPFrame(ethSrc, ethDst, src, dst, hop, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	ipv6Frame    = lab.IPv6Frame
	multicastMAC = lab.MulticastMAC
	ns           = lab.Solicitation
)
