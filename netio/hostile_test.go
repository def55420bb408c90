package netio

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/l2lb/l2lb/test/lab"
)

// TestHostileFrames feeds the responders the frames of the lab's hostile
// injector, every kind, and checks each is handled as the injector says a
// correct responder handles it: valid requests answered to the requester,
// everything else unanswered, forged claims reported as one conflict each,
// requests in the interface's own name neither answered nor reported.
// The end-to-end test (test/e2e TestHostileTraffic) sends the same frames
// at daemons at 50,000 a second.
func TestHostileFrames(t *testing.T) {
	h := lab.Hostile{
		From:    &lab.NS{MAC: clientMAC, IPv4: clientV4, IPv6: clientV6},
		Owned:   map[netip.Addr]net.HardwareAddr{ownedV4: nodeMAC, ownedV6: nodeMAC},
		Foreign: []net.HardwareAddr{otherMAC},
		Seed:    12,
	}
	frames, err := h.Frames(lab.AllKinds(), 3000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[lab.Kind]int{}
	for i, f := range frames {
		seen[f.Kind]++
		conn := newFakeConn()
		var stats counters
		var conflicts conflictLog
		e := env{view: testView(), report: conflicts.report}
		if binary.BigEndian.Uint16(f.Bytes[12:14]) == etherTypeARP {
			newARPResponder(eth0, conn, e, &stats).handle(f.Bytes, false)
		} else {
			newNDPResponder(eth0, conn, e, &stats).handle(f.Bytes, false)
		}
		sent, got := conn.sent(), conflicts.all()
		switch {
		case f.Asks.IsValid() && (len(sent) != 1 || !bytes.Equal(sent[0].to, clientMAC)):
			t.Errorf("frame %d (%v, %x): sent %d answers, want 1 to %v", i, f.Kind, f.Bytes, len(sent), clientMAC)
		case !f.Asks.IsValid() && len(sent) != 0:
			t.Errorf("frame %d (%v, %x): answered to %v, want no answer", i, f.Kind, f.Bytes, sent[0].to)
		}
		switch {
		case f.Claims.IP.IsValid() && (len(got) != 1 || got[0].IP != f.Claims.IP || got[0].MAC.String() != f.Claims.MAC):
			t.Errorf("frame %d (%v, %x): conflicts %v, want one for %v", i, f.Kind, f.Bytes, got, f.Claims)
		case !f.Claims.IP.IsValid() && len(got) != 0:
			t.Errorf("frame %d (%v, %x): conflicts %v, want none", i, f.Kind, f.Bytes, got)
		}
	}
	for _, k := range lab.AllKinds() {
		if seen[k] == 0 {
			t.Errorf("no frame of kind %v in 3000", k)
		}
	}
}
