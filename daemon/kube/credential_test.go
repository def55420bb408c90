package kube

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestCredentialProblem(t *testing.T) {
	lease := schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}
	for _, c := range []struct {
		name string
		err  error
		want string // substring; "" means no explanation
	}{
		{"nil", nil, ""},
		{"401", apierrors.NewUnauthorized("Unauthorized"), "401 Unauthorized): its token expired"},
		{"401 wrapped", fmt.Errorf("write member Lease: %w", apierrors.NewUnauthorized("Unauthorized")), "write a new token to the kubeconfig's tokenFile"},
		{"403", apierrors.NewForbidden(lease, "l2lbd-n2", errors.New("denied")), "403 Forbidden"},
		{"conflict", apierrors.NewConflict(lease, "l2lbd-n1", errors.New("changed")), ""},
		{"network", errors.New("dial tcp: connection refused"), ""},
	} {
		got := CredentialProblem(c.err)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: CredentialProblem(%v) = %q, want one containing %q", c.name, c.err, got, c.want)
		}
	}
}

func TestErrAttrs(t *testing.T) {
	if got := ErrAttrs(errors.New("x")); len(got) != 2 {
		t.Errorf("ErrAttrs(plain) = %v, want err only", got)
	}
	if got := ErrAttrs(apierrors.NewUnauthorized("Unauthorized")); len(got) != 4 || got[2] != "why" {
		t.Errorf("ErrAttrs(401) = %v, want err and why", got)
	}
}
