package netio

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// FuzzARP feeds arbitrary frames to the ARP packet path. It must never
// panic, and whatever it answers must be a request mdlayher/arp parses the
// same way, answered with a reply mdlayher/arp parses.
func FuzzARP(f *testing.F) {
	zero := make(net.HardwareAddr, 6)
	for _, seed := range [][]byte{
		arpFrame(f, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, ethernet.Broadcast),
		arpFrame(f, arp.OperationRequest, clientMAC, netip.IPv4Unspecified(), zero, ownedV4, ethernet.Broadcast),
		arpFrame(f, arp.OperationRequest, otherMAC, ownedV4, zero, ownedV4, ethernet.Broadcast),
		arpFrame(f, arp.OperationReply, otherMAC, ownedV4, clientMAC, clientV4, clientMAC),
		arpFrame(f, arp.OperationRequest, clientMAC, clientV4, zero, hostV4, ethernet.Broadcast),
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		conn := newFakeConn()
		var stats counters
		var conflicts conflictLog
		r := newARPResponder(eth0, conn, env{view: testView(), report: conflicts.report}, &stats)
		in := bytes.Clone(frame)
		r.handle(frame, false)
		if !bytes.Equal(in, frame) {
			t.Fatal("handle modified the received frame")
		}
		for _, c := range conflicts.all() {
			if !testView().owns(c.IP, "eth0") || bytes.Equal(c.MAC, nodeMAC) {
				t.Fatalf("conflict %+v for an IP not owned or with our own MAC", c)
			}
		}
		sent := conn.sent()
		if len(sent) == 0 {
			return
		}
		var req arp.Packet
		if err := req.UnmarshalBinary(frame[ethHeaderLen:]); err != nil {
			t.Fatalf("answered a frame mdlayher/arp rejects: %v", err)
		}
		if req.Operation != arp.OperationRequest || !testView().answers(req.TargetIP, "eth0") {
			t.Fatalf("answered %+v", req)
		}
		var rep arp.Packet
		if err := rep.UnmarshalBinary(sent[0].frame[ethHeaderLen:]); err != nil {
			t.Fatalf("sent a reply mdlayher/arp rejects: %v", err)
		}
		if rep.Operation != arp.OperationReply || rep.SenderIP != req.TargetIP || rep.TargetIP != req.SenderIP ||
			!bytes.Equal(rep.SenderHardwareAddr, nodeMAC) || !bytes.Equal(rep.TargetHardwareAddr, req.SenderHardwareAddr) {
			t.Fatalf("reply %+v does not answer %+v", rep, req)
		}
	})
}

// FuzzNDP feeds arbitrary frames to the NDP packet path. It must never
// panic, what it accepts must be a Neighbor Solicitation or Advertisement
// mdlayher/ndp parses with the same target, and what it sends must be an
// advertisement mdlayher/ndp parses.
func FuzzNDP(f *testing.F) {
	snm := solicitedNode(ownedV6)
	for _, seed := range [][]byte{
		ndpFrame(f, clientMAC, multicastMAC(snm), clientV6, snm, 255, ns(ownedV6, clientMAC)),
		ndpFrame(f, clientMAC, nodeMAC, clientV6, ownedV6, 255, ns(ownedV6, nil)),
		ndpFrame(f, clientMAC, multicastMAC(snm), netip.IPv6Unspecified(), snm, 255, ns(ownedV6, nil)),
		ndpFrame(f, otherMAC, allNodesMAC, ownedV6, allNodes, 255, &ndp.NeighborAdvertisement{
			Override: true, TargetAddress: ownedV6,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: otherMAC}},
		}),
		ndpFrame(f, clientMAC, multicastMAC(snm), clientV6, snm, 255, &ndp.NeighborSolicitation{
			TargetAddress: ownedV6,
			Options: []ndp.Option{
				&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC},
				&ndp.RawOption{Type: 14, Length: 1, Value: []byte{1, 2, 3, 4, 5, 6}},
			},
		}),
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, ok := parseNeighbor(frame)
		if ok {
			ip := frame[ethHeaderLen:]
			msg := ip[ip6HeaderLen : ip6HeaderLen+(int(ip[4])<<8|int(ip[5]))]
			parsed, err := ndp.ParseMessage(onlyLinkLayerOptions(msg))
			if err != nil {
				t.Fatalf("accepted a message mdlayher/ndp rejects: %v", err)
			}
			var target netip.Addr
			switch p := parsed.(type) {
			case *ndp.NeighborSolicitation:
				target = p.TargetAddress
			case *ndp.NeighborAdvertisement:
				target = p.TargetAddress
			default:
				t.Fatalf("accepted %T", parsed)
			}
			if target != m.target {
				t.Fatalf("target %v, mdlayher/ndp says %v", m.target, target)
			}
		}

		conn := newFakeConn()
		var stats counters
		var conflicts conflictLog
		r := newNDPResponder(eth0, conn, env{view: testView(), report: conflicts.report}, &stats)
		in := bytes.Clone(frame)
		r.handle(frame, false)
		if !bytes.Equal(in, frame) {
			t.Fatal("handle modified the received frame")
		}
		for _, c := range conflicts.all() {
			if !testView().owns(c.IP, "eth0") || bytes.Equal(c.MAC, nodeMAC) {
				t.Fatalf("conflict %+v for an IP not owned or with our own MAC", c)
			}
		}
		for _, s := range conn.sent() {
			if !ok || m.typ != icmpNeighborSolicitation || !testView().answers(m.target, "eth0") {
				t.Fatalf("answered %x", frame)
			}
			na, ok := parseNeighbor(s.frame)
			if !ok || na.typ != icmpNeighborAdvertisement || na.target != m.target {
				t.Fatalf("sent %x, not a valid advertisement for %v", s.frame, m.target)
			}
			if _, err := ndp.ParseMessage(s.frame[ethHeaderLen+ip6HeaderLen:]); err != nil {
				t.Fatalf("sent an advertisement mdlayher/ndp rejects: %v", err)
			}
		}
	})
}

// onlyLinkLayerOptions drops every option but Ethernet link-layer address
// options from a Neighbor Discovery message. RFC 4861 has receivers ignore
// options they do not use; mdlayher/ndp rejects a message whose, say, prefix
// option is malformed, which is no reason to leave a solicitation
// unanswered.
func onlyLinkLayerOptions(msg []byte) []byte {
	out := bytes.Clone(msg[:neighborMsgLen])
	for opts := msg[neighborMsgLen:]; len(opts) >= 2 && opts[1] > 0 && len(opts) >= int(opts[1])*8; opts = opts[int(opts[1])*8:] {
		if (opts[0] == optSourceLL || opts[0] == optTargetLL) && opts[1] == 1 {
			out = append(out, opts[:8]...)
		}
	}
	return out
}
