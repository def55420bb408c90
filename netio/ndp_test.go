package netio

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
)

func TestNDPResponder(t *testing.T) {
	snm := solicitedNode(ownedV6)
	snmMAC := multicastMAC(snm)
	// The reference answer, built by mdlayher/ndp.
	na := func(solicited bool, dst netip.Addr, ethDst net.HardwareAddr) []byte {
		return ndpFrame(t, nodeMAC, ethDst, ownedV6, dst, 255, &ndp.NeighborAdvertisement{
			Solicited: solicited, Override: true, TargetAddress: ownedV6,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: nodeMAC}},
		})
	}
	advert := func(ethSrc net.HardwareAddr, target netip.Addr, tll net.HardwareAddr) []byte {
		m := &ndp.NeighborAdvertisement{Override: true, TargetAddress: target}
		if tll != nil {
			m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: tll}}
		}
		return ndpFrame(t, ethSrc, allNodesMAC, target, allNodes, 255, m)
	}
	good := ndpFrame(t, clientMAC, snmMAC, clientV6, snm, 255, ns(ownedV6, clientMAC))
	tests := []struct {
		name     string
		frame    []byte
		stale    bool // the frame waited in the socket too long
		expired  bool // the answer deadline has passed
		want     []byte
		conflict *Conflict
		requests uint64
		// withheld answers, by verdict
		staleDrops, expiredDrops uint64
	}{
		{
			name:     "multicast solicitation for owned IP",
			frame:    good,
			want:     na(true, clientV6, clientMAC),
			requests: 1,
		},
		{
			name:     "unicast NUD probe without source link-layer option",
			frame:    ndpFrame(t, clientMAC, nodeMAC, clientV6, ownedV6, 255, ns(ownedV6, nil)),
			want:     na(true, clientV6, clientMAC),
			requests: 1,
		},
		{
			name:     "reply goes to the source link-layer option, not the frame source",
			frame:    ndpFrame(t, otherMAC, snmMAC, clientV6, snm, 255, ns(ownedV6, clientMAC)),
			want:     na(true, clientV6, clientMAC),
			requests: 1,
		},
		{
			name:     "DAD probe is answered to all-nodes without Solicited",
			frame:    ndpFrame(t, clientMAC, snmMAC, netip.IPv6Unspecified(), snm, 255, ns(ownedV6, nil)),
			want:     na(false, allNodes, allNodesMAC),
			requests: 1,
		},
		{
			name:     "solicitation for an IP not owned",
			frame:    ndpFrame(t, clientMAC, multicastMAC(solicitedNode(freeV6)), clientV6, solicitedNode(freeV6), 255, ns(freeV6, clientMAC)),
			requests: 1,
		},
		{
			name:     "solicitation for an IP the host has configured",
			frame:    ndpFrame(t, clientMAC, multicastMAC(solicitedNode(hostV6)), clientV6, solicitedNode(hostV6), 255, ns(hostV6, clientMAC)),
			requests: 1,
		},
		{
			name:     "our own solicitation",
			frame:    ndpFrame(t, nodeMAC, snmMAC, clientV6, snm, 255, ns(ownedV6, nodeMAC)),
			requests: 1,
		},
		{
			name:     "solicitation with a multicast source link-layer address",
			frame:    ndpFrame(t, clientMAC, snmMAC, clientV6, snm, 255, ns(ownedV6, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1})),
			requests: 1,
		},
		{
			name:     "unsolicited advertisement from another MAC",
			frame:    advert(otherMAC, ownedV6, otherMAC),
			conflict: &Conflict{IP: ownedV6, MAC: otherMAC, Interface: "eth0"},
		},
		{
			name:     "advertisement without target option from another MAC",
			frame:    advert(otherMAC, ownedV6, nil),
			conflict: &Conflict{IP: ownedV6, MAC: otherMAC, Interface: "eth0"},
		},
		{
			name:     "solicitation sourced from an owned IP by another MAC",
			frame:    ndpFrame(t, otherMAC, multicastMAC(solicitedNode(clientV6)), ownedV6, solicitedNode(clientV6), 255, ns(clientV6, otherMAC)),
			conflict: &Conflict{IP: ownedV6, MAC: otherMAC, Interface: "eth0"},
			requests: 1,
		},
		{
			name:       "solicitation for owned IP that waited in the socket",
			frame:      good,
			stale:      true,
			requests:   1,
			staleDrops: 1,
		},
		{
			name:         "NUD probe after the answer deadline",
			frame:        ndpFrame(t, clientMAC, nodeMAC, clientV6, ownedV6, 255, ns(ownedV6, nil)),
			expired:      true,
			requests:     1,
			expiredDrops: 1,
		},
		{
			name:         "DAD probe after the answer deadline",
			frame:        ndpFrame(t, clientMAC, snmMAC, netip.IPv6Unspecified(), snm, 255, ns(ownedV6, nil)),
			expired:      true,
			requests:     1,
			expiredDrops: 1,
		},
		{
			name:     "advertisement that waited is still a conflict",
			frame:    advert(otherMAC, ownedV6, otherMAC),
			stale:    true,
			expired:  true,
			conflict: &Conflict{IP: ownedV6, MAC: otherMAC, Interface: "eth0"},
		},
		{name: "our own advertisement", frame: advert(nodeMAC, ownedV6, nodeMAC)},
		{name: "advertisement for an IP not owned", frame: advert(otherMAC, freeV6, otherMAC)},
		{
			name: "solicited advertisement to a multicast address",
			frame: ndpFrame(t, otherMAC, allNodesMAC, ownedV6, allNodes, 255, &ndp.NeighborAdvertisement{
				Solicited: true, TargetAddress: ownedV6,
			}),
		},
		{
			// Found by FuzzNDP: answering it sent a solicited NA to a group.
			name:  "multicast source",
			frame: ndpFrame(t, clientMAC, snmMAC, netip.MustParseAddr("ff01:db8:100::2"), snm, 255, ns(ownedV6, clientMAC)),
		},
		{name: "hop limit 254 (forwarded)", frame: ndpFrame(t, clientMAC, snmMAC, clientV6, snm, 254, ns(ownedV6, clientMAC))},
		{name: "bad checksum", frame: withByte(good, ethHeaderLen+ip6HeaderLen+2, good[ethHeaderLen+ip6HeaderLen+2]^0xff)},
		{name: "ICMP code 1", frame: recksum(withByte(good, ethHeaderLen+ip6HeaderLen+1, 1))},
		{name: "not ICMPv6", frame: withByte(good, ethHeaderLen+6, 17)},
		{name: "not IPv6", frame: withByte(good, ethHeaderLen, 0x45)},
		{name: "wrong EtherType", frame: withByte(good, 12, 0x08)},
		{name: "truncated", frame: good[:len(good)-1]},
		{name: "payload length beyond frame", frame: withByte(good, ethHeaderLen+5, good[ethHeaderLen+5]+8)},
		{name: "payload length too short", frame: withByte(good, ethHeaderLen+5, 16)},
		{name: "zero-length option", frame: recksum(withByte(good, len(good)-7, 0))},
		{name: "option longer than message", frame: recksum(withByte(good, len(good)-7, 2))},
		{
			name:  "multicast target",
			frame: ndpFrame(t, clientMAC, allNodesMAC, clientV6, allNodes, 255, ns(allNodes, clientMAC)),
		},
		{
			name:  "DAD probe not sent to the solicited-node group",
			frame: ndpFrame(t, clientMAC, nodeMAC, netip.IPv6Unspecified(), ownedV6, 255, ns(ownedV6, nil)),
		},
		{
			name:  "DAD probe with a source link-layer option",
			frame: ndpFrame(t, clientMAC, snmMAC, netip.IPv6Unspecified(), snm, 255, ns(ownedV6, clientMAC)),
		},
		{name: "empty frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := newFakeConn()
			var conflicts conflictLog
			var stats counters
			v := testView()
			if tt.expired {
				v.answerUntil(time.Now().Add(-time.Millisecond))
			}
			r := newNDPResponder(eth0, conn, env{view: v, report: conflicts.report}, &stats)
			r.handle(tt.frame, tt.stale)

			sent := conn.sent()
			switch {
			case tt.want == nil && len(sent) > 0:
				t.Errorf("sent %x, want nothing", sent[0].frame)
			case tt.want != nil && len(sent) != 1:
				t.Errorf("sent %d frames, want 1", len(sent))
			case tt.want != nil:
				if !bytes.Equal(sent[0].frame, tt.want) {
					t.Errorf("sent\n %x\nwant\n %x", sent[0].frame, tt.want)
				}
				if !bytes.Equal(sent[0].to, tt.want[0:6]) {
					t.Errorf("sent to %v, want %v", sent[0].to, net.HardwareAddr(tt.want[0:6]))
				}
				if _, ok := parseNeighbor(sent[0].frame); !ok {
					t.Error("the answer does not pass our own validation")
				}
			}
			checkConflicts(t, conflicts.all(), tt.conflict)
			want := Counters{Requests: tt.requests, Replies: uint64(len(sent)), Stale: tt.staleDrops, Expired: tt.expiredDrops}
			if tt.conflict != nil {
				want.Conflicts = 1
			}
			if got := stats.snapshot(); got != want {
				t.Errorf("counters = %+v, want %+v", got, want)
			}
		})
	}
}

