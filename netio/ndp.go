package netio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
)

// Wire layout of the Neighbor Discovery frames handled (RFC 4861 4.3, 4.4).
const (
	ip6HeaderLen = 40
	protoICMPv6  = 58

	icmpNeighborSolicitation  = 135
	icmpNeighborAdvertisement = 136

	// type, code, checksum, flags/reserved, target address
	neighborMsgLen = 4 + 4 + 16
	// one link-layer address option for a 6-byte MAC
	llOptionLen = 8
	naFrameLen  = ethHeaderLen + ip6HeaderLen + neighborMsgLen + llOptionLen

	optSourceLL = 1
	optTargetLL = 2

	naFlagSolicited = 0x40
	naFlagOverride  = 0x20
)

var (
	allNodes    = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01})
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// ndpResponder answers Neighbor Solicitations on one interface. Its packet
// path (serve, handle) runs on one goroutine; announce may run concurrently
// on another.
type ndpResponder struct {
	ifi  iface
	conn net.PacketConn
	// replies is conn's batched reply path, if it has one.
	replies replyQueue
	env     env
	stats   *counters
	out     [naFrameLen]byte
	dst     packet.Addr
}

// listenNDP opens the AF_PACKET socket an NDP responder reads from.
func listenNDP(ifi iface) (net.PacketConn, error) {
	return listenPacket(ifi, etherTypeIPv6, ndpFilter)
}

// newNDPResponder serves NDP on ifi through conn, which delivers and takes
// whole Ethernet frames (as listenNDP's socket does).
func newNDPResponder(ifi iface, conn net.PacketConn, e env, stats *counters) *ndpResponder {
	r := &ndpResponder{ifi: ifi, conn: conn, env: e, stats: stats}
	r.replies, _ = conn.(replyQueue)
	return r
}

// serve reads and handles frames until the conn fails or is closed.
func (r *ndpResponder) serve() error {
	return serveConn(r.conn, r.handle)
}

// neighborMsg is a validated Neighbor Solicitation or Advertisement. Its
// slices point into the received frame.
type neighborMsg struct {
	typ      byte
	flags    byte
	src, dst netip.Addr
	target   netip.Addr
	ethSrc   []byte
	ll       []byte // source (NS) or target (NA) link-layer address option, if any
}

