package kube

import (
	"net/netip"
	"reflect"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMemberRoundTrip(t *testing.T) {
	m := Member{Pools: []string{"b", "a"}, Claims: []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("198.51.100.7")}, Digest: "d", Version: "v", Leader: true, Stale: true, Handover: netip.MustParseAddr("198.51.100.9"), HandoverTo: "n2"}
	holder := "node-1"
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-node-1", Annotations: m.annotations()}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	node, got, ok := ParseMember(l)
	want := Member{Pools: []string{"a", "b"}, Claims: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::1")}, Digest: "d", Version: "v", Leader: true, Stale: true, Handover: netip.MustParseAddr("198.51.100.9"), HandoverTo: "n2"}
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
	if a := (Member{}).annotations(); a[AnnotationLeader] != "" || a[AnnotationStale] != "" || a[AnnotationHandover] != "" {
		t.Errorf("a fresh non-leader's Lease says %v", a)
	}
}