// recksum fixes the ICMPv6 checksum of a frame built by ipv6Frame after it
// was tampered with, so that only the tampering is under test.
func recksum(f []byte) []byte {
	ip := f[ethHeaderLen:]
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	msg := ip[ip6HeaderLen:]
	msg[2], msg[3] = 0, 0
	c := icmp6Checksum(src, dst, msg)
	msg[2], msg[3] = byte(c>>8), byte(c)
	return f
}

func TestNDPAnnounce(t *testing.T) {
	conn := newFakeConn()
	var stats counters
	r := newNDPResponder(eth0, conn, env{view: testView(), report: func(Conflict) {}}, &stats)
	f, err := r.announcement(ownedV6)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendAnnouncements(conn, &stats, [][]byte{f}); err != nil {
		t.Fatal(err)
	}
	sent := conn.sent()
	if len(sent) != 1 {
		t.Fatalf("sent %d frames, want 1", len(sent))
	}
	m, ok := parseNeighbor(sent[0].frame)
	if !ok {
		t.Fatalf("announcement %x does not validate", sent[0].frame)
	}
	if m.typ != icmpNeighborAdvertisement || m.flags != naFlagOverride || m.target != ownedV6 ||
		m.dst != allNodes || m.src != ownedV6 || !bytes.Equal(m.ll, nodeMAC) || !bytes.Equal(sent[0].to, allNodesMAC) {
		t.Errorf("announcement = %+v to %v, want unsolicited NA with Override for %v from %v to ff02::1 (33:33:00:00:00:01)", m, sent[0].to, ownedV6, nodeMAC)
	}
	if got := stats.snapshot(); got != (Counters{Announcements: 1}) {
		t.Errorf("counters = %+v, want 1 announcement", got)
	}
}

