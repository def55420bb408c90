package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/kube"
)

// checkCredential asks the API server, when it is reachable, what the
// daemon's credential may do, and prints a warning with the fix for every
// right it has beyond its own objects. Without an API server it says that
// it skipped the check.
func checkCredential(stdout, stderr io.Writer, c *config.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := kube.ConnectOnce(ctx, c.Kubeconfig, "l2lbd-check")
	if err != nil {
		if p := kube.CredentialProblem(err); p != "" {
			fmt.Fprintf(stderr, "warning: credential: %s\n", p)
			return
		}
		fmt.Fprintf(stdout, "credential: check skipped, no API server reachable (%v)\n", err)
		return
	}
	a := kube.ProbeAccess(ctx, client, c.Coordination.Namespace, c.NodeName)
	warnings := credentialWarnings(c.Coordination.Namespace, c.NodeName, a)
	for _, w := range warnings {
		fmt.Fprintln(stderr, w)
	}
	if len(warnings) == 0 {
		fmt.Fprintf(stdout, "credential: %s, bound to Node %s; writes no Lease outside %s and no other node's member Lease\n",
			a.User, a.NodeName, c.Coordination.Namespace)
	}
}

// credentialWarnings turns what the API server said about the credential
// into warnings, each with its fix.
func credentialWarnings(namespace, node string, a kube.Access) []string {
	const recipe = " (examples/rbac.yaml, examples/kubeconfig.md)"
	var ws []string
	if namespace == "kube-system" {
		ws = append(ws, "warning: coordination.namespace is kube-system, next to the control plane's leader-election Leases: "+
			"use a namespace of l2lb's own, l2lb-system by default"+recipe)
	}
	if len(a.ElsewhereLeases) > 0 {
		ws = append(ws, fmt.Sprintf("warning: credential %s may %s: it could stall or hijack other components' leader election. "+
			"Grant Leases only in %s, through the Role of examples/rbac.yaml, and remove other grants "+
			"(kubectl auth can-i --list --as=%s)", a.User, strings.Join(a.ElsewhereLeases, "; "), namespace, a.User))
	}
	switch {
	case a.User == "":
	case a.NodeName == "":
		ws = append(ws, "warning: the credential of "+a.User+" is bound to no Node, so the API server cannot tell "+
			"this node from the others and the admission policy l2lbd-member-lease cannot confine it to its own Lease. "+
			"Give each node its own token, kubectl create token --bound-object-kind Node --bound-object-name "+node+recipe)
	case a.NodeName != node:
		ws = append(ws, "warning: the token is bound to Node "+a.NodeName+" but nodeName is "+node+
			": make this node's token with --bound-object-name "+node+recipe)
	}
	if a.PeerLease == kube.Yes {
		ws = append(ws, "warning: this credential may write another node's member Lease (a dry-run create of "+
			kube.PeerLeaseProbe(node)+" was admitted), so one node could forge its peers' claims and liveness: "+
			"apply the ValidatingAdmissionPolicy l2lbd-member-lease with its binding and give each node a Node-bound token"+recipe)
	}
	if a.OwnLease == kube.No {
		ws = append(ws, "warning: this credential may not write its own member Lease "+kube.MemberLeasePrefix+node+" in "+namespace+
			": l2lbd cannot join. Check coordination.namespace, nodeName and the token's Node"+recipe)
	}
	for _, err := range a.Errors {
		ws = append(ws, fmt.Sprintf("warning: credential: could not check: %v", err))
	}
	return ws
}
