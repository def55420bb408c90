package netio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Wire layout of an Ethernet frame carrying ARP for IPv4 over Ethernet
// (RFC 826), the only kind answered.
const (
	ethHeaderLen = 14
	arpLen       = 28
	arpFrameLen  = ethHeaderLen + arpLen
	// Replies are padded to the Ethernet minimum, as mdlayher/ethernet
	// does, rather than trusting every driver to pad.
	minFrameLen = 60

	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd

	arpRequest = 1
	arpReply   = 2
)

// iface is the interface a responder serves. Its MAC is fixed for the
// responder's life: a MAC change re-opens the responder.
type iface struct {
	name  string
	index int
	mac   net.HardwareAddr
}

// env is what responders share with their Announcer.
type env struct {
	view *view
	// report hands a conflict to the Announcer; it must not block.
	report func(Conflict)
}

// arpResponder answers ARP on one interface. Its packet path (serve, handle)
// runs on one goroutine; announce may run concurrently on another.
type arpResponder struct {
	ifi  iface
	conn net.PacketConn
	// replies is conn's batched reply path, if it has one.
	replies replyQueue
	env     env
	stats   *counters
	out     [minFrameLen]byte
	dst     packet.Addr
}

// listenARP opens the AF_PACKET socket an ARP responder reads from.
func listenARP(ifi iface) (net.PacketConn, error) {
	return listenPacket(ifi, etherTypeARP, arpFilter)
}

// newARPResponder serves ARP on ifi through conn, which delivers and takes
// whole Ethernet frames (as listenARP's socket does).
func newARPResponder(ifi iface, conn net.PacketConn, e env, stats *counters) *arpResponder {
	r := &arpResponder{ifi: ifi, conn: conn, env: e, stats: stats}
	r.replies, _ = conn.(replyQueue)
	return r
}

// serve reads and handles frames until the conn fails or is closed.
func (r *arpResponder) serve() error {
	return serveConn(r.conn, r.handle)
}

// handle acts on one received frame; stale means it waited in the socket
// too long to be answered. Anything that is not well-formed ARP for IPv4
// over Ethernet is ignored.
func (r *arpResponder) handle(f []byte, stale bool) {
	if len(f) < arpFrameLen || binary.BigEndian.Uint16(f[12:14]) != etherTypeARP {
		return
	}
	a := f[ethHeaderLen:arpFrameLen]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != etherTypeIPv4 || a[4] != 6 || a[5] != 4 {
		return
	}
	op := binary.BigEndian.Uint16(a[6:8])
	sha := a[8:14]
	spa := netip.AddrFrom4([4]byte(a[14:18]))
	tpa := netip.AddrFrom4([4]byte(a[24:28]))

	mine := bytes.Equal(sha, r.ifi.mac)
	// Any ARP whose sender claims an owned IP from another MAC is a
	// conflict: a reply, a gratuitous request or reply, or an ordinary
	// request from a host that has the IP configured (RFC 5227 2.4).
	if !mine && spa.IsValid() && !spa.IsUnspecified() && r.env.view.owns(spa, r.ifi.name) {
		r.stats.conflicts.Add(1)
		r.env.report(Conflict{IP: spa, MAC: bytes.Clone(sha), Sender: bytes.Clone(f[6:12]), Interface: r.ifi.name})
	}
	if op != arpRequest {
		return
	}
	r.stats.requests.Add(1)
	switch {
	case mine, sha[0]&1 != 0:
		// Our own frame, or a sender that cannot be answered by unicast.
		return
	case spa == tpa:
		// A gratuitous request from someone else: reported above, never
		// answered; yielding or defending is the daemon's call.
		return
	case !r.env.view.answers(tpa, r.ifi.name):
		return
	case withheld(stale, r.env.view, r.stats):
		return
	}
	putARP(r.out[:], arpReply, r.ifi.mac, tpa, sha, spa, sha)
	r.dst.HardwareAddr = sha
	sendReply(r.conn, r.replies, r.out[:], &r.dst, &r.stats.replies)
}

