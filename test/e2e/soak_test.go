package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// TestSoakNoFalseFreezes runs l2lbd without any fault for $L2LB_SOAK (for
// example 30m; `make soak` sets it) and counts the times a daemon judged
// its view stale or restarted its informers: each is a false freeze, and
// the goal is none. Three nodes form one cluster; a fourth is a cluster of
// its own (its own Lease namespace and class), so that a lone node is
// measured in the same run.
func TestSoakNoFalseFreezes(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("L2LB_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("a soak: set L2LB_SOAK to a duration, as `make soak` does")
	}
	l := lab.Start(t, lab.Options{Nodes: 4})
	// The lone node's Leases live in a namespace of their own, which the
	// example RBAC (kube-system only) does not cover.
	if _, err := l.Client.CoreV1().Namespaces().Create(ctxBg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "l2lb-lone"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client.RbacV1().Roles("l2lb-lone").Create(ctxBg, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "l2lbd"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"*"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client.RbacV1().RoleBindings("l2lb-lone").Create(ctxBg, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "l2lbd"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "l2lbd"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "kube-system", Name: "l2lbd"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ds []*daemon
	for _, n := range l.Nodes[:3] {
		ds = append(ds, &daemon{node: n, config: writeConfig(t, n, defaultPools, "")})
	}
	ds = append(ds, &daemon{node: l.Nodes[3], config: writeConfig(t, l.Nodes[3],
		"pools: [{name: lone, addresses: [198.51.100.240-198.51.100.241]}]\n",
		"loadBalancerClass: l2lb.dev/lone\nserveUnclassed: false\ncoordination: {namespace: l2lb-lone}\n")})
	for _, d := range ds {
		d.start(t)
	}
	for i := range 4 {
		l.CreateLBService(ctxBg, "default", fmt.Sprintf("s%d", i))
	}
	l.CreateLBService(ctxBg, "default", "lone", lab.WithClass("l2lb.dev/lone"))
	waitIngress(t, l, "default", "lone", 1)

	t.Logf("soaking for %v", d)
	time.Sleep(d)
	for _, d := range ds {
		out := d.proc.Output()
		stale := strings.Count(out, "view of the cluster is stale")
		restarts := strings.Count(out, "restarting them")
		t.Logf("%s: %d stale views, %d informer restarts", d.node.Name, stale, restarts)
		if stale != 0 || restarts != 0 {
			t.Errorf("%s: %d false stale views and %d informer restarts without any fault", d.node.Name, stale, restarts)
		}
		if d.proc.Exited() {
			t.Errorf("%s exited", d.node.Name)
		}
	}
}
