package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/l2lb/l2lb/test/lab"
)

// TestAllocation: IPs appear in status from the right pools, dual-stack gets
// one per family, and refusals are Events with no status.
func TestAllocation(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 3})
	startDaemons(t, l, defaultPools, "")
	ctx := ctxBg

	l.CreateLBService(ctx, "default", "first")
	if got := waitIngress(t, l, "default", "first", 1); got[0] != netip.MustParseAddr("198.51.100.200") {
		t.Errorf("first Service got %v, want the lowest free address 198.51.100.200", got)
	}
	waitEvent(t, l, "default", "first", "IPAllocated: Assigned 198.51.100.200")

	l.CreateLBService(ctx, "default", "dual", lab.WithDualStack())
	got := waitIngress(t, l, "default", "dual", 2)
	if !got[0].Is4() || !got[1].Is6() || got[0] != netip.MustParseAddr("198.51.100.201") || got[1] != netip.MustParseAddr("2001:db8:100::200") {
		t.Errorf("dual-stack Service got %v, want [198.51.100.201 2001:db8:100::200]", got)
	}

	l.CreateLBService(ctx, "default", "manual", lab.WithAnnotation("l2lb.dev/pool", "manual"))
	if got := waitIngress(t, l, "default", "manual", 1); got[0] != netip.MustParseAddr("198.51.100.210") {
		t.Errorf("pool annotation: got %v, want 198.51.100.210", got)
	}
	l.CreateLBService(ctx, "default", "asked", lab.WithLoadBalancerIP(netip.MustParseAddr("198.51.100.205")))
	if got := waitIngress(t, l, "default", "asked", 1); got[0] != netip.MustParseAddr("198.51.100.205") {
		t.Errorf("spec.loadBalancerIP: got %v", got)
	}
	l.CreateLBService(ctx, "team", "team-svc", lab.WithAnnotation("l2lb.dev/pool", "team"))
	if got := waitIngress(t, l, "team", "team-svc", 1); got[0] != netip.MustParseAddr("198.51.100.220") {
		t.Errorf("namespace pool: got %v", got)
	}
	// Sharing: same key, different ports.
	l.CreateLBService(ctx, "default", "share-a", lab.WithAnnotation("l2lb.dev/allow-shared-ip", "k"))
	l.CreateLBService(ctx, "default", "share-b", lab.WithAnnotation("l2lb.dev/allow-shared-ip", "k"),
		lab.WithPorts(corev1.ServicePort{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443}))
	a, b := waitIngress(t, l, "default", "share-a", 1), waitIngress(t, l, "default", "share-b", 1)
	if a[0] != b[0] {
		t.Errorf("sharing Services got %v and %v, want one address", a, b)
	}

	// Refusals: each gets a Warning Event and no status.
	refusals := []struct {
		ns, name string
		opts     []lab.ServiceOption
		event    string
	}{
		{"default", "outside", []lab.ServiceOption{lab.WithLoadBalancerIP(netip.MustParseAddr("198.51.100.1"))}, "AllocationFailed: 198.51.100.1 is not in any pool"},
		{"default", "forbidden", []lab.ServiceOption{lab.WithAnnotation("l2lb.dev/ips", "198.51.100.221")}, "AllocationFailed: 198.51.100.221 is in pool team, which namespace default may not use"},
		{"default", "taken", []lab.ServiceOption{lab.WithAnnotation("l2lb.dev/ips", "198.51.100.200")}, "AllocationFailed: 198.51.100.200 is in use by Service default/first (not shared)"},
		{"default", "garbled", []lab.ServiceOption{lab.WithAnnotation("l2lb.dev/ips", "198.51.100.999")}, `AllocationFailed: l2lb.dev/ips: "198.51.100.999" is not an IP address`},
		{"default", "nopool", []lab.ServiceOption{lab.WithAnnotation("l2lb.dev/pool", "nope")}, `AllocationFailed: pool "nope" does not exist`},
	}
	for _, r := range refusals {
		l.CreateLBService(ctx, r.ns, r.name, r.opts...)
	}
	for _, r := range refusals {
		waitEvent(t, l, r.ns, r.name, r.event)
		if got, _ := ingress(ctx, l, r.ns, r.name); len(got) != 0 {
			t.Errorf("%s/%s: refused but status has %v", r.ns, r.name, got)
		}
	}

	// Exhaust the IPv4 addresses of "lan" (8; 4 taken or shared so far).
	for i := range 4 {
		l.CreateLBService(ctx, "default", fmt.Sprintf("fill-%d", i))
	}
	for i := range 4 {
		waitIngress(t, l, "default", fmt.Sprintf("fill-%d", i), 1)
	}
	l.CreateLBService(ctx, "default", "one-too-many")
	waitEvent(t, l, "default", "one-too-many", "AllocationFailed: every IPv4 address of the pools open to it is in use")

	// Freeing an address lets the waiting Service in: deleting a Service,
	// or turning it into a ClusterIP Service (out of l2lb's scope).
	l.DeleteService(ctx, "default", "fill-0")
	waitIngress(t, l, "default", "one-too-many", 1)
	l.CreateLBService(ctx, "default", "waiting")
	waitEvent(t, l, "default", "waiting", "AllocationFailed: every IPv4 address of the pools open to it is in use")
	freed := waitIngress(t, l, "default", "fill-1", 1)[0]
	patch := []byte(`{"spec":{"type":"ClusterIP","externalTrafficPolicy":null,"allocateLoadBalancerNodePorts":null}}`)
	if _, err := l.Client.CoreV1().Services("default").Patch(ctx, "fill-1", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := waitIngress(t, l, "default", "waiting", 1); got[0] != freed {
		t.Errorf("after fill-1 left l2lb's scope, the waiting Service got %v, want its %s", got, freed)
	}

	// No Event is repeated on resyncs: every (reason, message) appears once.
	time.Sleep(2 * time.Second) // several reconciles happen meanwhile
	for _, r := range refusals {
		evs := events(ctx, l, r.ns, r.name)
		if len(evs) != 1 {
			t.Errorf("%s/%s: want exactly one Event, got %q", r.ns, r.name, evs)
		}
	}
}

