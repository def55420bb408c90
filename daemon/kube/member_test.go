package kube

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMemberRoundTrip(t *testing.T) {
	m := Member{Pools: []string{"b", "a"}, Claims: []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("198.51.100.7")}, Digest: "d", Version: "v", Leader: true, Stale: true, Handover: netip.MustParseAddr("198.51.100.9"), HandoverTo: "n2", MACs: []string{"02:6c:32:00:00:0b", "02:6c:32:00:00:0a"}}
	holder := "node-1"
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-node-1", Annotations: m.annotations()}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	node, got, ok := ParseMember(l)
	want := Member{Pools: []string{"a", "b"}, Claims: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::1")}, Digest: "d", Version: "v", Leader: true, Stale: true, Handover: netip.MustParseAddr("198.51.100.9"), HandoverTo: "n2", MACs: []string{"02:6c:32:00:00:0a", "02:6c:32:00:00:0b"}}
	if !ok || node != "node-1" || !reflect.DeepEqual(got, want) {
		t.Errorf("got %q %+v %v, want node-1 %+v", node, got, ok, want)
	}

	// Not member Leases, or malformed ones: skipped or tolerated.
	other := "x"
	for _, l := range []*coordinationv1.Lease{
		// The IPAM Lease of versions that elected the leader with client-go.
		{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-ipam"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &other}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-node-2"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &other}},
	} {
		if _, _, ok := ParseMember(l); ok {
			t.Errorf("%s parsed as a member Lease", l.Name)
		}
	}
	garbled := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-node-1", Annotations: map[string]string{AnnotationClaims: "nonsense,,198.51.100.9"}}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	if _, m, ok := ParseMember(garbled); !ok || len(m.Claims) != 1 || m.Claims[0] != netip.MustParseAddr("198.51.100.9") {
		t.Errorf("garbled claims: %+v %v", m, ok)
	}
	garbledMACs := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-node-1", Annotations: map[string]string{AnnotationMACs: "zz,02:6C:32:00:00:0A,"}}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	if _, m, ok := ParseMember(garbledMACs); !ok || !slices.Equal(m.MACs, []string{"02:6c:32:00:00:0a"}) {
		t.Errorf("garbled MACs: %+v %v", m, ok)
	}
	if a := (Member{}).annotations(); a[AnnotationLeader] != "" || a[AnnotationStale] != "" || a[AnnotationHandover] != "" {
		t.Errorf("a fresh non-leader's Lease says %v", a)
	}
}

func TestOnlyAddsClaims(t *testing.T) {
	a, b, c := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:100::3")
	base := Member{Pools: []string{"lan"}, Claims: []netip.Addr{a, b}, Digest: "d", Version: "v"}
	with := func(f func(*Member)) Member {
		m := base
		m.Claims = slices.Clone(base.Claims)
		f(&m)
		return m
	}
	unclaimed := with(func(m *Member) { m.Claims = nil })
	for _, tc := range []struct {
		name          string
		written, next Member
		want          bool
	}{
		{"one claim added", base, with(func(m *Member) { m.Claims = append(m.Claims, c) }), true},
		{"added in front", base, with(func(m *Member) { m.Claims = []netip.Addr{c, b, a} }), true},
		{"the first claims", unclaimed, base, true},
		{"nothing changed", base, base, false},
		{"one claim dropped", base, with(func(m *Member) { m.Claims = []netip.Addr{a} }), false},
		{"one swapped for another", base, with(func(m *Member) { m.Claims = []netip.Addr{a, c} }), false},
		{"added, and leads now", base, with(func(m *Member) { m.Claims = append(m.Claims, c); m.Leader = true }), false},
		{"added, and stale now", base, with(func(m *Member) { m.Claims = append(m.Claims, c); m.Stale = true }), false},
		{"added, and offers one", base, with(func(m *Member) { m.Claims = append(m.Claims, c); m.Handover, m.HandoverTo = a, "n2" }), false},
		{"added, and a pool less", base, with(func(m *Member) { m.Claims = append(m.Claims, c); m.Pools = nil }), false},
		{"added, and a new config", base, with(func(m *Member) { m.Claims = append(m.Claims, c); m.Digest = "e" }), false},
	} {
		if got := onlyAddsClaims(tc.written, tc.next); got != tc.want {
			t.Errorf("%s: onlyAddsClaims = %v, want %v", tc.name, got, tc.want)
		}
	}
}
