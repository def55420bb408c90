package lab

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// TestHostileFramesFollowSeed: a seed means one sequence of frames, and
// every kind has an address to use. What responders make of the frames is
// tested in netio (TestHostileFrames) and end to end in test/e2e.
func TestHostileFramesFollowSeed(t *testing.T) {
	h := Hostile{
		From: &NS{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, IPv4: ClientV4, IPv6: ClientV6},
		Owned: map[netip.Addr]net.HardwareAddr{
			ServiceV4First: {2, 0, 0, 0, 0, 0x11},
			ServiceV6First: {2, 0, 0, 0, 0, 0x12},
		},
		Seed: 7,
	}
	a, err := h.Frames(AllKinds(), 500)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := h.Frames(AllKinds(), 500)
	h.Seed++
	c, _ := h.Frames(AllKinds(), 500)
	same := func(x, y Frame) bool { return x.Kind == y.Kind && slices.Equal(x.Bytes, y.Bytes) }
	if !slices.EqualFunc(a, b, same) {
		t.Error("the same seed gave different frames")
	}
	if slices.EqualFunc(a, c, same) {
		t.Error("another seed gave the same frames")
	}
	if _, err := (Hostile{From: h.From, Seed: 1}).Frames(AllKinds(), 1); err == nil {
		t.Error("frames without an address to attack")
	}
	v4only := Hostile{From: h.From, Owned: map[netip.Addr]net.HardwareAddr{ServiceV4First: {2, 0, 0, 0, 0, 0x11}}}
	frames, err := v4only.Frames(AllKinds(), 200)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if f.Kind.ipv6() {
			t.Fatalf("an IPv6 frame (%v) without an IPv6 address to attack", f.Kind)
		}
	}
}
