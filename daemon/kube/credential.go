package kube

import (
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// CredentialProblem says in an operator's words what an error from the API
// server means for this node's credential, or "" when it is about something
// else. A bare "Unauthorized" does not tell an operator that the token in
// the kubeconfig's tokenFile expired, or that its Node object is gone.
func CredentialProblem(err error) string {
	switch {
	case err == nil:
		return ""
	case apierrors.IsUnauthorized(err):
		return "the API server rejects this node's credential (401 Unauthorized): its token expired, " +
			"or the Node object it is bound to was deleted; write a new token to the kubeconfig's tokenFile " +
			"(examples/kubeconfig.md, step 4); l2lbd picks it up without a restart"
	case apierrors.IsForbidden(err):
		return "this node's credential may not do this (403 Forbidden): check that examples/rbac.yaml is applied, " +
			"that coordination.namespace is the namespace it grants, and that the token is bound to this node's " +
			"Node object (run l2lbd check)"
	}
	return ""
}

// ErrAttrs are the log attributes of an API error: the error, and what it
// means when it is a credential problem.
func ErrAttrs(err error) []any {
	attrs := []any{"err", err}
	if p := CredentialProblem(err); p != "" {
		attrs = append(attrs, "why", p)
	}
	return attrs
}
