package netio

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

func TestARPResponder(t *testing.T) {
	zero := make(net.HardwareAddr, 6)
	bcast := ethernet.Broadcast
	reply := func(tpa netip.Addr) []byte {
		return arpFrame(t, arp.OperationReply, nodeMAC, tpa, clientMAC, clientV4, clientMAC)
	}
	tests := []struct {
		name     string
		frame    []byte
		stale    bool   // the frame waited in the socket too long
		expired  bool   // the answer deadline has passed
		want     []byte // the single frame sent, nil for none
		conflict *Conflict
		requests uint64
		// withheld answers, by verdict
		staleDrops, expiredDrops uint64
	}{
		{
			name:     "request for owned IP",
			frame:    arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast),
			want:     reply(ownedV4),
			requests: 1,
		},
		{
			name:     "unicast request for owned IP (kernel re-validation)",
			frame:    arpFrame(t, arp.OperationRequest, clientMAC, clientV4, nodeMAC, ownedV4, nodeMAC),
			want:     reply(ownedV4),
			requests: 1,
		},
		{
			name:     "RFC 5227 probe is answered to defend the IP",
			frame:    arpFrame(t, arp.OperationRequest, clientMAC, netip.IPv4Unspecified(), zero, ownedV4, bcast),
			want:     arpFrame(t, arp.OperationReply, nodeMAC, ownedV4, clientMAC, netip.IPv4Unspecified(), clientMAC),
			requests: 1,
		},
		{
			name:     "request for an IP not owned",
			frame:    arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, freeV4, bcast),
			requests: 1,
		},
		{
			name:     "request for an IP the host has configured",
			frame:    arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, hostV4, bcast),
			requests: 1,
		},
		{
			name:     "our own request",
			frame:    arpFrame(t, arp.OperationRequest, nodeMAC, clientV4, zero, ownedV4, bcast),
			requests: 1,
		},
		{
			name:     "request from a multicast sender hardware address",
			frame:    arpFrame(t, arp.OperationRequest, net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}, clientV4, zero, ownedV4, bcast),
			requests: 1,
		},
		{
			name:     "gratuitous request from another MAC",
			frame:    arpFrame(t, arp.OperationRequest, otherMAC, ownedV4, zero, ownedV4, bcast),
			conflict: &Conflict{IP: ownedV4, MAC: otherMAC, Interface: "eth0"},
			requests: 1,
		},
		{
			name:     "gratuitous reply from another MAC",
			frame:    arpFrame(t, arp.OperationReply, otherMAC, ownedV4, bcast, ownedV4, bcast),
			conflict: &Conflict{IP: ownedV4, MAC: otherMAC, Interface: "eth0"},
		},
		{
			name:     "reply from another MAC",
			frame:    arpFrame(t, arp.OperationReply, otherMAC, ownedV4, clientMAC, clientV4, clientMAC),
			conflict: &Conflict{IP: ownedV4, MAC: otherMAC, Interface: "eth0"},
		},
		{
			name:     "request sent from an owned IP by another MAC",
			frame:    arpFrame(t, arp.OperationRequest, otherMAC, ownedV4, zero, clientV4, bcast),
			conflict: &Conflict{IP: ownedV4, MAC: otherMAC, Interface: "eth0"},
			requests: 1,
		},
		{
			name:     "conflict on an IP the host has configured is still reported",
			frame:    arpFrame(t, arp.OperationReply, otherMAC, hostV4, clientMAC, clientV4, clientMAC),
			conflict: &Conflict{IP: hostV4, MAC: otherMAC, Interface: "eth0"},
		},
		{
			name:     "our own gratuitous ARP is no conflict",
			frame:    arpFrame(t, arp.OperationRequest, nodeMAC, ownedV4, zero, ownedV4, bcast),
			requests: 1,
		},
		{
			name:  "reply for an IP not owned",
			frame: arpFrame(t, arp.OperationReply, otherMAC, freeV4, clientMAC, clientV4, clientMAC),
		},
		{
			name:       "request for owned IP that waited in the socket",
			frame:      arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast),
			stale:      true,
			requests:   1,
			staleDrops: 1,
		},
		{
			name:         "request for owned IP after the answer deadline",
			frame:        arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast),
			expired:      true,
			requests:     1,
			expiredDrops: 1,
		},
		{
			name:       "request that waited, after the deadline, counts as stale",
			frame:      arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast),
			stale:      true,
			expired:    true,
			requests:   1,
			staleDrops: 1,
		},
		{
			name:     "request that waited for an IP not owned is no drop",
			frame:    arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, freeV4, bcast),
			stale:    true,
			expired:  true,
			requests: 1,
		},
		{
			name:     "gratuitous ARP that waited is still a conflict",
			frame:    arpFrame(t, arp.OperationRequest, otherMAC, ownedV4, zero, ownedV4, bcast),
			stale:    true,
			conflict: &Conflict{IP: ownedV4, MAC: otherMAC, Interface: "eth0"},
			requests: 1,
		},
		{
			name:     "reply from another MAC after the deadline is still a conflict",
			frame:    arpFrame(t, arp.OperationReply, otherMAC, ownedV4, clientMAC, clientV4, clientMAC),
			expired:  true,
			conflict: &Conflict{IP: ownedV4, MAC: otherMAC, Interface: "eth0"},
		},
		{name: "empty frame", frame: nil},
		{name: "truncated", frame: arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast)[:41]},
		{name: "wrong EtherType", frame: withByte(arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast), 13, 0x07)},
		{name: "wrong hardware type", frame: withByte(arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast), 15, 6)},
		{name: "wrong protocol type", frame: withByte(arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast), 16, 0x86)},
		{name: "wrong address lengths", frame: withByte(arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast), 19, 16)},
		{name: "unknown operation", frame: withByte(arpFrame(t, arp.OperationRequest, clientMAC, clientV4, zero, ownedV4, bcast), 21, 3)},
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
			r := newARPResponder(eth0, conn, env{view: v, report: conflicts.report}, &stats)
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
				var p arp.Packet
				if err := p.UnmarshalBinary(sent[0].frame[ethHeaderLen:]); err != nil {
					t.Errorf("mdlayher/arp cannot parse the reply: %v", err)
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

func checkConflicts(t *testing.T, got []Conflict, want *Conflict) {
	t.Helper()
	switch {
	case want == nil && len(got) > 0:
		t.Errorf("conflicts = %v, want none", got)
	case want != nil && len(got) != 1:
		t.Errorf("conflicts = %v, want [%v]", got, *want)
	case want != nil:
		g := got[0]
		if g.IP != want.IP || !bytes.Equal(g.MAC, want.MAC) || g.Interface != want.Interface {
			t.Errorf("conflict = %+v, want %+v", g, *want)
		}
	}
}

func withByte(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

func TestARPAnnounce(t *testing.T) {
	conn := newFakeConn()
	var stats counters
	r := newARPResponder(eth0, conn, env{view: testView(), report: func(Conflict) {}}, &stats)
	f, err := r.announcement(ownedV4)
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
	want := arpFrame(t, arp.OperationRequest, nodeMAC, ownedV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
	if !bytes.Equal(sent[0].frame, want) || !bytes.Equal(sent[0].to, ethernet.Broadcast) {
		t.Errorf("sent %x to %v, want %x to broadcast", sent[0].frame, sent[0].to, want)
	}
	if got := stats.snapshot(); got != (Counters{Announcements: 1}) {
		t.Errorf("counters = %+v, want 1 announcement", got)
	}
}

// The reply path must not allocate: it runs for every request on the
// segment.
func TestARPHandleAllocs(t *testing.T) {
	conn := discardConn{}
	var stats counters
	r := newARPResponder(eth0, conn, env{view: testView(), report: func(Conflict) {}}, &stats)
	req := arpFrame(t, arp.OperationRequest, clientMAC, clientV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
	miss := arpFrame(t, arp.OperationRequest, clientMAC, clientV4, make(net.HardwareAddr, 6), freeV4, ethernet.Broadcast)
	if n := testing.AllocsPerRun(100, func() { r.handle(req, false); r.handle(miss, false); r.handle(req, true) }); n != 0 {
		t.Errorf("handle allocates %v times per request, want 0", n)
	}
	r.env.view.answerUntil(time.Now())
	if n := testing.AllocsPerRun(100, func() { r.handle(req, false) }); n != 0 {
		t.Errorf("handle allocates %v times per request after the deadline, want 0", n)
	}
}

func BenchmarkARPHandle(b *testing.B) {
	var stats counters
	r := newARPResponder(eth0, discardConn{}, env{view: testView(), report: func(Conflict) {}}, &stats)
	req := arpFrame(b, arp.OperationRequest, clientMAC, clientV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
	b.ReportAllocs()
	for b.Loop() {
		r.handle(req, false)
	}
}

// discardConn accepts every write and never delivers anything.
type discardConn struct{ net.PacketConn }

func (discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
