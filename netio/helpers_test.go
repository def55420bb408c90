package netio

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
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

// arpFrame builds an ARP frame with mdlayher/arp, the reference.
func arpFrame(t testing.TB, op arp.Operation, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr, ethDst net.HardwareAddr) []byte {
	t.Helper()
	p, err := arp.NewPacket(op, sha, spa, tha, tpa)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	f := ethernet.Frame{Destination: ethDst, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ndpFrame builds a Neighbor Discovery frame with mdlayher/ndp, the
// reference, in an IPv6 header with the given hop limit.
func ndpFrame(t testing.TB, ethSrc, ethDst net.HardwareAddr, src, dst netip.Addr, hop byte, m ndp.Message) []byte {
	t.Helper()
	msg, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	return ipv6Frame(ethSrc, ethDst, src, dst, hop, msg)
}

func ipv6Frame(ethSrc, ethDst net.HardwareAddr, src, dst netip.Addr, hop byte, msg []byte) []byte {
	b := make([]byte, ethHeaderLen+ip6HeaderLen+len(msg))
	copy(b[0:6], ethDst)
	copy(b[6:12], ethSrc)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28)
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6], ip[7] = protoICMPv6, hop
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[40:], msg)
	return b
}

func multicastMAC(group netip.Addr) net.HardwareAddr {
	a := group.As16()
	return net.HardwareAddr{0x33, 0x33, a[12], a[13], a[14], a[15]}
}

func ns(target netip.Addr, sll net.HardwareAddr) *ndp.NeighborSolicitation {
	m := &ndp.NeighborSolicitation{TargetAddress: target}
	if sll != nil {
		m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: sll}}
	}
	return m
}
