package placement

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/ipam"
)

// BenchmarkCoreCluster drives one node's core with the stream a large
// cluster makes: 50 nodes renewing every second, 5,000 Services, 10
// Service changes a second. One iteration is one second of cluster life:
// 50 renewals seen (one step each, as the informers deliver them), the
// node's own renewal written and seen back, and 10 Service changes.
func BenchmarkCoreCluster(b *testing.B) {
	const nodes, services, changesPerSec = 50, 5000, 10
	cfg, err := config.Parse("bench.yaml", []byte("nodeName: n00\npools: [{name: lan, addresses: [198.18.0.0/17]}]\n"), "n00")
	if err != nil {
		b.Fatal(err)
	}
	links := []Link{{Name: "eth0", Usable: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}}
	names := make([]string, nodes)
	var nodeUpdates []NodeUpdate
	all := make([]Node, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i)
		nodeUpdates = append(nodeUpdates, NodeUpdate{Name: names[i], Ready: true})
		all[i] = Node{Name: names[i], Live: true, Ready: true, Pools: map[string]bool{"lan": true}}
	}
	ip := netip.MustParseAddr("198.18.0.0")
	svcs := make([]ServiceUpdate, services)
	claims := map[string][]netip.Addr{}
	for i := range svcs {
		ip = ip.Next()
		svcs[i] = benchService(i, ip)
		a := Address{IP: ip, Pool: "lan"}
		o := Owner(all, &a)
		claims[o] = append(claims[o], ip)
	}
	leases := make([]LeaseUpdate, nodes)
	for i, n := range names {
		leases[i] = LeaseUpdate{Node: n, Member: Member{Pools: []string{"lan"}, Claims: claims[n], Leader: i == 1}}
	}

	now := time.Unix(1000, 0)
	c := NewCore("n00", Timings{Renew: time.Second, Lease: 3 * time.Second})
	renew := 0
	ownRenewal := func(o Observation) Observation {
		renew++
		r := time.Unix(int64(renew), 0)
		o.Writes = []Write{{Renew: r, Sent: now}}
		o.Leases = append(o.Leases, LeaseUpdate{Node: "n00", Renew: r, Member: leases[0].Member})
		return o
	}
	for i := range leases {
		leases[i].Renew = now
	}
	c.Step(ownRenewal(Observation{Now: now, Synced: true, Config: cfg, Links: links, NewLinks: true,
		Nodes: nodeUpdates, Services: svcs, Leases: leases}))

	steps, redecided, changed := 0, 0, 0
	second := func() {
		start := now
		for i := 1; i < nodes; i++ {
			now = start.Add(time.Duration(i) * time.Second / nodes)
			l := leases[i]
			l.Renew = now
			p := c.Step(Observation{Now: now, Synced: true, Leases: []LeaseUpdate{l}})
			steps++
			redecided += p.Redecided
		}
		now = start.Add(time.Second - time.Millisecond)
		p := c.Step(ownRenewal(Observation{Now: now, Synced: true}))
		steps++
		redecided += p.Redecided
		for j := range changesPerSec {
			k := changed % services
			changed++
			u := svcs[k]
			u.Service = u.Service.DeepCopy()
			u.Service.Annotations = map[string]string{"rev": fmt.Sprint(changed)}
			p := c.Step(Observation{Now: now.Add(time.Duration(j) * time.Microsecond), Synced: true, Services: []ServiceUpdate{u}})
			steps++
			redecided += p.Redecided
		}
		now = start.Add(time.Second)
	}
	for range 5 { // fresh, settled, every peer seen renewing
		second()
	}
	steps, redecided = 0, 0
	b.ResetTimer()
	for b.Loop() {
		second()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "cpu-ms/cluster-s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps)/1e3, "µs/event")
	b.ReportMetric(float64(redecided)/float64(steps), "redecided/event")
}

func benchService(i int, ip netip.Addr) ServiceUpdate {
	v := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("s%d", i)},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{
			Ingress: []corev1.LoadBalancerIngress{{IP: ip.String()}},
		}},
	}
	return ServiceUpdate{Key: ipam.Key{Namespace: "default", Name: v.Name}, Service: v}
}