// parseNeighbor validates f as RFC 4861 7.1.1 / 7.1.2 require of a Neighbor
// Solicitation or Advertisement carried directly in IPv6 over Ethernet.
func parseNeighbor(f []byte) (neighborMsg, bool) {
	var m neighborMsg
	if len(f) < ethHeaderLen+ip6HeaderLen+neighborMsgLen || binary.BigEndian.Uint16(f[12:14]) != etherTypeIPv6 {
		return m, false
	}
	ip := f[ethHeaderLen:]
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 {
		return m, false
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < neighborMsgLen || len(ip) < ip6HeaderLen+plen {
		return m, false
	}
	msg := ip[ip6HeaderLen : ip6HeaderLen+plen]
	m.typ = msg[0]
	if (m.typ != icmpNeighborSolicitation && m.typ != icmpNeighborAdvertisement) || msg[1] != 0 {
		return m, false
	}
	m.src = netip.AddrFrom16([16]byte(ip[8:24]))
	m.dst = netip.AddrFrom16([16]byte(ip[24:40]))
	if m.src.IsMulticast() {
		// Never a valid source (RFC 4291 2.7); answering it would
		// send a solicited advertisement to a group.
		return m, false
	}
	if icmp6Checksum(m.src, m.dst, msg) != 0 {
		return m, false
	}
	m.flags = msg[4]
	m.target = netip.AddrFrom16([16]byte(msg[8:24]))
	if m.target.IsMulticast() {
		return m, false
	}
	want := byte(optSourceLL)
	if m.typ == icmpNeighborAdvertisement {
		want = optTargetLL
		// A solicited advertisement is never multicast.
		if m.flags&naFlagSolicited != 0 && m.dst.IsMulticast() {
			return m, false
		}
	}
	for opts := msg[neighborMsgLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || len(opts) < int(opts[1])*8 {
			return m, false
		}
		n := int(opts[1]) * 8
		if opts[0] == want && n == llOptionLen {
			m.ll = opts[2:8]
		}
		opts = opts[n:]
	}
	if m.typ == icmpNeighborSolicitation && m.src.IsUnspecified() {
		// Duplicate address detection: sent to the solicited-node
		// group and without a source link-layer option.
		if !isSolicitedNode(m.dst) || m.ll != nil {
			return m, false
		}
	}
	m.ethSrc = f[6:12]
	return m, true
}

// handle acts on one received frame; stale means it waited in the socket
// too long to be answered. Anything malformed is ignored.
func (r *ndpResponder) handle(f []byte, stale bool) {
	m, ok := parseNeighbor(f)
	if !ok {
		return
	}
	// The MAC a neighbour claims: the link-layer option, or for want of
	// it the frame's source.
	claimed := m.ll
	if claimed == nil {
		claimed = m.ethSrc
	}
	mine := bytes.Equal(claimed, r.ifi.mac)
	switch m.typ {
	case icmpNeighborAdvertisement:
		if !mine && r.env.view.owns(m.target, r.ifi.name) {
			r.conflict(m.target, claimed, m.ethSrc)
		}
		return
	case icmpNeighborSolicitation:
		r.stats.requests.Add(1)
		// A solicitation sourced from an owned IP means another host
		// uses it.
		if !mine && !m.src.IsUnspecified() && r.env.view.owns(m.src, r.ifi.name) {
			r.conflict(m.src, claimed, m.ethSrc)
		}
	}
	if mine || claimed[0]&1 != 0 || !r.env.view.answers(m.target, r.ifi.name) {
		return
	}
	if withheld(stale, r.env.view, r.stats) {
		return
	}
	var (
		dst    = m.src
		ethDst = net.HardwareAddr(claimed)
		flags  = byte(naFlagSolicited | naFlagOverride)
	)
	if m.src.IsUnspecified() {
		// RFC 4861 7.2.4: a DAD probe for an address in use is answered
		// to all-nodes, Solicited clear, so the prober gives it up.
		dst, ethDst, flags = allNodes, allNodesMAC, naFlagOverride
	}
	putNA(r.out[:], r.ifi.mac, ethDst, m.target, dst, flags)
	r.dst.HardwareAddr = ethDst
	sendReply(r.conn, r.replies, r.out[:], &r.dst, &r.stats.replies)
}

func (r *ndpResponder) conflict(ip netip.Addr, mac, sender []byte) {
	r.stats.conflicts.Add(1)
	r.env.report(Conflict{IP: ip, MAC: bytes.Clone(mac), Sender: bytes.Clone(sender), Interface: r.ifi.name})
}

// putNA writes into b (naFrameLen bytes) a Neighbor Advertisement for target
// with the target link-layer option mac, sourced from target itself. Answers
// are built here without allocating; ndp_test.go checks the bytes against
// mdlayher/ndp.
func putNA(b []byte, mac, ethDst net.HardwareAddr, target, dst netip.Addr, flags byte) {
	copy(b[0:6], ethDst)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	msgLen := neighborMsgLen + llOptionLen
	binary.BigEndian.PutUint32(ip[0:4], 6<<28)
	binary.BigEndian.PutUint16(ip[4:6], uint16(msgLen))
	ip[6], ip[7] = protoICMPv6, 255
	t, d := target.As16(), dst.As16()
	copy(ip[8:24], t[:])
	copy(ip[24:40], d[:])
	msg := ip[ip6HeaderLen : ip6HeaderLen+msgLen]
	msg[0], msg[1], msg[2], msg[3] = icmpNeighborAdvertisement, 0, 0, 0
	msg[4], msg[5], msg[6], msg[7] = flags, 0, 0, 0
	copy(msg[8:24], t[:])
	msg[24], msg[25] = optTargetLL, 1
	copy(msg[26:32], mac)
	binary.BigEndian.PutUint16(msg[2:4], icmp6Checksum(target, dst, msg))
}

// announcement is the unsolicited Neighbor Advertisement for ip, to
// all-nodes with Override set, which makes every neighbour that has an entry
// for ip replace the MAC in it (RFC 4861 7.2.6).
func (r *ndpResponder) announcement(ip netip.Addr) ([]byte, error) {
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.ifi.mac}},
	}
	msg, err := ndp.MarshalMessageChecksum(na, ip, allNodes)
	if err != nil {
		return nil, fmt.Errorf("build unsolicited NA for %s: %w", ip, err)
	}
	hdr := make([]byte, ip6HeaderLen, ip6HeaderLen+len(msg))
	binary.BigEndian.PutUint32(hdr[0:4], 6<<28)
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(msg)))
	hdr[6], hdr[7] = protoICMPv6, 255
	src, dst := ip.As16(), allNodes.As16()
	copy(hdr[8:24], src[:])
	copy(hdr[24:40], dst[:])
	f := ethernet.Frame{
		Destination: allNodesMAC,
		Source:      r.ifi.mac,
		EtherType:   ethernet.EtherTypeIPv6,
		Payload:     append(hdr, msg...),
	}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("build unsolicited NA for %s: %w", ip, err)
	}
	return b, nil
}

// icmp6Checksum is the ICMPv6 checksum of msg between src and dst (RFC 4443
// 2.3). Over a message that carries its checksum it is zero when valid.
func icmp6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	sum := uint32(protoICMPv6) + uint32(len(msg)>>16) + uint32(len(msg)&0xffff)
	for i := 0; i < 16; i += 2 {
		sum += uint32(s[i])<<8 | uint32(s[i+1])
		sum += uint32(d[i])<<8 | uint32(d[i+1])
	}
	for i := 0; i+1 < len(msg); i += 2 {
		sum += uint32(msg[i])<<8 | uint32(msg[i+1])
	}
	if len(msg)%2 == 1 {
		sum += uint32(msg[len(msg)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// solicitedNode is the solicited-node multicast group of ip (RFC 4291 2.7.1):
// ff02::1:ff00:0/104 followed by the low 24 bits of ip.
func solicitedNode(ip netip.Addr) netip.Addr {
	a := ip.As16()
	return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
}

func isSolicitedNode(ip netip.Addr) bool {
	return ip.Is6() && solicitedNode(ip) == ip
}
