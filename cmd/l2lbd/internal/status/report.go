// Package status builds what `l2lbd status` shows: the cluster as l2lb sees
// it, from one snapshot of the API (Nodes, member Leases, Services, l2lbd's
// Events) and the configuration. Build is pure and table-tested; gathering
// the snapshot is the command's job.
package status

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/ipam"
	"github.com/l2lb/l2lb/daemon/kube"
)

// The Event reasons l2lbd writes that status reads (daemon/placer.go,
// daemon/allocate.go).
const (
	ReasonAnnouncing = "Announcing"
	ReasonConflict   = "IPConflict"
	ReasonFailed     = "AllocationFailed"
)

// excludeLabel keeps a node from answering for any LoadBalancer address.
const excludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Lease is one member Lease as the command watched it.
type Lease struct {
	Node   string
	Member kube.Member
	// Live: its renewTime changed within a lease duration of watching
	// (see Watch).
	Live bool
}

// Snapshot is everything Build reads.
type Snapshot struct {
	Config   *config.Config
	Nodes    []*corev1.Node
	Leases   []Lease
	Services []*corev1.Service
	// Events are l2lbd's Events on Services (Announcing, IPConflict,
	// AllocationFailed), in any order.
	Events []*corev1.Event
	// Now bounds "recent" for conflicts.
	Now time.Time
}

// Report is what the command prints, as JSON or as tables.
type Report struct {
	Leader    string     `json:"leader"`
	Nodes     []Node     `json:"nodes"`
	Pools     []Pool     `json:"pools"`
	Addresses []Address  `json:"addresses"`
	Pending   []Pending  `json:"pending"`
	Conflicts []Conflict `json:"conflicts"`
	// Attention lists what needs an operator, one line each; the command
	// exits 1 when it is not empty.
	Attention []string `json:"attention"`
}

// Node is one Kubernetes Node.
type Node struct {
	Name     string `json:"name"`
	Live     bool   `json:"live"`
	Ready    bool   `json:"ready"`
	Excluded bool   `json:"excluded"`
	// Member: l2lbd runs (or ran) here: the node has a member Lease.
	Member       bool     `json:"member"`
	Version      string   `json:"version"`
	ConfigDigest string   `json:"configDigest"`
	Pools        []string `json:"pools"`
	// Differs names what differs from most live nodes: "configDigest",
	// "pools".
	Differs []string `json:"differs,omitempty"`
}

// Pool is one configured pool and its use.
type Pool struct {
	Name         string   `json:"name"`
	NodeSelector string   `json:"nodeSelector,omitempty"`
	Size         *big.Int `json:"size"`
	Used         int      `json:"used"`
	Free         *big.Int `json:"free"`
	IPv4         Use      `json:"ipv4"`
	IPv6         Use      `json:"ipv6"`
	// Nodes are the live nodes that can serve it: they publish it and
	// match its nodeSelector.
	Nodes []string `json:"nodes"`
}

// Use is the size and use of one family of a pool.
type Use struct {
	Size *big.Int `json:"size"`
	Used int      `json:"used"`
	Free *big.Int `json:"free"`
}

// Address is one address given to Services.
type Address struct {
	IP   netip.Addr `json:"ip"`
	Pool string     `json:"pool"`
	// Node announces it: the live node that claims it ("" for none).
	Node string `json:"node"`
	// Interface and Since come from the announcing node's latest
	// Announcing Event; empty when it has expired.
	Interface string     `json:"interface"`
	Since     *time.Time `json:"since,omitempty"`
	Services  []string   `json:"services"`
}

// Pending is a LoadBalancer Service without an address.
type Pending struct {
	Service string `json:"service"`
	Code    string `json:"code"`
	Reason  string `json:"reason"`
}

// Conflict is another host claiming an address, as a node reported it.
type Conflict struct {
	Time    time.Time `json:"time"`
	Node    string    `json:"node"`
	Service string    `json:"service"`
	Message string    `json:"message"`
}

