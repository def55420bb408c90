package kube

import (
	"context"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// FormerNamespace held the member Leases before l2lb-system became the
// default: nodes still on an older version, or with an older config, keep
// theirs there.
const FormerNamespace = "kube-system"

// PeersElsewhere returns the nodes other than self whose member Lease in
// namespace ns was renewed within maxAge of now, by the renewals' own
// clocks. Nodes coordinating in another namespace than this one do not see
// this node's claims, nor it theirs, and may answer an address this node
// answers for. A credential that may not list Leases there (least
// privilege) finds nothing: its peers could not coordinate there either.
func PeersElsewhere(ctx context.Context, client *Client, ns, self string, maxAge time.Duration, now time.Time) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var list coordinationv1.LeaseList
	err := client.Coordination.Get().Namespace(ns).Resource("leases").Do(ctx).Into(&list)
	if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return liveMembers(list.Items, self, maxAge, now), nil
}

// liveMembers are the nodes other than self whose member Lease among
// leases was renewed within maxAge of now, sorted.
func liveMembers(leases []coordinationv1.Lease, self string, maxAge time.Duration, now time.Time) []string {
	var out []string
	for i := range leases {
		node, _, ok := ParseMember(&leases[i])
		renew := leases[i].Spec.RenewTime
		if !ok || node == self || renew == nil || now.Sub(renew.Time) > maxAge {
			continue
		}
		out = append(out, node)
	}
	slices.Sort(out)
	return out
}