func TestICMPv6Checksum(t *testing.T) {
	// The checksum mdlayher/ndp computes (through x/net/icmp) is the
	// reference; odd lengths exercise the padding.
	for _, m := range []ndp.Message{ns(ownedV6, clientMAC), ns(ownedV6, nil), &ndp.NeighborAdvertisement{TargetAddress: ownedV6}} {
		b, err := ndp.MarshalMessageChecksum(m, clientV6, ownedV6)
		if err != nil {
			t.Fatal(err)
		}
		if c := icmp6Checksum(clientV6, ownedV6, b); c != 0 {
			t.Errorf("checksum over %x = %#04x, want 0", b, c)
		}
		want := uint16(b[2])<<8 | uint16(b[3])
		b[2], b[3] = 0, 0
		if got := icmp6Checksum(clientV6, ownedV6, b); got != want {
			t.Errorf("icmp6Checksum(%x) = %#04x, want %#04x", b, got, want)
		}
	}
	odd := []byte{0x87, 0, 0, 0, 1}
	c := icmp6Checksum(clientV6, ownedV6, odd)
	odd[2], odd[3] = byte(c>>8), byte(c)
	if got := icmp6Checksum(clientV6, ownedV6, odd); got != 0 {
		t.Errorf("odd length: checksum over %x = %#04x, want 0", odd, got)
	}
}