// RecentConflicts is how far back conflicts are shown.
const RecentConflicts = time.Hour

// Build makes the report of one snapshot.
func Build(s Snapshot) Report {
	r := Report{Nodes: []Node{}, Pools: []Pool{}, Addresses: []Address{}, Pending: []Pending{}, Conflicts: []Conflict{}, Attention: []string{}}
	leases := map[string]Lease{}
	for _, l := range s.Leases {
		leases[l.Node] = l
	}
	labels := map[string]map[string]string{}
	r.Nodes, r.Leader = nodes(s, leases, labels)
	anyMember := slices.ContainsFunc(r.Nodes, func(n Node) bool { return n.Member })
	for _, n := range r.Nodes {
		switch {
		case !n.Member && anyMember && n.Ready && !n.Excluded && selectedByAPool(s.Config, labels[n.Name]):
			// A graceful stop deletes the member Lease, so this is also
			// how a stopped daemon looks.
			r.Attention = append(r.Attention, fmt.Sprintf("node %s: no l2lbd runs there (no member Lease); label it %s if it should never announce", n.Name, excludeLabel))
		case n.Member && !n.Live:
			r.Attention = append(r.Attention, fmt.Sprintf("node %s: l2lbd is not live (its member Lease is not renewed)", n.Name))
		case len(n.Differs) > 0:
			r.Attention = append(r.Attention, fmt.Sprintf("node %s: %s differ from the other nodes'", n.Name, strings.Join(n.Differs, " and ")))
		}
	}
	if r.Leader == "" && slices.ContainsFunc(r.Nodes, func(n Node) bool { return n.Live }) {
		r.Attention = append(r.Attention, "no IPAM leader: no live node claims the role")
	}

	byIP := map[netip.Addr]*Address{}
	announced := announcements(s.Events)
	var snapshot []ipam.Service
	for _, svc := range s.Services {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		key := ipam.Key{Namespace: svc.Namespace, Name: svc.Name}
		if !ipam.Serves(s.Config, svc) {
			if svc.Spec.LoadBalancerClass == nil && len(svc.Status.LoadBalancer.Ingress) == 0 {
				r.Pending = append(r.Pending, Pending{Service: key.String(), Code: "ClassNotServed",
					Reason: fmt.Sprintf("class not served: it sets no loadBalancerClass and serveUnclassed is false (set spec.loadBalancerClass: %s)", s.Config.LoadBalancerClass)})
			}
			continue
		}
		snapshot = append(snapshot, ipam.FromService(svc))
		for _, ip := range ipam.IngressIPs(svc) {
			pool, ok := s.Config.PoolFor(ip)
			if !ok || !pool.AllowsNamespace(svc.Namespace) {
				continue // not ours to announce (the daemons never do)
			}
			a := byIP[ip]
			if a == nil {
				a = &Address{IP: ip, Pool: pool.Name}
				byIP[ip] = a
			}
			a.Services = append(a.Services, key.String())
		}
	}
	res := ipam.Allocate(s.Config.Pools, snapshot)
	for _, svc := range snapshot {
		if len(svc.Current) > 0 {
			continue
		}
		p := Pending{Service: svc.Key.String(), Code: "Waiting", Reason: "waiting for the IPAM leader to write its address"}
		if why, ok := res.Failed[svc.Key]; ok {
			p.Code, p.Reason = why.Code, why.Message
		} else if r.Leader == "" {
			p.Reason = "no IPAM leader to write its address"
		}
		r.Pending = append(r.Pending, p)
	}
	slices.SortFunc(r.Pending, func(a, b Pending) int { return cmp.Compare(a.Service, b.Service) })
	for _, p := range r.Pending {
		r.Attention = append(r.Attention, fmt.Sprintf("Service %s has no address: %s", p.Service, p.Reason))
	}

	claimants := map[netip.Addr][]string{}
	for _, l := range s.Leases {
		if !l.Live {
			continue
		}
		for _, ip := range l.Member.Claims {
			claimants[ip] = append(claimants[ip], l.Node)
		}
	}
	policyLocal := map[string]bool{}
	for _, svc := range s.Services {
		policyLocal[svc.Namespace+"/"+svc.Name] = svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range slices.SortedFunc(maps.Keys(byIP), netip.Addr.Compare) {
		a := byIP[ip]
		slices.Sort(a.Services)
		cs := claimants[ip]
		slices.Sort(cs)
		switch {
		case len(cs) == 1:
			a.Node = cs[0]
			if an, ok := announced[ip]; ok && an.node == a.Node {
				a.Interface = an.iface
				since := an.at
				a.Since = &since
			}
		case len(cs) > 1:
			a.Node = strings.Join(cs, ",")
			r.Attention = append(r.Attention, fmt.Sprintf("address %s is claimed by several nodes: %s", ip, a.Node))
		case !slices.ContainsFunc(a.Services, func(k string) bool { return policyLocal[k] }):
			// Local Services without a ready endpoint are legitimately
			// unannounced; status does not read EndpointSlices.
			r.Attention = append(r.Attention, fmt.Sprintf("address %s (%s) is announced by no node", ip, strings.Join(a.Services, ", ")))
		}
		r.Addresses = append(r.Addresses, *a)
	}

	r.Pools = pools(s.Config, r.Nodes, labels, byIP)
	r.Conflicts = conflicts(s.Events, s.Now)
	return r
}

// nodes lists every Node and every member Lease without a Node, and finds
// the IPAM leader. labels is filled with each Node's labels.
func nodes(s Snapshot, leases map[string]Lease, labels map[string]map[string]string) ([]Node, string) {
	var out []Node
	seen := map[string]bool{}
	add := func(name string, obj *corev1.Node) {
		n := Node{Name: name, Pools: []string{}}
		if obj != nil {
			labels[name] = obj.Labels
			_, n.Excluded = obj.Labels[excludeLabel]
			for _, c := range obj.Status.Conditions {
				n.Ready = n.Ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
			}
		}
		if l, ok := leases[name]; ok {
			n.Member, n.Live = true, l.Live
			n.Version, n.ConfigDigest = l.Member.Version, l.Member.Digest
			n.Pools = slices.Sorted(slices.Values(l.Member.Pools))
		}
		seen[name] = true
		out = append(out, n)
	}
	for _, obj := range s.Nodes {
		add(obj.Name, obj)
	}
	for name := range leases {
		if !seen[name] {
			add(name, nil)
		}
	}
	slices.SortFunc(out, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })

	// What most live nodes run is the reference; ties go to the smaller
	// value so that every run says the same. When no two nodes agree there
	// is no reference: files that each set their own nodeName all have
	// their own digest.
	digest, digestOK := majority(out, func(n Node) string { return n.ConfigDigest })
	pools, poolsOK := majority(out, func(n Node) string { return strings.Join(n.Pools, ",") })
	var leader string
	for i := range out {
		n := &out[i]
		if !n.Live {
			continue
		}
		if digestOK && n.ConfigDigest != digest {
			n.Differs = append(n.Differs, "configDigest")
		}
		if poolsOK && strings.Join(n.Pools, ",") != pools {
			n.Differs = append(n.Differs, "pools")
		}
		if l := leases[n.Name]; l.Member.Leader && !l.Member.Stale && leader == "" {
			leader = n.Name
		}
	}
	return out, leader
}