// putARP writes an ARP frame for IPv4 over Ethernet into b (at least
// arpFrameLen bytes) addressed to the Ethernet destination ethDst. Answers are built here
// without allocating; arp_test.go checks the bytes against mdlayher/arp.
func putARP(b []byte, op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr, ethDst net.HardwareAddr) {
	copy(b[0:6], ethDst)
	copy(b[6:12], sha)
	binary.BigEndian.PutUint16(b[12:14], etherTypeARP)
	a := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], etherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], sha)
	s, t := spa.As4(), tpa.As4()
	copy(a[14:18], s[:])
	copy(a[18:24], tha)
	copy(a[24:28], t[:])
}

// announcement is the gratuitous ARP request for ip, broadcast (sender =
// target = ip, target hardware address zero as RFC 5227 asks), the form
// every neighbour cache that has an entry for ip updates from.
func (r *arpResponder) announcement(ip netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, r.ifi.mac, ip, make(net.HardwareAddr, 6), ip)
	if err != nil {
		return nil, fmt.Errorf("build gratuitous ARP for %s: %w", ip, err)
	}
	payload, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("build gratuitous ARP for %s: %w", ip, err)
	}
	f := ethernet.Frame{
		Destination: ethernet.Broadcast,
		Source:      r.ifi.mac,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     payload,
	}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("build gratuitous ARP for %s: %w", ip, err)
	}
	return b, nil
}

// batchWriter sends many frames with one system call (the real socket):
// announcing thousands of addresses one write each would cost a system
// call, and a scheduler hand-off, per frame.
type batchWriter interface {
	WriteBatch(frames [][]byte) (int, error)
}

// sendAnnouncements sends frames, each carrying its own destination, in
// batches where conn can; stats counts those that went out.
func sendAnnouncements(conn net.PacketConn, stats *counters, frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	if bw, ok := conn.(batchWriter); ok {
		n, err := bw.WriteBatch(frames)
		stats.announcements.Add(uint64(n))
		return err
	}
	for _, f := range frames {
		if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])}); err != nil {
			return fmt.Errorf("send announcement: %w", err)
		}
		stats.announcements.Add(1)
	}
	return nil
}

// withheld reports whether an answer the packet path is about to send must
// not go out, and counts why: the request waited in the socket through a
// pause (stale), or the answer deadline has passed. Either way what this
// process knows may be out of date, and a requester that still wants an
// answer asks again. Only answers are withheld: a conflict in such a frame
// is still reported, since a peer that took an address over while this
// process was stopped is exactly what it must hear of when it resumes.
func withheld(stale bool, v *view, c *counters) bool {
	switch {
	case stale:
		c.stale.Add(1)
	case v.expired():
		c.expired.Add(1)
	default:
		return false
	}
	return true
}

// sendReply sends an answer from the packet path: with the other answers
// to the same batch of frames when conn batches (q is conn's replyQueue),
// else at once. sent counts the answers that went out.
func sendReply(conn net.PacketConn, q replyQueue, frame []byte, dst net.Addr, sent *atomic.Uint64) {
	if q != nil {
		q.queueReply(frame, sent)
		return
	}
	if _, err := conn.WriteTo(frame, dst); err != nil {
		// Nothing to do per packet; the read side notices a dead socket.
		return
	}
	sent.Add(1)
}

// serveConn feeds every frame conn receives to handle until conn fails or
// is closed, batched where conn can (the real socket), one ReadFrom at a
// time otherwise (test conns).
func serveConn(conn net.PacketConn, handle func(frame []byte, stale bool)) error {
	if s, ok := conn.(frameServer); ok {
		return s.serveFrames(handle)
	}
	return readLoop(conn, handle)
}

// readLoop feeds every frame read from conn to handle until reading fails.
// Frames longer than the buffer arrive truncated and fail validation; no
// frame that is answered comes near that size. A plain conn tells nothing
// of when a frame arrived, so every frame counts as received now.
func readLoop(conn net.PacketConn, handle func(frame []byte, stale bool)) error {
	buf := make([]byte, 2048)
	for {
		n, _, err := conn.ReadFrom(buf)
		if errors.Is(err, unix.ENETDOWN) {
			// Reported once when the link goes down; the socket
			// works again when it comes up, and the Announcer
			// re-opens it anyway.
			continue
		}
		if err != nil {
			return err
		}
		handle(buf[:n], false)
	}
}