func TestNDPHandleAllocs(t *testing.T) {
	var stats counters
	r := newNDPResponder(eth0, discardConn{}, env{view: testView(), report: func(Conflict) {}}, &stats)
	snm := solicitedNode(ownedV6)
	req := ndpFrame(t, clientMAC, multicastMAC(snm), clientV6, snm, 255, ns(ownedV6, clientMAC))
	nud := ndpFrame(t, clientMAC, nodeMAC, clientV6, ownedV6, 255, ns(ownedV6, nil))
	if n := testing.AllocsPerRun(100, func() { r.handle(req, false); r.handle(nud, false); r.handle(req, true) }); n != 0 {
		t.Errorf("handle allocates %v times per solicitation, want 0", n)
	}
	r.env.view.answerUntil(time.Now())
	if n := testing.AllocsPerRun(100, func() { r.handle(req, false) }); n != 0 {
		t.Errorf("handle allocates %v times per solicitation after the deadline, want 0", n)
	}
}

func BenchmarkNDPHandle(b *testing.B) {
	var stats counters
	r := newNDPResponder(eth0, discardConn{}, env{view: testView(), report: func(Conflict) {}}, &stats)
	snm := solicitedNode(ownedV6)
	req := ndpFrame(b, clientMAC, multicastMAC(snm), clientV6, snm, 255, ns(ownedV6, clientMAC))
	b.ReportAllocs()
	for b.Loop() {
		r.handle(req, false)
	}
}

// The BPF programs run in the kernel; x/net/bpf's VM runs them here.
func TestFilters(t *testing.T) {
	snm := solicitedNode(ownedV6)
	nsFrame := ndpFrame(t, clientMAC, multicastMAC(snm), clientV6, snm, 255, ns(ownedV6, clientMAC))
	naFrame := ndpFrame(t, otherMAC, allNodesMAC, ownedV6, allNodes, 255, &ndp.NeighborAdvertisement{TargetAddress: ownedV6})
	rs := ipv6Frame(clientMAC, allNodesMAC, clientV6, allNodes, 255, []byte{133, 0, 0, 0, 0, 0, 0, 0})
	ra := ipv6Frame(clientMAC, allNodesMAC, clientV6, allNodes, 255, []byte{137, 0, 0, 0, 0, 0, 0, 0})
	arpReq := arpFrame(t, 1, clientMAC, clientV4, make(net.HardwareAddr, 6), ownedV4, allNodesMAC)
	tests := []struct {
		name    string
		program []bpf.Instruction
		frame   []byte
		want    bool
	}{
		{"NS", ndpProgram, nsFrame, true},
		{"NA", ndpProgram, naFrame, true},
		{"NS hop limit 64", ndpProgram, withByte(nsFrame, ethHeaderLen+7, 64), false},
		{"UDP", ndpProgram, withByte(nsFrame, ethHeaderLen+6, 17), false},
		{"router solicitation (133)", ndpProgram, rs, false},
		{"redirect (137)", ndpProgram, ra, false},
		{"ARP on the IPv6 socket", ndpProgram, arpReq, false},
		{"ARP request", arpProgram, arpReq, true},
		{"ARP with hardware type 6", arpProgram, withByte(arpReq, 15, 6), false},
		{"ARP for another protocol", arpProgram, withByte(arpReq, 16, 0x86), false},
		{"ARP with other lengths", arpProgram, withByte(arpReq, 18, 8), false},
		{"IPv6 on the ARP socket", arpProgram, nsFrame, false},
		{"short frame", arpProgram, arpReq[:16], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, err := bpf.NewVM(tt.program)
			if err != nil {
				t.Fatal(err)
			}
			n, err := vm.Run(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			if got := n > 0; got != tt.want {
				t.Errorf("accepted = %v (%d bytes), want %v", got, n, tt.want)
			}
		})
	}
}
