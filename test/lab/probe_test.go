package lab

import (
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// TestClassify: the prober reads requests, answers and announcements, and
// which MAC speaks for the address, from ARP and NDP frames.
func TestClassify(t *testing.T) {
	client := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	node := net.HardwareAddr{2, 0, 0, 0, 0, 0x11}
	v4, v6 := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:100::200")
	clientV4, clientV6 := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:100::2")
	must := func(f []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	na := func(solicited bool) []byte {
		return must(NDPFrame(node, client, v6, clientV6, 255, &ndp.NeighborAdvertisement{
			Solicited: solicited, Override: true, TargetAddress: v6,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: node}},
		}))
	}
	p := &Prober{client: &NS{MAC: client, IPv4: clientV4, IPv6: clientV6}}
	ns, err := p.request(v6)
	if err != nil {
		t.Fatal(err)
	}
	req4, err := p.request(v4)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		frame    []byte
		outgoing bool
		kind     frameKind
		ip       netip.Addr
		mac      string
	}{
		{"ARP request leaving", req4, true, frameRequest, v4, ""},
		{"ARP reply", must(ARPFrame(arp.OperationReply, node, v4, client, clientV4, client)), false, frameReply, v4, node.String()},
		{"gratuitous ARP", must(ARPFrame(arp.OperationRequest, node, v4, make(net.HardwareAddr, 6), v4, broadcastMAC)), false, frameAnnouncement, v4, node.String()},
		{"another host's ARP request", must(ARPFrame(arp.OperationRequest, node, clientV4, make(net.HardwareAddr, 6), v4, broadcastMAC)), false, frameOther, netip.Addr{}, ""},
		{"solicitation leaving", ns, true, frameRequest, v6, ""},
		{"solicited advertisement", na(true), false, frameReply, v6, node.String()},
		{"unsolicited advertisement", na(false), false, frameAnnouncement, v6, node.String()},
		{"truncated", req4[:20], false, frameOther, netip.Addr{}, ""},
	}
	for _, tc := range cases {
		kind, ip, mac := classify(tc.frame, tc.outgoing)
		if kind != tc.kind || ip != tc.ip || mac != tc.mac {
			t.Errorf("%s: got %v %v %q, want %v %v %q", tc.name, kind, ip, mac, tc.kind, tc.ip, tc.mac)
		}
	}
}