// TestRestartKeepsAssignments: 300 Services, then a restart of every daemon
// changes no address, and allocation continues afterwards.
func TestRestartKeepsAssignments(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 3})
	pools := "pools:\n  - name: big\n    addresses: [198.51.100.200-198.51.100.250, \"2001:db8:100::1000/116\"]\n"
	ds := startDaemons(t, l, pools, "")
	const n = 300
	l.CreateLBServices(ctxBg, "default", n, 10, func(i int) string { return fmt.Sprintf("svc-%03d", i) },
		lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	before := waitAllAssigned(t, l, n)

	for _, d := range ds {
		d.proc.Signal(syscall.SIGKILL)
	}
	for _, d := range ds {
		d.proc.Wait(5 * time.Second)
	}
	for _, d := range ds {
		d.start(t)
	}
	// The new leader has adopted everything once a new Service is allocated.
	ipamLeader(t, l)
	l.CreateLBService(ctxBg, "default", "after-restart", lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	waitIngress(t, l, "default", "after-restart", 1)

	after := assignments(t, l)
	delete(after, "default/after-restart")
	if !maps.EqualFunc(before, after, slices.Equal) {
		for k, v := range before {
			if !slices.Equal(after[k], v) {
				t.Errorf("%s: %v before the restart, %v after", k, v, after[k])
			}
		}
	}
}

// assignments maps namespace/name to status addresses for every Service.
func assignments(t testing.TB, l *lab.Lab) map[string][]netip.Addr {
	t.Helper()
	out := map[string][]netip.Addr{}
	for _, svc := range lbSvcs(l) {
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			out[svc.Namespace+"/"+svc.Name] = ingressOf(&svc)
		}
	}
	return out
}

func ingressOf(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		out = append(out, netip.MustParseAddr(ing.IP))
	}
	return out
}

// waitAllAssigned waits until n LoadBalancer Services have one address each,
// all distinct, and returns the assignments.
func waitAllAssigned(t testing.TB, l *lab.Lab, n int) map[string][]netip.Addr {
	t.Helper()
	var got map[string][]netip.Addr
	lab.WaitFor(t, 60*time.Second, fmt.Sprintf("%d Services with an address", n), func(context.Context) bool {
		got = assignments(t, l)
		done := 0
		for _, v := range got {
			if len(v) == 1 {
				done++
			}
		}
		return done == n
	})
	seen := map[netip.Addr]string{}
	for k, v := range got {
		if other, dup := seen[v[0]]; dup {
			t.Fatalf("%s and %s both got %s", k, other, v[0])
		}
		seen[v[0]] = k
	}
	return got
}

