package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/test/lab"
)

// TestFormerNamespacePeers: during a rolling upgrade from a version whose
// Leases lived in kube-system (its Role there still applied), a node of
// this version, coordinating in l2lb-system, finds a live peer that still
// renews its member Lease in kube-system and says so in an error line.
func TestFormerNamespacePeers(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 1})
	ctx := context.Background()
	// The Role the former examples/rbac.yaml granted in kube-system.
	ns := kube.FormerNamespace
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-former", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "l2lbd-former", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: lab.ServiceAccountNamespace, Name: lab.ServiceAccountName}}}
	if _, err := l.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An old node, renewing in kube-system.
	holder := "old-node"
	old := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: kube.MemberLeasePrefix + holder, Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	if _, err := l.Client.CoordinationV1().Leases(ns).Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := startDaemons(t, l, defaultPools, "")[0]
	lab.WaitFor(t, 30*time.Second, "an error line naming old-node", func(context.Context) bool {
		for line := range strings.Lines(d.proc.Output()) {
			if strings.Contains(line, "level=ERROR") && strings.Contains(line, "live nodes keep their member Leases in another namespace") &&
				strings.Contains(line, "old-node") {
				return true
			}
		}
		return false
	})
}