// majority returns the value most live nodes have, and whether at least
// two have it.
func majority(nodes []Node, key func(Node) string) (string, bool) {
	count := map[string]int{}
	for _, n := range nodes {
		if n.Live {
			count[key(n)]++
		}
	}
	best, bestN := "", 0
	for _, k := range slices.Sorted(maps.Keys(count)) {
		if count[k] > bestN {
			best, bestN = k, count[k]
		}
	}
	return best, bestN >= 2
}

func pools(cfg *config.Config, nodes []Node, labels map[string]map[string]string, byIP map[netip.Addr]*Address) []Pool {
	out := make([]Pool, 0, len(cfg.Pools))
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		v := Pool{Name: p.Name, Nodes: []string{}}
		if p.NodeSelector != nil {
			v.NodeSelector = metav1.FormatLabelSelector(p.NodeSelector)
		}
		v.IPv4.Size, v.IPv6.Size = new(big.Int), new(big.Int)
		for _, r := range p.Addresses {
			if r.First.Is4() {
				v.IPv4.Size.Add(v.IPv4.Size, r.Size())
			} else {
				v.IPv6.Size.Add(v.IPv6.Size, r.Size())
			}
		}
		for ip, a := range byIP {
			if a.Pool != p.Name {
				continue
			}
			if ip.Is4() {
				v.IPv4.Used++
			} else {
				v.IPv6.Used++
			}
		}
		v.IPv4.Free = new(big.Int).Sub(v.IPv4.Size, big.NewInt(int64(v.IPv4.Used)))
		v.IPv6.Free = new(big.Int).Sub(v.IPv6.Size, big.NewInt(int64(v.IPv6.Used)))
		v.Size = new(big.Int).Add(v.IPv4.Size, v.IPv6.Size)
		v.Used = v.IPv4.Used + v.IPv6.Used
		v.Free = new(big.Int).Add(v.IPv4.Free, v.IPv6.Free)
		for _, n := range nodes {
			if n.Live && n.Ready && !n.Excluded && slices.Contains(n.Pools, p.Name) && p.SelectsNode(labels[n.Name]) {
				v.Nodes = append(v.Nodes, n.Name)
			}
		}
		out = append(out, v)
	}
	return out
}

