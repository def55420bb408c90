package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/test/lab"
)

// TestLeastPrivilege (issue 15): examples/rbac.yaml applied with kubectl
// apply as a user applies it, every node on its own Node-bound token from
// the kubeconfig recipe. A node's credential writes its own member Lease and
// status.loadBalancer, and nothing of its peer or of the control plane;
// l2lbd check tells a broad credential from the right one; l2lbd serves and
// fails over on these credentials; a rejected token is logged in words and
// handed over, and a rewritten token file is picked up without a restart.
func TestLeastPrivilege(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 2})
	ctx, cancel := context.WithTimeout(ctxBg, 5*time.Minute)
	defer cancel()
	recipe, err := l.KubeconfigRecipe(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		if n.Kubeconfig, err = lab.RecipeKubeconfigFor(recipe, n.Name); err != nil {
			t.Fatal(err)
		}
		n.TokenFile = lab.RecipeToken(recipe, n.Name)
	}
	n0, n1 := l.Nodes[0], l.Nodes[1]
	const ns = lab.LeaseNamespace
	allowed := func(n *lab.Node, args ...string) {
		t.Helper()
		if out, err := n.Kubectl(ctx, args...); err != nil {
			t.Errorf("%s: kubectl %v: %v, want allowed:\n%s", n.Name, args, err, out)
		}
	}
	forbidden := func(n *lab.Node, why string, args ...string) {
		t.Helper()
		out, err := n.Kubectl(ctx, args...)
		if err == nil || !strings.Contains(string(out), "Forbidden") || !strings.Contains(string(out), why) {
			t.Errorf("%s: kubectl %v = %v, want Forbidden (%s):\n%s", n.Name, args, err, why, out)
		}
	}
	leaseFile := func(name string) string {
		p := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(p, []byte("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: "+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", n0.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c0, err := kubernetes.NewForConfig(cfg) // node-0's credential, through client-go as the daemon's
	if err != nil {
		t.Fatal(err)
	}
	const byRBAC = "cannot" // RBAC's "User ... cannot create resource ..."
	const byPolicy = "l2lbd-member-lease"

	t.Log("step: the own member Lease, and no other")
	{
		own, peer := "l2lbd-"+n0.Name, "l2lbd-"+n1.Name
		allowed(n0, "-n", ns, "create", "-f", leaseFile(own))
		allowed(n0, "-n", ns, "replace", "-f", leaseFile(own))
		allowed(n0, "-n", ns, "delete", "lease", own)
		forbidden(n0, byPolicy, "-n", ns, "create", "-f", leaseFile(peer))
		if _, err := l.Client.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: peer}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		forbidden(n0, byPolicy, "-n", ns, "replace", "-f", leaseFile(peer))
		forbidden(n0, byPolicy, "-n", ns, "delete", "lease", peer)
		if err := l.Client.CoordinationV1().Leases(ns).Delete(ctx, peer, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Log("step: nothing of the control plane")
	{
		kcm := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager"}}
		if _, err := l.Client.CoordinationV1().Leases("kube-system").Create(ctx, kcm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer l.Client.CoordinationV1().Leases("kube-system").Delete(ctxBg, kcm.Name, metav1.DeleteOptions{})
		forbidden(n0, byRBAC, "-n", "kube-system", "delete", "lease", "kube-controller-manager")
		forbidden(n0, byRBAC, "-n", "kube-system", "replace", "-f", leaseFile("kube-controller-manager"))
		forbidden(n0, byRBAC, "-n", "kube-system", "create", "-f", leaseFile("l2lbd-"+n0.Name))
		forbidden(n0, byRBAC, "get", "secrets", "-A")
		forbidden(n0, byRBAC, "-n", "kube-system", "get", "secrets")
	}

	t.Log("step: Service status.loadBalancer, and nothing else of a Service")
	{
		// A class no daemon serves: nobody else writes its status.
		l.CreateLBService(ctx, "default", "probe", lab.WithClass("example.com/other"))
		defer l.DeleteService(ctxBg, "default", "probe")
		forbidden(n0, byRBAC, "patch", "service", "probe", "--type=merge", "-p", `{"spec":{"externalIPs":["198.51.100.99"]}}`)
		forbidden(n0, byRBAC, "label", "service", "probe", "probe=1")
		// The status patches go through client-go, as the daemon's do:
		// kubectl patch --subresource=status first reads services/status,
		// which the daemon never does and the RBAC does not grant.
		patchStatus := func(patch string) error {
			_, err := c0.CoreV1().Services("default").Patch(ctx, "probe", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
			return err
		}
		if err := patchStatus(`{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.99"}]}}}`); err != nil {
			t.Errorf("patch status.loadBalancer: %v, want allowed", err)
		}
		err := patchStatus(`{"status":{"conditions":[{"type":"Probe","status":"True","reason":"Probe","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may change only status.loadBalancer") {
			t.Errorf("patch status.conditions: %v, want Forbidden by l2lbd-service-status", err)
		}
		// The rule is l2lbd's alone: another writer of Service status (a
		// cloud controller; the admin here) may write the conditions.
		if _, err := l.Client.CoreV1().Services("default").Patch(ctx, "probe", types.MergePatchType,
			[]byte(`{"status":{"conditions":[{"type":"Probe","status":"True","reason":"Probe","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`),
			metav1.PatchOptions{}, "status"); err != nil {
			t.Errorf("admin patch status.conditions: %v, want allowed", err)
		}
		// Metadata through the status subresource: refused, or dropped by
		// the API server; never applied.
		err = patchStatus(`{"metadata":{"labels":{"probe":"1"}}}`)
		svc, gerr := l.Client.CoreV1().Services("default").Get(ctx, "probe", metav1.GetOptions{})
		if gerr != nil || svc.Labels["probe"] != "" {
			t.Errorf("label through status: %v; Service labels now %v (%v), want unchanged", err, svc.Labels, gerr)
		}
		t.Logf("label through status: %v", err)
		// The spec through the status subresource: the API server keeps
		// the old one (the policy leaves this to it).
		err = patchStatus(`{"spec":{"externalIPs":["198.51.100.99"]}}`)
		svc, gerr = l.Client.CoreV1().Services("default").Get(ctx, "probe", metav1.GetOptions{})
		if gerr != nil || len(svc.Spec.ExternalIPs) != 0 {
			t.Errorf("spec through status: %v; Service externalIPs now %v (%v), want unchanged", err, svc.Spec.ExternalIPs, gerr)
		}
	}

	t.Log("step: Events only in the node's own name")
	{
		eventAs := func(instance, host string) error {
			ev := &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: "probe-"},
				InvolvedObject: corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: "default", Name: "probe"},
				Reason:         "Probe", Message: "probe", Type: corev1.EventTypeNormal,
				Source:              corev1.EventSource{Component: "l2lbd", Host: host},
				ReportingController: "l2lb.dev/l2lbd", ReportingInstance: instance,
			}
			_, err := c0.CoreV1().Events("default").Create(ctx, ev, metav1.CreateOptions{})
			return err
		}
		event := func(instance string) error { return eventAs(instance, n0.Name) }
		if err := eventAs("l2lbd-"+n0.Name, n1.Name); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "l2lbd-events") {
			t.Errorf("Event from %s with source host %s: %v, want Forbidden by l2lbd-events", n0.Name, n1.Name, err)
		}
		if err := event("l2lbd-" + n0.Name); err != nil {
			t.Errorf("Event as l2lbd-%s: %v, want allowed", n0.Name, err)
		}
		if err := event("l2lbd-" + n1.Name); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "l2lbd-events") {
			t.Errorf("Event as l2lbd-%s from %s: %v, want Forbidden by l2lbd-events", n1.Name, n0.Name, err)
		}
	}

	t.Log("step: l2lbd check, quiet on the right credential, warning on broad ones")
	{
		check := func(node *lab.Node, kubeconfig, nodeName string) string {
			t.Helper()
			path := filepath.Join(t.TempDir(), "check.yaml")
			conf := "nodeName: " + nodeName + "\nkubeconfig: " + kubeconfig + "\n" + defaultPools
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := node.Exec(ctx, l2lbd, "check", "--config", path)
			if err != nil {
				t.Errorf("l2lbd check (%s as %s): %v\n%s", kubeconfig, nodeName, err, out)
			}
			return string(out)
		}
		want := func(what, out string, parts ...string) {
			t.Helper()
			for _, p := range parts {
				if !strings.Contains(out, p) {
					t.Errorf("l2lbd check with %s: no %q in:\n%s", what, p, out)
				}
			}
		}
		out := check(n0, n0.Kubeconfig, n0.Name)
		want("the right credential", out, "credential: system:serviceaccount:l2lb-system:l2lbd, bound to Node "+n0.Name)
		if strings.Contains(out, "warning") {
			t.Errorf("l2lbd check with the right credential warns:\n%s", out)
		}
		t.Logf("l2lbd check with the right credential:\n%s", out)
		out = check(n0, l.AdminKubeconfig, n0.Name)
		t.Logf("l2lbd check with an admin kubeconfig:\n%s", out)
		want("an admin credential", out,
			"may create, update, patch, delete leases in kube-system; create, update, patch, delete leases in kube-node-lease; create, update, patch, delete leases in all namespaces",
			"is bound to no Node",
			"may write another node's member Lease (a dry-run create of "+kube.PeerLeaseProbe(n0.Name)+" was admitted)")
		out = check(n0, n0.Kubeconfig, n1.Name)
		want("another node's token", out, "bound to Node "+n0.Name+" but nodeName is "+n1.Name, "may not write its own member Lease l2lbd-"+n1.Name)
		// A token of the right account bound to nothing: what the recipe
		// made before issue 15.
		unbound := filepath.Join(t.TempDir(), "unbound.kubeconfig")
		tr, err := l.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, lab.ServiceAccountName, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeTokenKubeconfig(t, n0.Kubeconfig, unbound, tr.Status.Token)
		out = check(n0, unbound, n0.Name)
		want("an unbound token", out, "is bound to no Node", "may not write its own member Lease")
		out = check(n0, filepath.Join(t.TempDir(), "absent"), n0.Name)
		want("no kubeconfig", out, "credential: check skipped, no API server reachable")
	}

	t.Log("step: l2lbd serves on these credentials")
	for _, n := range l.Nodes {
		l.ServeHTTP(n)
	}
	ds := startDaemons(t, l, defaultPools, "")
	lab.WaitFor(t, 20*time.Second, "every node's member Lease", func(ctx context.Context) bool {
		for _, n := range l.Nodes {
			if _, err := l.Client.CoordinationV1().Leases(ns).Get(ctx, "l2lbd-"+n.Name, metav1.GetOptions{}); err != nil {
				return false
			}
		}
		return true
	})
	l.CreateLBService(ctx, "default", "web")
	ip := waitIngress(t, l, "default", "web", 1)[0]
	standIn(t, l, ip)
	o := owner(t, l, ip)
	p := otherNode(l, o)
	if body, err := l.Net.Client.Curl(ctx, ip, 80); err != nil || body != o.Name {
		t.Errorf("curl %s = %q, %v; want %s", ip, body, err, o.Name)
	}
	lab.WaitFor(t, 10*time.Second, "the IPAM leader's Event on default/web", func(ctx context.Context) bool {
		return slices.ContainsFunc(events(ctx, l, "default", "web"), func(e string) bool { return strings.HasPrefix(e, "IPAllocated: ") })
	})

	t.Log("step: a token the API server rejects: logged in words, not live, handed over")
	od := daemonOn(ds, o)
	if err := os.WriteFile(o.TokenFile, []byte("expired"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// client-go re-reads tokenFile when its copy is 50 s old.
	lab.WaitFor(t, 90*time.Second, o.Name+" logs the rejected credential", func(context.Context) bool {
		return strings.Contains(od.proc.Output(), "the API server rejects this node's credential (401 Unauthorized)")
	})
	t.Logf("%s saw its token rejected %v after the file was rewritten", o.Name, time.Since(start).Round(time.Second))
	lab.WaitFor(t, 30*time.Second, p.Name+" answers "+ip.String(), func(context.Context) bool {
		macs := answering(t, l, ip)
		return len(macs) == 1 && nodeByMAC(l, macs[0]) == p
	})
	if lease := memberLease(t, l, o); time.Since(lease.Spec.RenewTime.Time) < 3*time.Second {
		t.Errorf("%s's member Lease renewed %v ago with a rejected token", o.Name, time.Since(lease.Spec.RenewTime.Time))
	}

	t.Log("step: a new token written to the file is picked up without a restart")
	renewed := strings.Count(od.proc.Output(), "member Lease renewed again")
	tok, err := l.NodeToken(ctx, o.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.TokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	lab.WaitFor(t, 30*time.Second, o.Name+" renews its member Lease again", func(context.Context) bool {
		return strings.Count(od.proc.Output(), "member Lease renewed again") > renewed
	})
	t.Logf("%s renewed with the new token %v after the file was rewritten", o.Name, time.Since(start).Round(time.Millisecond))
	if od.proc.Exited() {
		t.Fatalf("%s's l2lbd exited", o.Name)
	}
	lab.WaitFor(t, 10*time.Second, o.Name+"'s member Lease fresh", func(context.Context) bool {
		return time.Since(memberLease(t, l, o).Spec.RenewTime.Time) < 2*time.Second
	})

	t.Log("step: failover to the node whose token was rotated")
	// The rotated node's informers may still be in the backoff (up to 30 s)
	// that the rejected watches earned them.
	daemonOn(ds, p).proc.Signal(syscall.SIGKILL)
	start = time.Now()
	lab.WaitFor(t, 60*time.Second, o.Name+" answers "+ip.String(), func(context.Context) bool {
		macs := answering(t, l, ip)
		return len(macs) == 1 && nodeByMAC(l, macs[0]) == o
	})
	t.Logf("failover to %s in %v", o.Name, time.Since(start).Round(time.Millisecond))
	if body, err := l.Net.Client.Curl(ctx, ip, 80); err != nil || body != o.Name {
		t.Errorf("curl %s after failover = %q, %v; want %s", ip, body, err, o.Name)
	}

	t.Log("step: a Node-bound token dies with its Node")
	l.RecreateNode(p)
	// The API server caches a successful authentication for 10 s.
	start = time.Now()
	lab.WaitFor(t, 30*time.Second, "the token of "+p.Name+"'s deleted Node object rejected", func(ctx context.Context) bool {
		out, err := p.Kubectl(ctx, "auth", "whoami")
		return err != nil && strings.Contains(string(out), "Unauthorized")
	})
	t.Logf("the token of %s's deleted Node object rejected after %v", p.Name, time.Since(start).Round(time.Millisecond))
}

// otherNode is the lab node that is not n, in a lab of two.
func otherNode(l *lab.Lab, n *lab.Node) *lab.Node {
	i := slices.IndexFunc(l.Nodes, func(m *lab.Node) bool { return m != n })
	return l.Nodes[i]
}

func memberLease(t *testing.T, l *lab.Lab, n *lab.Node) *coordinationv1.Lease {
	t.Helper()
	lease, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctxBg, kube.MemberLeasePrefix+n.Name, metav1.GetOptions{})
	if err != nil || lease.Spec.RenewTime == nil {
		t.Fatalf("member Lease of %s: %v", n.Name, err)
	}
	return lease
}

// writeTokenKubeconfig writes a copy of kubeconfig whose users carry token
// inline instead of reading a tokenFile.
func writeTokenKubeconfig(t *testing.T, kubeconfig, out, token string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.TokenFile, a.Token = "", token
	}
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
}
