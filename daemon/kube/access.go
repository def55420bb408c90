package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeNameExtra is the key of the user extra info in which the API server
// names the Node a ServiceAccount token is bound to.
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// Allowed is the API server's answer to "may this credential do it?".
type Allowed int

const (
	Unknown Allowed = iota // the question could not be asked; see Access.Errors
	Yes
	No
)

// Access is what the API server says this node's credential may do, as far
// as it can be asked without writing anything.
type Access struct {
	User     string // the authenticated user name
	NodeName string // the Node the token is bound to; "" when none

	// ElsewhereLeases lists "<verbs> leases in <namespace>" that the
	// authorizer allows outside the coordination namespace ("all
	// namespaces" for a cluster-wide grant). SelfSubjectAccessReview sees
	// RBAC only, not admission policies.
	ElsewhereLeases []string

	// OwnLease and PeerLease: whether a server-side dry-run create of this
	// node's member Lease, and of a Lease named like another node's, passes
	// authorization and admission. A dry run changes nothing.
	OwnLease, PeerLease Allowed

	Errors []error // questions that could not be asked
}

// PeerLeaseProbe is the name probed as "another node's member Lease": a
// member Lease name that no node of the nodeName probe is likely to have.
func PeerLeaseProbe(node string) string { return MemberLeasePrefix + "l2lbd-check-peer-of-" + node }

// ProbeAccess asks the API server what the client's credential may do with
// Leases, for node whose member Lease lives in namespace.
func ProbeAccess(ctx context.Context, client *Client, namespace, node string) Access {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var a Access
	var review authenticationv1.SelfSubjectReview
	if err := postJSON(ctx, client, "/apis/authentication.k8s.io/v1/selfsubjectreviews", &authenticationv1.SelfSubjectReview{}, &review); err != nil {
		a.Errors = append(a.Errors, fmt.Errorf("who am I (SelfSubjectReview): %w", err))
	} else {
		a.User = review.Status.UserInfo.Username
		if names := review.Status.UserInfo.Extra[NodeNameExtra]; len(names) == 1 {
			a.NodeName = names[0]
		}
	}
	for _, ns := range []string{"kube-system", ""} {
		if ns == namespace {
			continue
		}
		var verbs []string
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			ok, err := canI(ctx, client, verb, ns)
			if err != nil {
				a.Errors = append(a.Errors, fmt.Errorf("can I %s leases (SelfSubjectAccessReview): %w", verb, err))
				continue
			}
			if ok {
				verbs = append(verbs, verb)
			}
		}
		if len(verbs) > 0 {
			where := "in " + ns
			if ns == "" {
				where = "in all namespaces"
			}
			a.ElsewhereLeases = append(a.ElsewhereLeases, strings.Join(verbs, ", ")+" leases "+where)
		}
	}
	var err error
	if a.OwnLease, err = dryRunCreate(ctx, client, namespace, MemberLeasePrefix+node); err != nil {
		a.Errors = append(a.Errors, fmt.Errorf("dry-run create of Lease %s/%s%s: %w", namespace, MemberLeasePrefix, node, err))
	}
	if a.PeerLease, err = dryRunCreate(ctx, client, namespace, PeerLeaseProbe(node)); err != nil {
		a.Errors = append(a.Errors, fmt.Errorf("dry-run create of Lease %s/%s: %w", namespace, PeerLeaseProbe(node), err))
	}
	return a
}

func canI(ctx context.Context, client *Client, verb, namespace string) (bool, error) {
	req := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: verb, Group: "coordination.k8s.io", Resource: "leases",
		},
	}}
	var out authorizationv1.SelfSubjectAccessReview
	if err := postJSON(ctx, client, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", req, &out); err != nil {
		return false, err
	}
	return out.Status.Allowed, nil
}

// dryRunCreate creates the Lease with dryRun=All: authorization and
// admission run, storage is not touched. AlreadyExists comes from storage,
// after admission, so it counts as allowed.
func dryRunCreate(ctx context.Context, client *Client, namespace, name string) (Allowed, error) {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	err := client.Coordination.Post().Namespace(namespace).Resource("leases").Param("dryRun", "All").Body(lease).Do(ctx).Error()
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return Yes, nil
	case apierrors.IsForbidden(err):
		return No, nil
	}
	return Unknown, err
}

// postJSON posts in as JSON to path and decodes the answer into out; the
// client's codec knows only the daemon's own API groups.
func postJSON(ctx context.Context, client *Client, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	raw, err := client.Core.Post().AbsPath(path).SetHeader("Content-Type", "application/json").
		SetHeader("Accept", "application/json").Body(body).Do(ctx).Raw()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// ConnectOnce loads the kubeconfig at path and checks once that the API
// server answers, for commands that must not wait the way the daemon does.
func ConnectOnce(ctx context.Context, path, userAgent string) (*Client, error) {
	return connect(ctx, path, userAgent, 0, 0)
}
