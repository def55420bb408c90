package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"
)

// Ethernet frames of ARP (RFC 826) and Neighbor Discovery (RFC 4861), built
// with mdlayher/arp and mdlayher/ndp: the reference that netio's
// hand-written packet path is tested against, and what the hostile injector
// starts from before it breaks a frame.

// ARPFrame is an ARP packet for IPv4 over Ethernet from sha, in an Ethernet
// frame to ethDst.
func ARPFrame(op arp.Operation, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr, ethDst net.HardwareAddr) ([]byte, error) {
	p, err := arp.NewPacket(op, sha, spa, tha, tpa)
	if err != nil {
		return nil, fmt.Errorf("build ARP: %w", err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("build ARP: %w", err)
	}
	f := ethernet.Frame{Destination: ethDst, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

// NDPFrame is a Neighbor Discovery message with its checksum, in an IPv6
// header with hop limit hop, in an Ethernet frame.
func NDPFrame(ethSrc, ethDst net.HardwareAddr, src, dst netip.Addr, hop byte, m ndp.Message) ([]byte, error) {
	msg, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return nil, fmt.Errorf("build NDP: %w", err)
	}
	return IPv6Frame(ethSrc, ethDst, src, dst, hop, msg), nil
}

// IPv6Frame carries an ICMPv6 message (taken as it is, checksum included)
// in an IPv6 header whose payload length is the message's.
func IPv6Frame(ethSrc, ethDst net.HardwareAddr, src, dst netip.Addr, hop byte, msg []byte) []byte {
	b := make([]byte, 14+40+len(msg))
	copy(b[0:6], ethDst)
	copy(b[6:12], ethSrc)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_IPV6)
	ip := b[14:]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28)
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6], ip[7] = unix.IPPROTO_ICMPV6, hop
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[40:], msg)
	return b
}

// MulticastMAC is the Ethernet group address of an IPv6 multicast group
// (RFC 2464 7).
func MulticastMAC(group netip.Addr) net.HardwareAddr {
	a := group.As16()
	return net.HardwareAddr{0x33, 0x33, a[12], a[13], a[14], a[15]}
}

// Solicitation is a Neighbor Solicitation for target carrying the source
// link-layer address option sll, or no option if sll is nil.
func Solicitation(target netip.Addr, sll net.HardwareAddr) *ndp.NeighborSolicitation {
	m := &ndp.NeighborSolicitation{TargetAddress: target}
	if sll != nil {
		m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: sll}}
	}
	return m
}
