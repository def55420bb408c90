package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// The real path: l2lbd answers ARP for a Service address with one node's
// MAC, kube-proxy (nftables mode) on that node DNATs the connection to a
// pod, on that node or, with externalTrafficPolicy Cluster, on another.

// kubeProxyLab starts three nodes with perNode pods each behind a bridge,
// kube-proxy and l2lbd on every node.
func kubeProxyLab(t *testing.T, perNode int) (*lab.Lab, []*daemon, []*lab.Pod) {
	t.Helper()
	l := lab.Start(t, lab.Options{Nodes: 3})
	pods := l.AddPods(t, perNode)
	l.StartKubeProxy(t)
	ds := startDaemons(t, l, defaultPools, "")
	waitMembers(t, l)
	return l, ds, pods
}

// curlPods curls ip from the client, a new connection each time, until
// every pod of want has answered. Failures are retried only until the first
// answer (kube-proxy may not have written the Service's rules yet, or an
// announcement may be on its way); after it every curl must be answered,
// and only by pods of want. It returns the number of answers per pod.
func curlPods(t testing.TB, l *lab.Lab, ip netip.Addr, pods, want []*lab.Pod, timeout time.Duration) map[string]int {
	t.Helper()
	got := map[string]int{}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(ctxBg, 3*time.Second)
		body, err := l.Net.Client.Curl(ctx, ip, 80)
		cancel()
		if err != nil {
			if len(got) > 0 {
				t.Fatalf("curl %s failed after it was answered (answers so far %v): %v", ip, got, err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		p, err := lab.PodNamed(pods, body)
		if err != nil {
			t.Fatalf("curl %s: %v", ip, err)
		}
		if !slices.Contains(want, p) {
			t.Fatalf("curl %s answered by %s, want only %v (answers so far %v)", ip, p.Name, podNames(want), got)
		}
		got[p.Name]++
		if len(got) == len(want) {
			return got
		}
	}
	t.Fatalf("curl %s: not every pod of %v answered within %v: %v", ip, podNames(want), timeout, got)
	return nil
}

// curlVia curls ip from the client through node n, whoever answers ARP for
// ip: a host route on the client sends the packets to n's MAC.
func curlVia(t testing.TB, l *lab.Lab, ip netip.Addr, n *lab.Node) (string, error) {
	t.Helper()
	route := []string{"route", "add", netip.PrefixFrom(ip, 32).String(), "via", n.IPv4.String(), "dev", l.Net.Client.Link}
	if out, err := l.Net.Client.Exec(ctxBg, "ip", route...); err != nil {
		t.Fatalf("ip %v: %v: %s", route, err, out)
	}
	defer func() {
		route[1] = "del"
		if out, err := l.Net.Client.Exec(ctxBg, "ip", route...); err != nil {
			t.Fatalf("ip %v: %v: %s", route, err, out)
		}
	}()
	ctx, cancel := context.WithTimeout(ctxBg, 2*time.Second)
	defer cancel()
	return l.Net.Client.Curl(ctx, ip, 80)
}

// neighOf returns the MAC of the client's neighbour entry for ip.
func neighOf(t testing.TB, l *lab.Lab, ip netip.Addr) string {
	t.Helper()
	mac, state, err := l.Net.Client.Neigh(ctxBg, ip)
	if err != nil || mac == nil {
		t.Fatalf("client has no neighbour entry for %s: %v %s", ip, err, state)
	}
	return strings.ToLower(mac.String())
}

func podNames(pods []*lab.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return names
}

// webService creates Service default/web with pods as its endpoints and
// returns it, its address and the node that answers for it.
func webService(t *testing.T, l *lab.Lab, pods []*lab.Pod) (*corev1.Service, netip.Addr, *lab.Node) {
	t.Helper()
	svc := l.CreateLBService(ctxBg, "default", "web")
	l.SetPodEndpoints(ctxBg, svc, pods...)
	ip := waitIngress(t, l, "default", "web", 1)[0]
	return svc, ip, owner(t, l, ip)
}

// TestKubeProxyCluster: with externalTrafficPolicy Cluster, the node that
// answers ARP forwards connections to pods on every node.
func TestKubeProxyCluster(t *testing.T) {
	l, _, pods := kubeProxyLab(t, 1)
	_, ip, o := webService(t, l, pods)
	got := curlPods(t, l, ip, pods, pods, 30*time.Second)
	t.Logf("%s answered by %s; its kube-proxy spread connections over %v", ip, o.Name, got)
}

// TestKubeProxyLocal: with externalTrafficPolicy Local, l2lbd picks a node
// with a ready endpoint, only that node's pods answer, a node without one
// drops what reaches it, and the address follows the endpoints.
func TestKubeProxyLocal(t *testing.T) {
	l, _, pods := kubeProxyLab(t, 2)
	svc := l.CreateLBService(ctxBg, "default", "local", lab.WithLocalTrafficPolicy())
	ip := waitIngress(t, l, "default", "local", 1)[0]
	// node-0 runs pods too, but none of them is an endpoint of this Service.
	node0 := l.Node("node-0")
	var ready []*lab.Pod
	for _, p := range pods {
		if p.Node != node0 {
			ready = append(ready, p)
		}
	}
	l.SetPodEndpoints(ctxBg, svc, ready...)
	o := owner(t, l, ip)
	if o == node0 {
		t.Fatalf("%s announced by %s, which has no endpoint of %s", ip, o.Name, svc.Name)
	}
	got := curlPods(t, l, ip, pods, lab.PodsOn(pods, o), 30*time.Second)
	t.Logf("%s answered by %s, served by its own pods only: %v", ip, o.Name, got)

	// Past l2lbd, by a route on the client: through the owner it works,
	// through node-0 kube-proxy drops the connection. Without node-0's
	// rules node-0 would forward to the owner, which would answer.
	lab.WaitFor(t, 10*time.Second, "kube-proxy's rules for "+ip.String()+" on "+node0.Name, func(ctx context.Context) bool {
		out, err := node0.Exec(ctx, "nft", "list", "table", "ip", "kube-proxy")
		return err == nil && strings.Contains(string(out), ip.String()+" . tcp . 80")
	})
	if body, err := curlVia(t, l, ip, o); err != nil {
		t.Fatalf("curl %s through the owner %s by a route: %v", ip, o.Name, err)
	} else if p, _ := lab.PodNamed(pods, body); p == nil || p.Node != o {
		t.Fatalf("curl %s through the owner %s by a route answered %q", ip, o.Name, body)
	}
	if body, err := curlVia(t, l, ip, node0); err == nil {
		t.Fatalf("curl %s through %s, which has no endpoint, answered %q; want the connection dropped", ip, node0.Name, body)
	}

	// The endpoints move to the other eligible node; so do the address
	// and the answers.
	var other *lab.Node
	for _, p := range ready {
		if p.Node != o {
			other = p.Node
		}
	}
	l.SetPodEndpoints(ctxBg, svc, lab.PodsOn(pods, other)...)
	waitOwner(t, l, ip, other.Name)
	got = curlPods(t, l, ip, pods, lab.PodsOn(pods, other), 30*time.Second)
	t.Logf("endpoints moved: %s answered by %s, served by %v", ip, other.Name, got)
}

// TestKubeProxyFailover: the announcing node dies (l2lbd killed, its cable
// pulled); a peer takes the address over and curl reaches the surviving
// pods through the peer's kube-proxy.
func TestKubeProxyFailover(t *testing.T) {
	l, ds, pods := kubeProxyLab(t, 1)
	svc, ip, o := webService(t, l, pods)
	// curl leaves the client's neighbour entry (ping would not: nothing
	// on the path answers ICMP for a Service address).
	curlPods(t, l, ip, pods, pods, 30*time.Second)
	mac := neighOf(t, l, ip)

	start := time.Now()
	daemonOn(ds, o).proc.Signal(syscall.SIGKILL)
	l.SetCarrier(o, false)
	// What the EndpointSlice controller does once the node is gone.
	var alive []*lab.Pod
	for _, p := range pods {
		if p.Node != o {
			alive = append(alive, p)
		}
	}
	l.SetPodEndpoints(ctxBg, svc, alive...)
	newMAC, took := neighMovesFrom(t, l, ip, mac, start, 15*time.Second)
	n := nodeByMAC(l, newMAC)
	if n == nil || n == o {
		t.Fatalf("%s moved to MAC %s, want a surviving node's", ip, newMAC)
	}
	got := curlPods(t, l, ip, pods, alive, 30*time.Second)
	t.Logf("%s: %s died, %s took over in %v (client's neighbour entry); every surviving pod answered within %v of the kill: %v",
		ip, o.Name, n.Name, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), got)
	if strings.EqualFold(newMAC, o.MAC.String()) {
		t.Errorf("client still points at the dead node")
	}
}
