package kube

import (
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLiveMembers(t *testing.T) {
	now := time.Unix(1000, 0)
	lease := func(name, holder string, renewed time.Duration) coordinationv1.Lease {
		l := coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if holder != "" {
			l.Spec.HolderIdentity = &holder
		}
		if renewed >= 0 {
			l.Spec.RenewTime = &metav1.MicroTime{Time: now.Add(-renewed)}
		}
		return l
	}
	leases := []coordinationv1.Lease{
		lease("l2lbd-b", "b", time.Second),    // live
		lease("l2lbd-a", "a", time.Second),    // self
		lease("l2lbd-c", "c", time.Hour),      // long dead
		lease("kube-scheduler", "x", 0),       // not a member Lease
		lease("l2lbd-d", "e", 0),              // holder is not the node it is named after
		lease("l2lbd-f", "f", -1),             // never renewed
		lease("l2lbd-0", "0", 10*time.Second), // within maxAge
	}
	got := liveMembers(leases, "a", 30*time.Second, now)
	if want := []string{"0", "b"}; !slices.Equal(got, want) {
		t.Errorf("live members %v, want %v", got, want)
	}
}
