package placement

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"testing"
)

func node(name string, mods ...func(*Node)) Node {
	n := Node{Name: name, Live: true, Ready: true, Pools: map[string]bool{"lan": true}, Claims: map[netip.Addr]bool{}}
	for _, m := range mods {
		m(&n)
	}
	return n
}

func claims(ips ...string) func(*Node) {
	return func(n *Node) {
		for _, ip := range ips {
			n.Claims[netip.MustParseAddr(ip)] = true
		}
	}
}

func addr(ip string, sharers ...Sharer) Address {
	return Address{IP: netip.MustParseAddr(ip), Pool: "lan", Sharers: sharers}
}

func local(nodes ...string) Sharer {
	s := Sharer{Local: true, Endpoints: map[string]bool{}}
	for _, n := range nodes {
		s.Endpoints[n] = true
	}
	return s
}

// winner returns the highest-scoring of names for ip, computed independently.
func winner(ip string, names ...string) string {
	var best string
	var bestS uint64
	for _, n := range names {
		if s := Score(netip.MustParseAddr(ip), n); best == "" || s > bestS {
			best, bestS = n, s
		}
	}
	return best
}

func offered(a Address, to string) Address { a.OfferedTo = to; return a }

// loserOf is the one of two nodes rendezvous does not prefer for ip.
func loserOf(ip, x, y string) string {
	if winner(ip, x, y) == x {
		return y
	}
	return x
}

func TestPlace(t *testing.T) {
	const ip = "198.51.100.200"
	loser := "a" // a node rendezvous does not prefer
	if winner(ip, "a", "b", "c") == "a" {
		loser = "b"
	}
	tests := []struct {
		name  string
		nodes []Node
		addr  Address
		want  string
	}{
		{"rendezvous among eligible", []Node{node("a"), node("b"), node("c")}, addr(ip), winner(ip, "a", "b", "c")},
		{"claimant keeps it", []Node{node("a"), node("b", claims(ip)), node("c")}, addr(ip), "b"},
		{"dead claimant loses it", []Node{node("a"), node("b", claims(ip), func(n *Node) { n.Live = false }), node("c")}, addr(ip), winner(ip, "a", "c")},
		{"not ready", []Node{node("a", func(n *Node) { n.Ready = false }), node("b")}, addr(ip), "b"},
		{"excluded", []Node{node("a", func(n *Node) { n.Excluded = true }, claims(ip)), node("b")}, addr(ip), "b"},
		{"cannot serve pool", []Node{node("a", func(n *Node) { n.Pools = nil }), node("b")}, addr(ip), "b"},
		{"pool nodeSelector not matched: the claimant loses it", []Node{node("a", func(n *Node) { n.Unselected = map[string]bool{"lan": true} }, claims(ip)), node("b")}, addr(ip), "b"},
		{"another pool's nodeSelector not matched: still eligible", []Node{node("a", func(n *Node) { n.Unselected = map[string]bool{"other": true} }, claims(ip)), node("b")}, addr(ip), "a"},
		{"nodeSelector matches nobody", []Node{node("a", func(n *Node) { n.Unselected = map[string]bool{"lan": true} })}, addr(ip), ""},
		{"local follows endpoints", []Node{node("a", claims(ip)), node("b"), node("c")}, addr(ip, local("c")), "c"},
		{"shared needs every sharer", []Node{node("a"), node("b"), node("c")}, addr(ip, local("a", "b"), local("b", "c")), "b"},
		{"two claimants: highest score", []Node{node("a", claims(ip)), node("b", claims(ip)), node("c")}, addr(ip), winner(ip, "a", "b")},
		{"nobody eligible", []Node{node("a", func(n *Node) { n.Live = false })}, addr(ip), ""},
		{"offered, no claimant: the offered node", []Node{node("a"), node("b"), node("c")}, offered(addr(ip), loser), loser},
		{"offered, but a claimant keeps it", []Node{node("a", claims(ip)), node("b")}, offered(addr(ip), "b"), "a"},
		{"stale: keeps its claim", []Node{node("a", claims(ip), func(n *Node) { n.Stale = true }), node("b")}, addr(ip), "a"},
		{"stale: takes nothing new", []Node{node(winner(ip, "a", "b"), func(n *Node) { n.Stale = true }), node(loserOf(ip, "a", "b"))}, addr(ip), loserOf(ip, "a", "b")},
		{"offered to an ineligible node: rendezvous", []Node{node("a"), node("b", func(n *Node) { n.Ready = false })}, offered(addr(ip), "b"), "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Place(tc.nodes, []Address{tc.addr})[tc.addr.IP]
			if got != tc.want {
				t.Errorf("owner %q, want %q", got, tc.want)
			}
		})
	}
}

