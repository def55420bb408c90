package lab

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
)

// Hostile sends what a broken or malicious host on the segment sends:
// truncated and malformed ARP and Neighbor Discovery frames, requests in the
// name of the responders' own MACs, forged gratuitous ARPs and unsolicited
// Neighbor Advertisements for owned addresses, mixed with valid requests,
// at a given rate (see Run). The frames follow from Seed.
//
// Every frame has one meaning for a correct responder, which Frames tells:
// valid requests (from the requester: From's MAC and addresses) are
// answered by the owner of the address asked for, and by nobody else;
// malformed frames and requests in a responder's own name are answered by
// nobody; forged claims are answered by nobody and are a conflict for the
// owner. Malformed frames name a Foreign MAC as their requester, so an
// answer to one of them is told apart on the wire. No frame carries a
// responder's MAC as its Ethernet source: the bridge would learn the MAC on
// the wrong port and cut that node off, which says nothing about the
// responder.
type Hostile struct {
	From *NS // the namespace the frames leave from, on its Link
	// Owned maps the addresses under attack to the MAC that answers for
	// each: hostile frames target them, forged ones claim them.
	Owned map[netip.Addr]net.HardwareAddr
	// Ask is what valid requests ask for, and who answers; nil means
	// Owned. Asking for other addresses than those attacked measures, say,
	// the kernel's answering under the same attack.
	Ask map[netip.Addr]net.HardwareAddr
	// Foreign are the MACs of hostile hosts; nil means two drawn from
	// Seed. Every (address, foreign MAC) pair is a distinct conflict.
	Foreign []net.HardwareAddr
	Seed    uint64
	// Unicast sends every frame to the MAC of the address it is about,
	// rather than to broadcast or a multicast group. The responders see
	// the same frames; what changes is that each costs one delivery, not
	// one per namespace on the bridge. In the lab every namespace's
	// kernel shares the machine's cores, so that is what lets a flood
	// reach tens of thousands of frames a second.
	Unicast bool
}

// Kind is one sort of frame the injector sends.
type Kind int

const (
	ARPRequest    Kind = iota // valid request, answered
	ARPTruncated              // a request cut short
	ARPBadLengths             // hardware or protocol address length not 6 and 4
	ARPOwnMAC                 // a request or gratuitous ARP whose sender is the owner's own MAC
	ARPForged                 // gratuitous ARP request or reply for an owned address from a foreign MAC

	NSRequest         // valid multicast Neighbor Solicitation, answered
	NSNoSourceLL      // valid, without source link-layer option: answered to the frame's source
	NSDuplicateSource // valid, the source link-layer option twice (the same MAC): answered
	NDPTruncated      // a solicitation cut short
	NDPBadLengths     // IPv6 payload length beyond the frame, ICMPv6 message too short or cut mid-option, trailing bytes
	NDPBadOption      // zero-length option, option longer than the packet, DAD probe with a source link-layer option
	NDPBadHopLimit    // hop limit not 255: forwarded, so not from the link
	NDPBadChecksum    // ICMPv6 checksum wrong
	NSOwnMAC          // a solicitation whose source link-layer option is the owner's own MAC
	NAForged          // unsolicited Neighbor Advertisement for an owned address from a foreign MAC
	kinds             // the number of kinds
)

var kindNames = [kinds]string{
	"arp-request", "arp-truncated", "arp-bad-lengths", "arp-own-mac", "arp-forged",
	"ns-request", "ns-no-source-ll", "ns-duplicate-source-ll", "ndp-truncated", "ndp-bad-lengths",
	"ndp-bad-option", "ndp-bad-hop-limit", "ndp-bad-checksum", "ns-own-mac", "na-forged",
}

func (k Kind) String() string {
	if k < 0 || k >= kinds {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// ipv6 reports whether frames of the kind are IPv6 (Neighbor Discovery).
func (k Kind) ipv6() bool { return k >= NSRequest }

// AllKinds is every kind of frame, valid and hostile.
func AllKinds() []Kind {
	out := make([]Kind, kinds)
	for i := range out {
		out[i] = Kind(i)
	}
	return out
}

// Requests are the valid requests only: what a client asking for every
// address sends.
var Requests = []Kind{ARPRequest, NSRequest}

// A Frame is one frame of a run and what a correct responder does with it.
type Frame struct {
	Kind  Kind
	Bytes []byte
	// Asks is the address a valid request asks for (the owner answers,
	// to the requester), invalid for every other frame.
	Asks netip.Addr
	// Claims is set on forged frames: the foreign MAC claiming an owned
	// address.
	Claims Claim
}

// A Claim is a MAC claiming an address.
type Claim struct {
	IP  netip.Addr
	MAC string // as net.HardwareAddr.String writes it
}

// Frames returns the first n frames of a run of the given kinds, each kind
// drawn with equal chance. Kinds of a family with no address to use (no
// IPv4 address in Owned, say) are left out.
func (h Hostile) Frames(kinds []Kind, n int) ([]Frame, error) {
	g := h.generator()
	usable := slices.DeleteFunc(slices.Clone(kinds), func(k Kind) bool { return !g.has(k) })
	if len(usable) == 0 {
		return nil, fmt.Errorf("hostile: no address for any of the kinds %v", kinds)
	}
	out := make([]Frame, n)
	for i := range out {
		f, err := g.frame(usable[g.r.IntN(len(usable))])
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// generator draws frames from the seed.
type generator struct {
	h          Hostile
	r          *rand.Rand
	owned, ask [2][]netip.Addr // by family: 0 IPv4, 1 IPv6; sorted so a seed means one run
	foreign    []net.HardwareAddr
}

func (h Hostile) generator() *generator {
	if h.Ask == nil {
		h.Ask = h.Owned
	}
	g := &generator{h: h, r: rand.New(rand.NewPCG(h.Seed, 0x6c326c62))}
	g.owned = byFamily(h.Owned)
	g.ask = byFamily(h.Ask)
	g.foreign = h.Foreign
	for len(g.foreign) < 2 && h.Foreign == nil {
		// Locally administered, unicast, apart from the lab's 02:6c:32.
		g.foreign = append(g.foreign, net.HardwareAddr{0x02, 0x66, 0x6f, byte(g.r.Uint32()), byte(g.r.Uint32()), byte(len(g.foreign))})
	}
	return g
}

func byFamily(m map[netip.Addr]net.HardwareAddr) [2][]netip.Addr {
	var out [2][]netip.Addr
	for ip := range m {
		fam := 0
		if ip.Is6() {
			fam = 1
		}
		out[fam] = append(out[fam], ip)
	}
	for _, s := range out {
		slices.SortFunc(s, netip.Addr.Compare)
	}
	return out
}

func family(k Kind) int {
	if k.ipv6() {
		return 1
	}
	return 0
}

// has reports whether the generator has the addresses frames of kind k need.
func (g *generator) has(k Kind) bool {
	if k < 0 || k >= kinds || len(g.foreign) == 0 {
		return false
	}
	if k == ARPRequest || k == NSRequest || k == NSNoSourceLL || k == NSDuplicateSource {
		return len(g.ask[family(k)]) > 0
	}
	return len(g.owned[family(k)]) > 0
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }
