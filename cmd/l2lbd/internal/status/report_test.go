package status

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/kube"
)

var now = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	y := `pools:
  - name: lan
    addresses: [198.51.100.200-198.51.100.201, "2001:db8:100::/64"]
  - name: edge
    addresses: [198.51.100.210]
    nodeSelector: {matchLabels: {lb: "yes"}}
` + extra
	c, err := config.Parse("l2lbd.yaml", []byte(y), "h")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func node(name string, ready bool, labels map[string]string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	return n
}

func lease(name string, live bool, mods ...func(*kube.Member)) Lease {
	m := kube.Member{Pools: []string{"lan", "edge"}, Digest: "d1", Version: "v1"}
	for _, f := range mods {
		f(&m)
	}
	return Lease{Node: name, Member: m, Live: live}
}

func claims(ips ...string) func(*kube.Member) {
	return func(m *kube.Member) {
		for _, ip := range ips {
			m.Claims = append(m.Claims, netip.MustParseAddr(ip))
		}
	}
}

func leads(m *kube.Member) { m.Leader = true }

func service(name string, created int, ips ...string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(now.Add(time.Duration(created) * time.Minute))},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}}},
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func event(reason, svc, host, msg string, at time.Time) *corev1.Event {
	return &corev1.Event{
		InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: svc},
		Reason:         reason, Message: msg, Source: corev1.EventSource{Component: "l2lbd", Host: host},
		LastTimestamp: metav1.NewTime(at),
	}
}