func manyAddrs(n int) []Address {
	var out []Address
	for i := range n {
		out = append(out, addr(fmt.Sprintf("2001:db8:100::%x", 0x1000+i)))
	}
	return out
}

// claimAll makes every node claim what it owns, as the daemons do.
func claimAll(nodes []Node, owners map[netip.Addr]string) {
	for i := range nodes {
		nodes[i].Claims = map[netip.Addr]bool{}
		for ip, o := range owners {
			if o == nodes[i].Name {
				nodes[i].Claims[ip] = true
			}
		}
	}
}

// Adding a node moves nothing; removing one moves only its addresses; the
// spread over nodes is even.
func TestHandoverTarget(t *testing.T) {
	const ip = "198.51.100.200"
	all := func(string) bool { return true }
	tests := []struct {
		name  string
		nodes []Node
		room  func(string) bool
		want  string
	}{
		{"rendezvous among the others", []Node{node("a"), node("b"), node("c")}, all, winner(ip, "b", "c")},
		{"only nodes with room", []Node{node("a"), node("b"), node("c")}, func(n string) bool { return n == "c" }, "c"},
		{"only eligible nodes", []Node{node("a"), node("b", func(n *Node) { n.Live = false }), node("c")}, all, "c"},
		{"nobody", []Node{node("a"), node("b", func(n *Node) { n.Excluded = true })}, all, ""},
		{"not a stale node", []Node{node("a"), node("b", func(n *Node) { n.Stale = true }), node("c")}, all, "c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := addr(ip)
			if got := HandoverTarget(tc.nodes, &a, "a", tc.room); got != tc.want {
				t.Errorf("target %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlaceStability(t *testing.T) {
	addrs := manyAddrs(3000)
	nodes := []Node{node("n0"), node("n1"), node("n2")}
	owners := Place(nodes, addrs)
	count := map[string]int{}
	for _, o := range owners {
		count[o]++
	}
	for _, n := range nodes {
		if c := count[n.Name]; c < 800 || c > 1200 {
			t.Errorf("%s owns %d of 3000 addresses; the spread is uneven: %v", n.Name, c, count)
		}
	}
	claimAll(nodes, owners)

	withNew := append(append([]Node(nil), nodes...), node("n3"))
	if got := Place(withNew, addrs); !maps.Equal(got, owners) {
		t.Error("adding a node moved addresses")
	}

	// n1 dies: its addresses spread over the others; nothing else moves.
	nodes[1].Live = false
	after := Place(nodes, addrs)
	for ip, o := range owners {
		switch {
		case o != "n1" && after[ip] != o:
			t.Fatalf("%s moved from %s to %s though its owner lives", ip, o, after[ip])
		case o == "n1" && (after[ip] == "n1" || after[ip] == ""):
			t.Fatalf("%s still owned by dead n1: %q", ip, after[ip])
		}
	}
	claimAll(nodes, after)

	// n1 comes back with no claims (a restart): still nothing moves.
	nodes[1].Live = true
	nodes[1].Claims = map[netip.Addr]bool{}
	if got := Place(nodes, addrs); !maps.Equal(got, after) {
		t.Error("a restarted node took addresses back")
	}
}

// Every observer with the same view computes the same owners, whatever the
// order of its node list.
func TestPlaceOrderIndependent(t *testing.T) {
	addrs := manyAddrs(200)
	a := []Node{node("x"), node("y", claims("2001:db8:100::1005")), node("z")}
	b := []Node{a[2], a[0], a[1]}
	if !maps.Equal(Place(a, addrs), Place(b, addrs)) {
		t.Error("owners depend on the order of nodes")
	}
}

func BenchmarkPlace1000x4(b *testing.B) {
	addrs := manyAddrs(1000)
	nodes := []Node{node("n0"), node("n1"), node("n2"), node("n3")}
	for b.Loop() {
		Place(nodes, addrs)
	}
}

func leads(n *Node) { n.Leads = true }
func dead(n *Node)  { n.Live = false }

func TestLeader(t *testing.T) {
	// highest returns the unclaimed winner among names, computed
	// independently of Leader.
	highest := func(names ...string) string {
		var best string
		var bestScore uint64
		for _, n := range names {
			h := sha256.Sum256([]byte("ipam" + n))
			if s := binary.BigEndian.Uint64(h[:]); best == "" || s > bestScore {
				best, bestScore = n, s
			}
		}
		return best
	}
	top := highest("a", "b", "c")
	var rest []string
	for _, n := range []string{"a", "b", "c"} {
		if n != top {
			rest = append(rest, n)
		}
	}
	other := rest[0]
	// abc returns nodes a, b and c, with mods applied to the one named.
	abc := func(name string, mods ...func(*Node)) []Node {
		var out []Node
		for _, n := range []string{"a", "b", "c"} {
			if n == name {
				out = append(out, node(n, mods...))
			} else {
				out = append(out, node(n))
			}
		}
		return out
	}
	notEligible := func(n *Node) { n.Ready, n.Excluded = false, true }
	noPools := func(n *Node) { n.Pools = nil }
	for _, tc := range []struct {
		name  string
		nodes []Node
		want  string
	}{
		{"no nodes", nil, ""},
		{"nobody live", []Node{node("a", dead), node("b", dead, leads)}, ""},
		{"highest score without claims", abc(""), top},
		{"a claimant keeps the role", abc(other, leads), other},
		{"a dead claimant loses it", abc(other, leads, dead), top},
		{"the top node dead", abc(top, dead), highest(rest...)},
		{"readiness does not matter", abc(top, notEligible), top},
		{"a node that serves no pool does not lead (it would take every address away)", abc(top, noPools), highest(rest...)},
		{"... nor keeps the role it claims", abc(other, leads, noPools), top},
		{"of several claimants the highest score", []Node{node("a", leads), node("b", leads), node("c", leads)}, top},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Leader(tc.nodes); got != tc.want {
				t.Errorf("Leader = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClaim(t *testing.T) {
	stale := func(n *Node) { n.Stale = true }
	// b outscores a for the role, so that stickiness shows.
	a, b := "a", "b"
	if score(leaderKey, a) > score(leaderKey, b) {
		a, b = b, a
	}
	for _, tc := range []struct {
		name  string
		self  Self
		peers []Node
		want  bool
	}{
		{"fresh, top score, nobody claims", Self{Name: b}, []Node{node(a)}, true},
		{"fresh, lower score, nobody claims", Self{Name: a}, []Node{node(b)}, false},
		{"fresh, lower score, claims: sticky", Self{Name: a, Claims: true}, []Node{node(b)}, true},
		{"fresh, top score, a peer claims: sticky for the peer", Self{Name: b}, []Node{node(a, leads)}, false},
		{"two claimants: the higher score keeps it", Self{Name: a, Claims: true}, []Node{node(b, leads)}, false},
		{"a stale peer is passed over", Self{Name: a}, []Node{node(b, leads, stale)}, true},
		{"frozen keeps its claim", Self{Name: a, Claims: true, Frozen: true}, []Node{node(b, leads)}, true},
		{"frozen takes nothing up", Self{Name: b, Frozen: true}, []Node{node(a)}, false},
		{"stale gives its claim up", Self{Name: b, Claims: true, Frozen: true, Stale: true}, []Node{node(a)}, false},
		{"settling keeps its claim", Self{Name: a, Claims: true, Settling: true}, []Node{node(b)}, true},
		{"settling yields to a peer that led meanwhile", Self{Name: b, Claims: true, Settling: true}, []Node{node(a, leads)}, false},
		{"settling ignores a dead or stale claimant", Self{Name: a, Claims: true, Settling: true}, []Node{node(b, leads, dead), node("c", leads, stale)}, true},
		{"settling takes nothing up", Self{Name: b, Settling: true}, []Node{node(a)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self := node(tc.self.Name)
			self.Leads = tc.self.Claims
			self.Live = !tc.self.Frozen
			if got := Claim(tc.self, append(tc.peers, self)); got != tc.want {
				t.Errorf("Claim = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestClaimServesNoPool: a node without a servable pool never claims the
// IPAM role, not even the one it holds (its allocator would find every
// address outside its pools and take it away).
func TestClaimServesNoPool(t *testing.T) {
	for _, self := range []Self{{Name: "a"}, {Name: "a", Claims: true}, {Name: "a", Claims: true, Frozen: true}, {Name: "a", Claims: true, Settling: true}} {
		me := node("a")
		me.Pools, me.Leads, me.Live = nil, self.Claims, !self.Frozen
		if Claim(self, []Node{me}) {
			t.Errorf("%+v with no pool claims the IPAM role", self)
		}
	}
}
