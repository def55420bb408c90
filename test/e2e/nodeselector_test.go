package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/test/lab"
)

// selectorPools announces pool lan only from nodes labelled lbLabel=yes.
const (
	lbLabel       = "l2lb.test/lb"
	selectorPools = `pools:
  - name: lan
    addresses: [198.51.100.200-198.51.100.207]
    nodeSelector:
      matchLabels: {"` + lbLabel + `": "yes"}
`
)

// labelLB sets (value "yes" or "no") the lb label of a Node.
func labelLB(t testing.TB, l *lab.Lab, node, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, lbLabel, value)
	if _, err := l.Client.CoreV1().Nodes().Patch(ctxBg, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("label %s %s=%s: %v", node, lbLabel, value, err)
	}
}

// TestNodeSelector: only nodes a pool's nodeSelector matches announce it;
// relabelling the owner hands the address over at once (the client's
// neighbour entry moves on the new owner's announcement), and with no
// matching node nobody answers.
func TestNodeSelector(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 3})
	for _, n := range l.Nodes {
		l.ServeHTTP(n)
	}
	labelLB(t, l, "node-0", "yes")
	labelLB(t, l, "node-1", "yes")
	labelLB(t, l, "node-2", "no")
	startDaemons(t, l, selectorPools, "")
	ns := config.Default().Coordination.Namespace
	lab.WaitFor(t, 20*time.Second, "every node's member Lease", func(ctx context.Context) bool {
		for _, n := range l.Nodes {
			if _, err := l.Client.CoordinationV1().Leases(ns).Get(ctx, "l2lbd-"+n.Name, metav1.GetOptions{}); err != nil {
				return false
			}
		}
		return true
	})

	l.CreateLBService(ctxBg, "default", "web")
	ip := waitIngress(t, l, "default", "web", 1)[0]
	standIn(t, l, ip)
	first := owner(t, l, ip)
	if first.Name == "node-2" {
		t.Fatalf("%s is announced by node-2, which the nodeSelector does not match", ip)
	}
	other := "node-0"
	if first.Name == "node-0" {
		other = "node-1"
	}

	// The owner stops matching: the other labelled node takes over by
	// announcement, without the client asking, well before a Lease expiry.
	old := populateNeigh(t, l, ip)
	start := time.Now()
	labelLB(t, l, first.Name, "no")
	mac, took := neighMovesFrom(t, l, ip, old, start, 10*time.Second)
	t.Logf("handover on relabel of %s: %s -> %s in %v", ip, first.Name, nodeByMAC(l, mac).Name, took)
	if n := nodeByMAC(l, mac); n == nil || n.Name != other {
		t.Errorf("%s moved to %v, want %s", ip, n, other)
	}
	if took > 2*time.Second {
		t.Errorf("handover on relabel took %v, want under 2 s (no Lease expiry)", took)
	}
	if macs := answering(t, l, ip); len(macs) != 1 || macs[0] != mac {
		t.Errorf("after the handover %s is answered by %v, want only %s", ip, macs, mac)
	}
	if body, err := l.Net.Client.Curl(ctxBg, ip, 80); err != nil || body != other {
		t.Errorf("curl %s: %q (%v), want %s", ip, body, err, other)
	}

	// No node matches: nobody answers.
	labelLB(t, l, other, "no")
	lab.WaitFor(t, 10*time.Second, "nobody answering "+ip.String(), func(context.Context) bool {
		return len(answering(t, l, ip)) == 0
	})

	// node-2 starts matching: it answers.
	labelLB(t, l, "node-2", "yes")
	waitOwner(t, l, ip, "node-2")
}