// TestLeaderHandover: killing the IPAM leader hands the role over and
// allocation continues.
func TestLeaderHandover(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 3})
	ds := startDaemons(t, l, defaultPools, "")
	l.CreateLBService(ctxBg, "default", "before")
	waitIngress(t, l, "default", "before", 1)

	leader := ipamLeader(t, l)
	for _, d := range ds {
		if d.node.Name == leader {
			d.proc.Signal(syscall.SIGKILL)
		}
	}
	l.CreateLBService(ctxBg, "default", "after")
	if got := waitIngress(t, l, "default", "after", 1); got[0] != netip.MustParseAddr("198.51.100.201") {
		t.Errorf("after the handover got %v, want 198.51.100.201", got)
	}
	if now := ipamLeader(t, l); now == leader {
		t.Errorf("leader is still %s after it was killed", now)
	}
	if got, _ := ingress(ctxBg, l, "default", "before"); len(got) != 1 || got[0] != netip.MustParseAddr("198.51.100.200") {
		t.Errorf("the new leader changed an existing assignment: %v", got)
	}
}

// TestConfigEditReallocates: removing an in-use range from the pools
// re-allocates its Services loudly on every node's next reload.
func TestConfigEditReallocates(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 2})
	ds := startDaemons(t, l, defaultPools, "")
	l.CreateLBService(ctxBg, "default", "moving")
	if got := waitIngress(t, l, "default", "moving", 1); got[0] != netip.MustParseAddr("198.51.100.200") {
		t.Fatalf("got %v", got)
	}
	edited := strings.Replace(defaultPools, "198.51.100.200-198.51.100.207", "198.51.100.230-198.51.100.237", 1)
	for _, d := range ds {
		os.WriteFile(d.config, []byte(strings.Replace(mustRead(t, d.config), defaultPools, edited, 1)), 0o644)
	}
	lab.WaitFor(t, 20*time.Second, "the Service to move to 198.51.100.230", func(ctx context.Context) bool {
		got, err := ingress(ctx, l, "default", "moving")
		return err == nil && len(got) == 1 && got[0] == netip.MustParseAddr("198.51.100.230")
	})
	waitEvent(t, l, "default", "moving", "IPReallocated: Re-allocated 198.51.100.200 -> 198.51.100.230")
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCutOffLeader: an IPAM leader cut off from the API server is replaced,
// allocation goes on, and once it is back there is again exactly one leader
// and no address is handed out twice.
func TestCutOffLeader(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 3})
	startDaemons(t, l, defaultPools, "")
	l.CreateLBService(ctxBg, "default", "before")
	waitIngress(t, l, "default", "before", 1)

	leader := ipamLeader(t, l)
	var cut *lab.Node
	for _, n := range l.Nodes {
		if n.Name == leader {
			cut = n
		}
	}
	l.CutOff(cut)
	l.CreateLBService(ctxBg, "default", "during")
	waitIngress(t, l, "default", "during", 1)
	if now := ipamLeader(t, l); now == leader {
		t.Errorf("the cut-off node %s still leads", leader)
	}

	l.Restore(cut)
	lab.WaitFor(t, 20*time.Second, "the returning node's Lease renewed", func(ctx context.Context) bool {
		lease, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctx, "l2lbd-"+cut.Name, metav1.GetOptions{})
		return err == nil && lease.Spec.RenewTime != nil && time.Since(lease.Spec.RenewTime.Time) < time.Second
	})
	if now := ipamLeader(t, l); now == leader {
		t.Errorf("the IPAM role went back to %s when it returned (a second handover)", leader)
	}
	l.CreateLBService(ctxBg, "default", "after")
	waitIngress(t, l, "default", "after", 1)
	seen := map[netip.Addr]string{}
	for _, name := range []string{"before", "during", "after"} {
		ips, err := ingress(ctxBg, l, "default", name)
		if err != nil || len(ips) != 1 {
			t.Fatalf("%s: %v %v", name, ips, err)
		}
		if other, dup := seen[ips[0]]; dup {
			t.Errorf("%s and %s both hold %s", name, other, ips[0])
		}
		seen[ips[0]] = name
	}
}