// healthy is a cluster with nothing to report: two live nodes, one leads,
// every address announced.
func healthy(t *testing.T) Snapshot {
	return Snapshot{
		Config:   testConfig(t, ""),
		Nodes:    []*corev1.Node{node("a", true, map[string]string{"lb": "yes"}), node("b", true, nil)},
		Leases:   []Lease{lease("a", true, leads, claims("198.51.100.200")), lease("b", true, claims("198.51.100.201"))},
		Services: []*corev1.Service{service("web", 0, "198.51.100.200"), service("db", 1, "198.51.100.201")},
		Events: []*corev1.Event{
			event(ReasonAnnouncing, "web", "b", "198.51.100.200 announced by node b on eth1", now.Add(-time.Hour)),
			event(ReasonAnnouncing, "web", "a", "198.51.100.200 announced by node a on eth0", now.Add(-time.Minute)),
		},
		Now: now,
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(s *Snapshot)
		attention []string
		check     func(t *testing.T, r Report)
	}{
		{
			name: "healthy",
			check: func(t *testing.T, r Report) {
				if r.Leader != "a" {
					t.Errorf("leader %q, want a", r.Leader)
				}
				a := r.Addresses[0]
				if a.IP.String() != "198.51.100.200" || a.Node != "a" || a.Interface != "eth0" || a.Since == nil || !a.Since.Equal(now.Add(-time.Minute)) || !slices.Equal(a.Services, []string{"default/web"}) {
					t.Errorf("address %+v: want announced by a on eth0 a minute ago", a)
				}
				if b := r.Addresses[1]; b.Node != "b" || b.Interface != "" || b.Since != nil {
					t.Errorf("address %+v: want b, no Event, so no interface", b)
				}
				lan := r.Pools[0]
				if lan.IPv4.Size.Int64() != 2 || lan.IPv4.Used != 2 || lan.IPv4.Free.Int64() != 0 || lan.IPv6.Size.String() != "18446744073709551616" || lan.Used != 2 {
					t.Errorf("pool lan %+v", lan)
				}
				if !slices.Equal(lan.Nodes, []string{"a", "b"}) {
					t.Errorf("lan served by %v, want a, b", lan.Nodes)
				}
				if edge := r.Pools[1]; edge.NodeSelector != "lb=yes" || !slices.Equal(edge.Nodes, []string{"a"}) {
					t.Errorf("edge %+v: want selector lb=yes and only node a", edge)
				}
			},
		},
		{
			name:      "a member not live",
			edit:      func(s *Snapshot) { s.Leases[1].Live = false },
			attention: []string{"node b: l2lbd is not live (its member Lease is not renewed)", "address 198.51.100.201 (default/db) is announced by no node"},
		},
		{
			name: "an excluded node without l2lbd is shown, not flagged",
			edit: func(s *Snapshot) {
				s.Nodes = append(s.Nodes, node("control-plane", true, map[string]string{excludeLabel: ""}))
			},
			check: func(t *testing.T, r Report) {
				if n := r.Nodes[2]; n.Name != "control-plane" || n.Member || n.Live {
					t.Errorf("node %+v", n)
				}
			},
		},
		{
			name:      "a Ready node without l2lbd (not installed, or stopped gracefully)",
			edit:      func(s *Snapshot) { s.Nodes = append(s.Nodes, node("c", true, nil), node("d", false, nil)) },
			attention: []string{"node c: no l2lbd runs there (no member Lease); label it node.kubernetes.io/exclude-from-external-load-balancers if it should never announce"},
		},
		{
			// Found by review: with nodeSelectors, l2lbd runs only where a
			// pool may be announced.
			name: "a Ready node without l2lbd that no pool selects is not flagged",
			edit: func(s *Snapshot) {
				cfg := *s.Config
				cfg.Pools = slices.DeleteFunc(slices.Clone(cfg.Pools), func(p config.Pool) bool { return p.NodeSelector == nil })
				s.Config = &cfg
				s.Nodes = append(s.Nodes, node("c", true, nil))
			},
			check: func(t *testing.T, r Report) {
				for _, a := range r.Attention {
					if strings.Contains(a, "node c") {
						t.Errorf("flagged: %s", a)
					}
				}
			},
		},
		{
			name: "digest and pools differ",
			edit: func(s *Snapshot) {
				s.Nodes = append(s.Nodes, node("c", true, nil))
				s.Leases = append(s.Leases, lease("c", true, func(m *kube.Member) { m.Digest, m.Pools = "d2", []string{"lan"} }))
			},
			attention: []string{"node c: configDigest and pools differ from the other nodes'"},
		},
		{
			name: "every digest its own (a nodeName in each file): nothing to compare",
			edit: func(s *Snapshot) { s.Leases[1].Member.Digest = "d2" },
			check: func(t *testing.T, r Report) {
				if len(r.Nodes[0].Differs)+len(r.Nodes[1].Differs) != 0 {
					t.Errorf("nodes %+v: want no differences flagged", r.Nodes)
				}
			},
		},
		{
			name:      "no leader",
			edit:      func(s *Snapshot) { s.Leases[0].Member.Leader = false },
			attention: []string{"no IPAM leader: no live node claims the role"},
		},
		{
			name:      "a stale leader does not lead",
			edit:      func(s *Snapshot) { s.Leases[0].Member.Stale = true },
			attention: []string{"no IPAM leader: no live node claims the role"},
		},
		{
			name: "pending: pool exhausted, and a new Service waits",
			edit: func(s *Snapshot) {
				s.Services = append(s.Services, service("late", 5))
				four := service("v4only", 6)
				four.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
				s.Services = append(s.Services, four)
			},
			attention: []string{
				"Service default/late has no address: waiting for the IPAM leader to write its address",
				"Service default/v4only has no address: " + "",
			},
			check: func(t *testing.T, r Report) {
				if len(r.Pending) != 2 || r.Pending[0].Code != "Waiting" || r.Pending[1].Code != "PoolExhausted" {
					t.Errorf("pending %+v: want late waiting (an IPv6 address is free), v4only exhausted", r.Pending)
				}
			},
		},
		{
			name: "pending: class not served",
			edit: func(s *Snapshot) {
				s.Config = testConfig(t, "serveUnclassed: false\n")
				for _, svc := range s.Services {
					svc.Spec.LoadBalancerClass = ptr("l2lb.dev/layer2")
				}
				s.Services = append(s.Services, service("plain", 5))
				other := service("theirs", 6)
				other.Spec.LoadBalancerClass = ptr("example.com/other")
				s.Services = append(s.Services, other)
			},
			attention: []string{"Service default/plain has no address: class not served: it sets no loadBalancerClass and serveUnclassed is false (set spec.loadBalancerClass: l2lb.dev/layer2)"},
		},
		{
			name: "split brain",
			edit: func(s *Snapshot) {
				s.Leases[1].Member.Claims = append(s.Leases[1].Member.Claims, netip.MustParseAddr("198.51.100.200"))
			},
			attention: []string{"address 198.51.100.200 is claimed by several nodes: a,b"},
		},
		{
			name: "an unannounced address of a Local Service is not flagged",
			edit: func(s *Snapshot) {
				s.Leases[1].Member.Claims = nil
				s.Services[1].Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			},
		},
		{
			name: "conflicts: recent ones, newest first",
			edit: func(s *Snapshot) {
				s.Events = append(s.Events,
					event(ReasonConflict, "web", "a", "Another host (02:00:00:00:00:01) announces 198.51.100.200 on eth0 of node a", now.Add(-2*time.Hour)),
					event(ReasonConflict, "web", "a", "Another host (02:00:00:00:00:02) announces 198.51.100.200 on eth0 of node a", now.Add(-10*time.Minute)),
					event(ReasonConflict, "db", "b", "Another host (02:00:00:00:00:03) announces 198.51.100.201 on eth0 of node b", now.Add(-time.Minute)))
			},
			check: func(t *testing.T, r Report) {
				if len(r.Conflicts) != 2 || r.Conflicts[0].Service != "default/db" || !strings.Contains(r.Conflicts[1].Message, ":02)") {
					t.Errorf("conflicts %+v", r.Conflicts)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := healthy(t)
			if tc.edit != nil {
				tc.edit(&s)
			}
			r := Build(s)
			got := r.Attention
			want := tc.attention
			if want == nil {
				want = []string{}
			}
			// A row may leave a message's tail open with "".
			match := len(got) == len(want)
			for i := 0; match && i < len(want); i++ {
				match = got[i] == want[i] || strings.HasSuffix(want[i], ": ") && strings.HasPrefix(got[i], want[i])
			}
			if !match {
				t.Errorf("attention:\ngot:  %q\nwant: %q", got, want)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestJSONFields checks the fields the issue promises scripts.
func TestJSONFields(t *testing.T) {
	r := Build(healthy(t))
	var buf bytes.Buffer
	if err := r.JSON(&buf); err != nil {
		t.Fatal(err)
	}
	var v struct {
		Leader string `json:"leader"`
		Nodes  []struct {
			Name, Version, ConfigDigest string
			Live, Ready, Excluded       bool
			Pools                       []string
		} `json:"nodes"`
		Pools []struct {
			Name             string
			Size, Used, Free json.Number
		} `json:"pools"`
		Addresses []struct {
			IP, Node, Interface string
			Services            []string
		} `json:"addresses"`
		Pending []struct{ Service, Reason string } `json:"pending"`
	}
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Leader != "a" || v.Nodes[0].Name != "a" || !v.Nodes[0].Live || v.Nodes[0].ConfigDigest != "d1" || v.Nodes[0].Version != "v1" ||
		v.Pools[0].Size.String() != "18446744073709551618" || v.Pools[0].Used.String() != "2" ||
		v.Addresses[0].IP != "198.51.100.200" || v.Addresses[0].Interface != "eth0" || v.Addresses[0].Services[0] != "default/web" || v.Pending == nil {
		t.Errorf("JSON decoded to %+v", v)
	}
}

func TestTable(t *testing.T) {
	s := healthy(t)
	s.Leases[1].Live = false
	r := Build(s)
	var buf bytes.Buffer
	if err := r.Table(&buf, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"IPAM leader: a\n",
		"NODE  LIVE  READY  EXCLUDED  VERSION  CONFIG  POOLS     DIFFERS\n",
		"b     no    yes    no        v1       d1      edge,lan  -\n",
		"lb=yes",
		"198.51.100.200  lan   a     eth0       1m0s ago  default/web\n",
		"Needs attention:\n  - node b: l2lbd is not live",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, &buf)
		}
	}
}
