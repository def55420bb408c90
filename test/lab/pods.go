package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// PodRange holds every node's pod range: node i has 198.18.i.0/24. It is
// part of the benchmarking range (RFC 2544) and exists only inside the node
// namespaces: the root namespace never routes it, so nothing leaves the
// machine.
var PodRange = netip.MustParsePrefix("198.18.0.0/15")

// maxPodsPerNode keeps pod addresses (.10 on) inside the node's /24.
const maxPodsPerNode = 200

// PodPrefix is node i's pod range.
func PodPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24)
}

// podGateway is the node's address on its pod bridge, the pods' default
// route.
func podGateway(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i), 1})
}

// Pod is a network namespace behind a node standing for a pod, as a bridge
// CNI plugin would make it: its eth0 is a veth to the node's bridge cni0,
// with one IPv4 address of the node's pod range. An HTTP server on port 80
// answers the pod's name.
type Pod struct {
	*NS
	Name string // <node name>-pod-<j>: who answered, in a curl's output
	Node *Node
}

// AddPods gives every node of the lab perNode pods, and the nodes what a
// CNI plugin sets up around them: a bridge cni0 carrying the node's pod
// gateway, IPv4 forwarding, no ICMP redirects (traffic to a Service leaves
// by the link it came in on), and a route to every other node's pod range
// via that node. Call it once, after every node is added.
func (l *Lab) AddPods(t testing.TB, perNode int) []*Pod {
	t.Helper()
	if perNode < 1 || perNode > maxPodsPerNode {
		t.Fatalf("lab: AddPods: %d pods per node, want 1..%d", perNode, maxPodsPerNode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pods []*Pod
	for i, n := range l.Nodes {
		if err := l.podNetwork(ctx, i, n); err != nil {
			t.Fatalf("lab: AddPods: %s: %v", n.Name, err)
		}
		for j := range perNode {
			p, err := l.addPod(ctx, i, n, j)
			if err != nil {
				t.Fatalf("lab: AddPods: %s pod %d: %v", n.Name, j, err)
			}
			pods = append(pods, p)
		}
	}
	return pods
}

func (l *Lab) podNetwork(ctx context.Context, i int, n *Node) error {
	err := n.Do(func() error {
		return writeSysctls(map[string]string{
			"net/ipv4/ip_forward":                         "1",
			"net/ipv4/conf/all/send_redirects":            "0",
			"net/ipv4/conf/default/send_redirects":        "0",
			"net/ipv4/conf/" + n.Link + "/send_redirects": "0",
		})
	})
	if err != nil {
		return err
	}
	lines := []string{
		"link add cni0 type bridge stp_state 0 forward_delay 0",
		"addr add " + netip.PrefixFrom(podGateway(i), 24).String() + " dev cni0",
		"link set cni0 up",
	}
	for k, peer := range l.Nodes {
		if k != i {
			lines = append(lines, "route add "+PodPrefix(k).String()+" via "+peer.IPv4.String()+" dev "+n.Link)
		}
	}
	return ipBatch(ctx, n.NS.Name, lines...)
}

func (l *Lab) addPod(ctx context.Context, i int, n *Node, j int) (*Pod, error) {
	p := &Pod{
		NS: &NS{
			Name: fmt.Sprintf("%sp%d", n.NS.Name, j),
			Link: "eth0",
			IPv4: netip.AddrFrom4([4]byte{198, 18, byte(i), byte(10 + j)}),
			run:  l.run,
		},
		Name: fmt.Sprintf("%s-pod-%d", n.Name, j),
		Node: n,
	}
	l.run.mu.Lock()
	l.run.netns = append(l.run.netns, p.NS.Name)
	l.run.mu.Unlock()
	if _, err := ipCmd(ctx, nil, "netns", "add", p.NS.Name); err != nil {
		return nil, err
	}
	// The node's end lives in the node's namespace and goes with it.
	veth := fmt.Sprintf("veth%d", j)
	if err := ipBatch(ctx, n.NS.Name,
		"link add "+veth+" type veth peer name eth0 netns "+p.NS.Name,
		"link set "+veth+" master cni0 up",
	); err != nil {
		return nil, err
	}
	if err := ipBatch(ctx, p.NS.Name,
		"link set lo up",
		"addr add "+netip.PrefixFrom(p.IPv4, 24).String()+" dev eth0",
		"link set eth0 up",
		"route add default via "+podGateway(i).String()+" dev eth0",
	); err != nil {
		return nil, err
	}
	if err := l.serveName(p.NS, p.Name); err != nil {
		return nil, err
	}
	return p, nil
}

// SetPodEndpoints makes the Service's IPv4 endpoints exactly the given
// pods, ready, each on its node, as the EndpointSlice controller would for
// pods that pass their readiness probes.
func (l *Lab) SetPodEndpoints(ctx context.Context, svc *corev1.Service, pods ...*Pod) {
	l.t.Helper()
	ctx, cancel := bounded(ctx)
	defer cancel()
	eps := make([]discoveryv1.Endpoint, 0, len(pods))
	for _, p := range pods {
		eps = append(eps, readyEndpoint(p.IPv4, p.Node.Name))
	}
	if err := l.writeSlice(ctx, svc, corev1.IPv4Protocol, eps); err != nil {
		l.t.Fatalf("lab: SetPodEndpoints %s/%s: %v", svc.Namespace, svc.Name, err)
	}
}

// PodsOn returns the pods of node n among pods.
func PodsOn(pods []*Pod, n *Node) []*Pod {
	var on []*Pod
	for _, p := range pods {
		if p.Node == n {
			on = append(on, p)
		}
	}
	return on
}

// PodNamed returns the pod among pods whose name is name, or an error
// naming what answered instead: a body that is no pod's name means the
// answer came from somewhere else (a stand-in, say).
func PodNamed(pods []*Pod, name string) (*Pod, error) {
	i := slices.IndexFunc(pods, func(p *Pod) bool { return p.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("no pod answers %q", name)
	}
	return pods[i], nil
}