// BenchmarkFullPass is the reference for BenchmarkCoreCluster: one decision
// over every address, 50 nodes and 5,000 addresses, which the daemon made on
// every event before the core decided incrementally.
func BenchmarkFullPass(b *testing.B) {
	nodes := make([]Node, 50)
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprintf("n%02d", i), Live: true, Ready: true, Pools: map[string]bool{"lan": true}}
	}
	addrs := make([]Address, 5000)
	ip := netip.MustParseAddr("198.18.0.0")
	for i := range addrs {
		ip = ip.Next()
		addrs[i] = Address{IP: ip, Pool: "lan"}
	}
	for b.Loop() {
		Place(nodes, addrs)
	}
}

// BenchmarkCoreColdStart drives one node's core of three through what a
// cold start of 5,000 Services delivers: every Service listed without an
// address, then their addresses arriving 25 per step (the placer decides
// at most once per 10 ms) and each peer's Lease rewritten with its growing
// claims four times a second. One iteration is the whole cold start.
func BenchmarkCoreColdStart(b *testing.B) {
	const services, perStep = 5000, 25
	cfg, err := config.Parse("bench.yaml", []byte("nodeName: n0\npools: [{name: lan, addresses: [198.18.0.0/17]}]\n"), "n0")
	if err != nil {
		b.Fatal(err)
	}
	links := []Link{{Name: "eth0", Usable: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}}
	names := []string{"n0", "n1", "n2"}
	all := make([]Node, len(names))
	var nodeUpdates []NodeUpdate
	for i, n := range names {
		nodeUpdates = append(nodeUpdates, NodeUpdate{Name: n, Ready: true})
		all[i] = Node{Name: n, Live: true, Ready: true, Pools: map[string]bool{"lan": true}}
	}
	bare := make([]ServiceUpdate, services)
	addressed := make([]ServiceUpdate, services)
	owners := make([]string, services)
	ips := make([]netip.Addr, services)
	ip := netip.MustParseAddr("198.18.0.0")
	for i := range bare {
		ip = ip.Next()
		ips[i] = ip
		addressed[i] = benchService(i, ip)
		bare[i] = addressed[i]
		bare[i].Service = addressed[i].Service.DeepCopy()
		bare[i].Service.Status = corev1.ServiceStatus{}
		a := Address{IP: ip, Pool: "lan"}
		owners[i] = Owner(all, &a)
	}
	steps := 0
	for b.Loop() {
		now := time.Unix(1000, 0)
		c := NewCore("n0", Timings{Renew: time.Second, Lease: 3 * time.Second})
		renew := 0
		claims := map[string][]netip.Addr{}
		leases := func() []LeaseUpdate {
			renew++
			var out []LeaseUpdate
			for _, n := range names {
				out = append(out, LeaseUpdate{Node: n, Renew: time.Unix(int64(renew), 0),
					Member: Member{Pools: []string{"lan"}, Claims: slices.Clone(claims[n]), Leader: n == "n1"}})
			}
			return out
		}
		o := Observation{Now: now, Synced: true, Config: cfg, Links: links, NewLinks: true,
			Nodes: nodeUpdates, Services: bare, Leases: leases()}
		o.Writes = []Write{{Renew: time.Unix(int64(renew), 0), Sent: now}}
		c.Step(o)
		for i := 0; i < services; i += perStep {
			now = now.Add(10 * time.Millisecond)
			o := Observation{Now: now, Synced: true, Services: addressed[i : i+perStep]}
			for j := i; j < i+perStep; j++ {
				claims[owners[j]] = append(claims[owners[j]], ips[j])
			}
			if (i/perStep)%25 == 0 { // every 250 ms: the peers' Leases, and this node's renewal
				o.Leases = leases()
				o.Writes = []Write{{Renew: time.Unix(int64(renew), 0), Sent: now}}
			}
			c.Step(o)
			steps++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps)/1e3, "µs/step")
}
