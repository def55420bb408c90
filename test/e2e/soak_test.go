package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	grantLoneCluster(t, l)
	var ds []*daemon
	for _, n := range l.Nodes[:3] {
		ds = append(ds, &daemon{node: n, config: writeConfig(t, n, defaultPools, "")})
	}
	ds = append(ds, &daemon{node: l.Nodes[3], config: writeConfig(t, l.Nodes[3], lonePools, loneCluster)})
	for _, d := range ds {
		d.start(t)
	}
	soak(t, l, d)
	for _, d := range ds {
		out := d.proc.Output()
		stale := strings.Count(out, staleLine)
		restarts := strings.Count(out, refreshLine)
		t.Logf("%s: %d stale views, %d informer restarts", d.node.Name, stale, restarts)
		if stale != 0 || restarts != 0 {
			t.Errorf("%s: %d false stale views and %d informer restarts without any fault", d.node.Name, stale, restarts)
		}
		if d.proc.Exited() {
			t.Errorf("%s exited", d.node.Name)
		}
	}
}

// The lone node of the soaks is a cluster of its own: its own pool, class
// and Lease namespace.
const (
	lonePools   = "pools: [{name: lone, addresses: [198.51.100.240-198.51.100.241]}]\n"
	loneCluster = "loadBalancerClass: l2lb.dev/lone\nserveUnclassed: false\ncoordination: {namespace: l2lb-lone}\n"
)

// grantLoneCluster creates the lone cluster's Lease namespace and lets
// l2lbd's ServiceAccount use it: the example RBAC covers l2lb-system only.
func grantLoneCluster(t *testing.T, l *lab.Lab) {
	t.Helper()
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
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: lab.ServiceAccountNamespace, Name: lab.ServiceAccountName}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSoakBootedNoFalseFreezes is TestSoakNoFalseFreezes as users run
// l2lbd: the .deb installed on booted systemd machines, each with the
// kubeconfig of the example recipe, three in one cluster and a lone one in
// another. Stale views and informer restarts are counted in the journal;
// the unit must not have restarted.
func TestSoakBootedNoFalseFreezes(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("L2LB_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("a soak: set L2LB_SOAK to a duration, as `make soak` does")
	}
	deb := buildDeb(t, "")
	l := lab.Start(t, lab.Options{Nodes: 4})
	grantLoneCluster(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kubeconfig, err := l.KubeconfigRecipe(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var machines []*lab.Machine
	for i, n := range l.Nodes {
		m := l.Boot(t, n)
		machines = append(machines, m)
		share(t, m, deb)
		installCredential := shareCredential(t, m, kubeconfig)
		config := operatorPools
		if i == 3 {
			config = lonePools + loneCluster
		}
		shareData(t, m, "l2lbd.yaml", []byte(config))
		sh(t, m, 2*time.Minute, "apt-get install -y "+lab.SharePath+"/"+filepath.Base(deb)+
			" && "+installCredential+
			" && "+fmt.Sprintf(installConfig, lab.SharePath+"/l2lbd.yaml")+" && systemctl enable --now l2lbd")
	}
	for _, m := range machines {
		checkRunning(t, m)
	}
	soak(t, l, d)
	for _, m := range machines {
		entries := journal(t, m)
		stale := len(findJournal(entries, staleLine))
		restarts := len(findJournal(entries, refreshLine))
		u := waitUnit(t, m, 10*time.Second, "l2lbd running", unit.running)
		t.Logf("%s: %d stale views, %d informer restarts, unit %v", m.Name, stale, restarts, u)
		if stale != 0 || restarts != 0 || u["NRestarts"] != "0" {
			t.Errorf("%s: %d false stale views, %d informer restarts and %s unit restarts without any fault", m.Name, stale, restarts, u["NRestarts"])
		}
	}
}

// What l2lbd logs when it judges its view stale, and when it restarts its
// informers: each is a false freeze in a soak without faults.
const (
	staleLine   = "view of the cluster is stale"
	refreshLine = "restarting them"
)

// soak creates four Services of the main cluster and one of the lone one,
// waits for the lone one's address, and lets d pass.
func soak(t *testing.T, l *lab.Lab, d time.Duration) {
	t.Helper()
	for i := range 4 {
		l.CreateLBService(ctxBg, "default", fmt.Sprintf("s%d", i))
	}
	l.CreateLBService(ctxBg, "default", "lone", lab.WithClass("l2lb.dev/lone"))
	waitIngress(t, l, "default", "lone", 1)
	t.Logf("soaking for %v", d)
	time.Sleep(d)
}
