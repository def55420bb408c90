package lab

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

var (
	zeroMAC     = make(net.HardwareAddr, 6)
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = MulticastMAC(allNodes)
)

// Wire offsets the frames are broken at: Ethernet header, ARP packet, IPv6
// header.
const (
	ethLen     = 14
	arpLen     = 28
	ip6Len     = 40
	nsLen      = 24 // a Neighbor Solicitation without options
	icmpOffset = ethLen + ip6Len
)

// frame draws one frame of kind k.
func (g *generator) frame(k Kind) (Frame, error) {
	r, h := g.r, g.h
	f := Frame{Kind: k}
	foreign := pick(r, g.foreign)
	target := netip.Addr{}
	if owned := g.owned[family(k)]; len(owned) > 0 {
		target = pick(r, owned)
	}
	var err error
	switch k {
	case ARPRequest:
		f.Asks = pick(r, g.ask[0])
		f.Bytes, err = ARPFrame(arp.OperationRequest, h.From.MAC, h.From.IPv4, zeroMAC, f.Asks, ethernet.Broadcast)
	case ARPTruncated, ARPBadLengths:
		f.Bytes, err = ARPFrame(arp.OperationRequest, foreign, h.From.IPv4, zeroMAC, target, ethernet.Broadcast)
		if err == nil {
			f.Bytes = breakARP(r.IntN, k, f.Bytes)
		}
	case ARPOwnMAC:
		// As a request from another address, or as the owner's own
		// gratuitous ARP coming back.
		spa := pick(r, []netip.Addr{h.From.IPv4, target})
		f.Bytes, err = ARPFrame(arp.OperationRequest, h.Owned[target], spa, zeroMAC, target, ethernet.Broadcast)
		if err == nil {
			copy(f.Bytes[6:12], foreign)
		}
	case ARPForged:
		f.Claims = Claim{IP: target, MAC: foreign.String()}
		op, tha := arp.OperationRequest, zeroMAC
		if r.IntN(2) == 0 {
			op, tha = arp.OperationReply, ethernet.Broadcast
		}
		f.Bytes, err = ARPFrame(op, foreign, target, tha, target, ethernet.Broadcast)
	case NSRequest, NSNoSourceLL, NSDuplicateSource:
		f.Asks = pick(r, g.ask[1])
		m := Solicitation(f.Asks, h.From.MAC)
		switch k {
		case NSNoSourceLL:
			m.Options = nil
		case NSDuplicateSource:
			m.Options = append(m.Options, m.Options[0])
		}
		f.Bytes, err = g.solicit(h.From.MAC, h.From.IPv6, f.Asks, m)
	case NDPTruncated, NDPBadLengths, NDPBadOption, NDPBadHopLimit, NDPBadChecksum:
		f.Bytes, err = g.solicit(foreign, h.From.IPv6, target, Solicitation(target, foreign))
		if err == nil {
			f.Bytes, err = breakNDP(r.IntN, k, f.Bytes)
		}
	case NSOwnMAC:
		// From another address, or from the owned address itself.
		src := pick(r, []netip.Addr{h.From.IPv6, target})
		f.Bytes, err = g.solicit(foreign, src, target, Solicitation(target, h.Owned[target]))
	case NAForged:
		f.Claims = Claim{IP: target, MAC: foreign.String()}
		f.Bytes, err = NDPFrame(foreign, allNodesMAC, target, allNodes, 255, &ndp.NeighborAdvertisement{
			Override: true, TargetAddress: target,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: foreign}},
		})
	}
	if err == nil && h.Unicast {
		owner := h.Owned[target]
		if f.Asks.IsValid() {
			owner = h.Ask[f.Asks]
		}
		copy(f.Bytes[0:6], owner)
	}
	return f, err
}

// solicit frames a solicitation for target to its solicited-node group.
func (g *generator) solicit(ethSrc net.HardwareAddr, src, target netip.Addr, m *ndp.NeighborSolicitation) ([]byte, error) {
	snm, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		return nil, err
	}
	return NDPFrame(ethSrc, MulticastMAC(snm), src, snm, 255, m)
}

// breakARP damages a valid ARP request as kind k says.
func breakARP(intn func(int) int, k Kind, b []byte) []byte {
	if k == ARPTruncated {
		return b[:ethLen+intn(arpLen)]
	}
	lengths := [][2]byte{{0, 4}, {5, 4}, {7, 4}, {6, 0}, {6, 16}, {255, 255}}
	l := lengths[intn(len(lengths))]
	b[ethLen+4], b[ethLen+5] = l[0], l[1]
	return b
}

// breakNDP damages a valid Neighbor Solicitation with a source link-layer
// option as kind k says. Where the damage is in the message, the checksum
// is made right again, so that only the damage is under test.
func breakNDP(intn func(int) int, k Kind, b []byte) ([]byte, error) {
	ip := b[ethLen:]
	msg := ip[ip6Len:]
	switch k {
	case NDPTruncated:
		return b[:ethLen+intn(ip6Len+len(msg))], nil
	case NDPBadHopLimit:
		ip[7] = []byte{0, 1, 64, 254}[intn(4)]
		return b, nil
	case NDPBadChecksum:
		msg[2] ^= byte(1 + intn(255))
		return b, nil
	case NDPBadLengths:
		switch intn(4) {
		case 0: // the IPv6 header claims more than the frame holds
			binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)+8*(1+intn(8))))
			return b, nil
		case 1: // shorter than a solicitation
			return reframe(b, msg[:4+intn(nsLen-4)])
		case 2: // the payload ends inside the option
			return reframe(b, msg[:nsLen+1+intn(7)])
		default: // bytes after the option that cannot be one
			return reframe(b, append(msg, make([]byte, 1+intn(7))...))
		}
	default: // NDPBadOption
		switch intn(3) {
		case 0: // an option of length zero, which receivers must discard
			return reframe(b, append(msg, 14, 0, 0, 0, 0, 0, 0, 0))
		case 1: // the option says it is longer than what follows
			msg[nsLen+1] = byte(2 + intn(254))
			return reframe(b, msg)
		default: // a DAD probe (source ::) must not carry the option
			copy(ip[8:24], make([]byte, 16))
			return reframe(b, msg)
		}
	}
}

// reframe puts msg, its checksum made right, in place of b's ICMPv6
// message.
func reframe(b, msg []byte) ([]byte, error) {
	ip := b[ethLen:]
	src, dst := net.IP(ip[8:24]), net.IP(ip[24:40])
	m := icmp.Message{Type: ipv6.ICMPType(msg[0]), Code: int(msg[1]), Body: &icmp.RawBody{Data: msg[4:]}}
	fixed, err := m.Marshal(icmp.IPv6PseudoHeader(src, dst))
	if err != nil {
		return nil, err
	}
	src6, dst6 := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	return IPv6Frame(net.HardwareAddr(b[6:12]), net.HardwareAddr(b[0:6]), src6, dst6, ip[7], fixed), nil
}