// announcedRE matches the message of an Announcing Event (daemon/placer.go).
var announcedRE = regexp.MustCompile(`^(\S+) announced by node (\S+) on (\S+)$`)

type announcement struct {
	node, iface string
	at          time.Time
}

// announcements returns, per address, the latest Announcing Event.
func announcements(events []*corev1.Event) map[netip.Addr]announcement {
	out := map[netip.Addr]announcement{}
	for _, ev := range events {
		if ev.Reason != ReasonAnnouncing {
			continue
		}
		m := announcedRE.FindStringSubmatch(ev.Message)
		if m == nil {
			continue
		}
		ip, err := netip.ParseAddr(m[1])
		if err != nil {
			continue
		}
		at := eventTime(ev)
		if prev, ok := out[ip]; !ok || at.After(prev.at) {
			out[ip] = announcement{node: m[2], iface: m[3], at: at}
		}
	}
	return out
}

func conflicts(events []*corev1.Event, now time.Time) []Conflict {
	out := []Conflict{}
	for _, ev := range events {
		if ev.Reason != ReasonConflict {
			continue
		}
		at := eventTime(ev)
		if now.Sub(at) > RecentConflicts {
			continue
		}
		out = append(out, Conflict{Time: at, Node: ev.Source.Host, Service: ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name, Message: ev.Message})
	}
	slices.SortFunc(out, func(a, b Conflict) int { return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(a.Service, b.Service)) })
	return out
}

// eventTime is when an Event last happened, whichever field its writer set.
func eventTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.FirstTimestamp.Time
}

// selectedByAPool reports whether some pool may be announced from a node
// with these labels: l2lbd belongs only there, with nodeSelectors.
func selectedByAPool(cfg *config.Config, labels map[string]string) bool {
	if cfg == nil {
		return true
	}
	for i := range cfg.Pools {
		if cfg.Pools[i].SelectsNode(labels) {
			return true
		}
	}
	return len(cfg.Pools) == 0
}
