package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/l2lb/l2lb/daemon/kube"
)

func TestCredentialWarnings(t *testing.T) {
	const user = "system:serviceaccount:l2lb-system:l2lbd"
	right := kube.Access{User: user, NodeName: "n1", OwnLease: kube.Yes, PeerLease: kube.No}
	with := func(f func(*kube.Access)) kube.Access { a := right; f(&a); return a }
	for _, c := range []struct {
		name      string
		namespace string
		access    kube.Access
		want      []string // one substring per warning, in order
	}{
		{"right credential", "l2lb-system", right, nil},
		{"coordination in kube-system", "kube-system", right, []string{"coordination.namespace is kube-system"}},
		{"leases elsewhere", "l2lb-system", with(func(a *kube.Access) {
			a.ElsewhereLeases = []string{"create, delete leases in kube-system", "delete leases in all namespaces"}
		}),
			[]string{"may create, delete leases in kube-system; delete leases in all namespaces: it could stall or hijack"}},
		{"token bound to no node", "l2lb-system", with(func(a *kube.Access) { a.NodeName = "" }),
			[]string{"is bound to no Node, so the API server cannot tell this node from the others and the admission policy l2lbd-member-lease cannot confine it to its own Lease. Give each node its own token, kubectl create token --bound-object-kind Node --bound-object-name n1"}},
		{"token of another node", "l2lb-system", with(func(a *kube.Access) { a.NodeName = "n2" }),
			[]string{"bound to Node n2 but nodeName is n1"}},
		{"no admission policy", "l2lb-system", with(func(a *kube.Access) { a.PeerLease = kube.Yes }),
			[]string{"may write another node's member Lease (a dry-run create of l2lbd-l2lbd-check-peer-of-n1 was admitted), so one node could forge its peers' claims and liveness: apply the ValidatingAdmissionPolicy l2lbd-member-lease"}},
		{"own lease refused", "l2lb-system", with(func(a *kube.Access) { a.OwnLease = kube.No }),
			[]string{"may not write its own member Lease l2lbd-n1 in l2lb-system"}},
		{"unknown user asks nothing of the token", "l2lb-system", with(func(a *kube.Access) {
			a.User, a.NodeName, a.OwnLease, a.PeerLease = "", "", kube.Unknown, kube.Unknown
			a.Errors = []error{errors.New("who am I: boom")}
		}), []string{"could not check: who am I: boom"}},
		{"the broad credential of issue 15", "l2lb-system", kube.Access{User: user, OwnLease: kube.Yes, PeerLease: kube.Yes,
			ElsewhereLeases: []string{"create leases in kube-system"}},
			[]string{"may create leases in kube-system", "bound to no Node", "another node's member Lease"}},
	} {
		got := credentialWarnings(c.namespace, "n1", c.access)
		if len(got) != len(c.want) {
			t.Errorf("%s: %d warnings, want %d:\n%s", c.name, len(got), len(c.want), strings.Join(got, "\n"))
			continue
		}
		for i, w := range c.want {
			if !strings.HasPrefix(got[i], "warning: ") || !strings.Contains(got[i], w) {
				t.Errorf("%s: warning %d = %q, want one containing %q", c.name, i, got[i], w)
			}
		}
	}
}
