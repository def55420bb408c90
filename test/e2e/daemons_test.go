package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/l2lb/l2lb/daemon/ipam"
	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/test/lab"
)

// l2lbd is the daemon binary under test, built once by TestMain.
var l2lbd string

func TestMain(m *testing.M) { lab.MainWithL2lbd(m, &l2lbd) }

// defaultPools is the pools section the tests start with: 8 IPv4 and 8 IPv6
// addresses for auto-assignment, a manual pool and one only for namespace
// "team".
const defaultPools = `pools:
  - name: lan
    addresses: [198.51.100.200-198.51.100.207, "2001:db8:100::200-2001:db8:100::207"]
  - name: manual
    addresses: [198.51.100.210-198.51.100.211]
    autoAssign: false
  - name: team
    addresses: [198.51.100.220-198.51.100.221]
    namespaces: [team]
`

// daemon is one l2lbd process on a lab node.
type daemon struct {
	node   *lab.Node
	config string
	proc   *lab.Proc
}

// writeConfig writes node's configuration: its identity plus pools and extra.
func writeConfig(t testing.TB, node *lab.Node, pools, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), node.Name+".yaml")
	conf := fmt.Sprintf("nodeName: %s\nkubeconfig: %s\nlog: {level: debug}\n%s%s", node.Name, node.Kubeconfig, pools, extra)
	if !strings.Contains(extra, "metrics:") {
		conf += "metrics: {address: \"\"}\n"
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startDaemons runs l2lbd on every node of l with the given pools.
func startDaemons(t testing.TB, l *lab.Lab, pools, extra string) []*daemon {
	t.Helper()
	var ds []*daemon
	for _, n := range l.Nodes {
		d := &daemon{node: n, config: writeConfig(t, n, pools, extra)}
		d.start(t)
		ds = append(ds, d)
	}
	return ds
}

func (d *daemon) start(t testing.TB) {
	t.Helper()
	d.proc = d.node.Start(t, l2lbd, "run", "--config", d.config)
}

// ipamLeader returns the node whose live member Lease claims the IPAM leader
// role, waiting (bounded) until exactly one does. A Lease is live when
// renewed within the default lease duration (one clock: the lab's).
func ipamLeader(t testing.TB, l *lab.Lab) string {
	t.Helper()
	var leader string
	lab.WaitFor(t, 20*time.Second, "one IPAM leader", func(ctx context.Context) bool {
		list, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		var claimants []string
		for _, lease := range list.Items {
			live := lease.Spec.RenewTime != nil && time.Since(lease.Spec.RenewTime.Time) < 3*time.Second
			if node, m, ok := kube.ParseMember(&lease); ok && live && m.Leader {
				claimants = append(claimants, node)
			}
		}
		if len(claimants) != 1 {
			return false
		}
		leader = claimants[0]
		return true
	})
	return leader
}

// ingress returns the addresses in the Service's status.
func ingress(ctx context.Context, l *lab.Lab, ns, name string) ([]netip.Addr, error) {
	svc, err := l.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return ipam.IngressIPs(svc), nil
}

// waitIngress waits until the Service's status holds n addresses and returns them.
func waitIngress(t testing.TB, l *lab.Lab, ns, name string, n int) []netip.Addr {
	t.Helper()
	var ips []netip.Addr
	lab.WaitFor(t, 30*time.Second, fmt.Sprintf("%d status address(es) on %s/%s", n, ns, name), func(ctx context.Context) bool {
		got, err := ingress(ctx, l, ns, name)
		ips = got
		return err == nil && len(got) == n
	})
	return ips
}

// events returns "Reason: message" of every Event about the Service.
func events(ctx context.Context, l *lab.Lab, ns, name string) []string {
	list, err := l.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	slices.Sort(out)
	return out
}

// waitEvent waits for an Event on the Service containing want.
func waitEvent(t testing.TB, l *lab.Lab, ns, name, want string) {
	t.Helper()
	lab.WaitFor(t, 20*time.Second, fmt.Sprintf("an Event %q on %s/%s", want, ns, name), func(ctx context.Context) bool {
		return slices.ContainsFunc(events(ctx, l, ns, name), func(e string) bool { return strings.Contains(e, want) })
	})
}

var ctxBg = context.Background()

func lbSvcs(l *lab.Lab) []corev1.Service {
	list, err := l.Client.CoreV1().Services("").List(ctxBg, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	return list.Items
}
