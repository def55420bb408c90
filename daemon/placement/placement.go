// Package placement decides which node answers for each Service address. It
// is pure: every daemon evaluates Owner over its own view of the cluster and,
// as long as the views agree, they all reach the same answer without talking
// to each other; only the owner answers and claims. Core (core.go) is one
// node's decision state machine built on these rules.
//
// The rule (DESIGN.md, "Who answers"): among the nodes eligible for an
// address, one that already claims it keeps it (so adding a node or
// restarting a standby moves nothing); with several claimants the highest
// rendezvous score hash(address, node) wins; with none, the node its last
// owner offered it to (a hand-over to balance the load), else the highest
// score among the nodes whose view is not stale, which spreads addresses
// evenly and moves only the addresses of a node that leaves.
//
// The IPAM leader, the one node that writes Service status, is placed by the
// same rule (Leader) among the nodes that serve a pool, so that electing it
// costs no write beyond the member Lease renewals.
package placement

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
)

// Node is one node as this observer sees it.
type Node struct {
	Name string
	// Live: its member Lease was renewed within leaseDuration by this
	// observer's clock.
	Live bool
	// Ready: its Node object has condition Ready=True.
	Ready bool
	// Excluded: labelled node.kubernetes.io/exclude-from-external-load-balancers.
	Excluded bool
	// Pools it can serve (has a usable interface for), by name.
	Pools map[string]bool
	// Unselected are the pools whose nodeSelector its Node labels do not
	// match: it must not announce their addresses.
	Unselected map[string]bool
	// Claims are the addresses it currently answers for, from its Lease.
	Claims map[netip.Addr]bool
	// Leads: it claims the IPAM leader role.
	Leads bool
	// Stale: its own view of the cluster has been stale for a lease
	// duration (it says so in its Lease), so it must not write status.
	Stale bool
}

// Sharer is one Service using an address.
type Sharer struct {
	// Local: externalTrafficPolicy Local, so only nodes with a ready
	// endpoint of the Service may answer.
	Local bool
	// Endpoints are the nodes with a ready endpoint of the Service.
	Endpoints map[string]bool
}

// Address is one address to place.
type Address struct {
	IP   netip.Addr
	Pool string
	// Sharers are the Services holding IP; a shared address needs a node
	// eligible for every one of them.
	Sharers []Sharer
	// OfferedTo names the node its owner hands it over to, to balance the
	// load: with no claimant left, that node takes it if eligible.
	OfferedTo string
}

// Eligible reports whether n may answer for a.
func Eligible(n *Node, a *Address) bool {
	if !n.Live || !n.Ready || n.Excluded || !n.Pools[a.Pool] || n.Unselected[a.Pool] {
		return false
	}
	for _, s := range a.Sharers {
		if s.Local && !s.Endpoints[n.Name] {
			return false
		}
	}
	return true
}

// Place returns the owner of every address that has an eligible node.
// Addresses without one are absent from the result.
func Place(nodes []Node, addrs []Address) map[netip.Addr]string {
	owners := make(map[netip.Addr]string, len(addrs))
	for i := range addrs {
		if o := Owner(nodes, &addrs[i]); o != "" {
			owners[addrs[i].IP] = o
		}
	}
	return owners
}

// Owner returns the owner of a: the highest-scoring eligible claimant; else
// the node it is offered to, if eligible and not stale; else the
// highest-scoring eligible node that is not stale; "" when there is none.
func Owner(nodes []Node, a *Address) string {
	var best, bestClaimant *Node
	var bestScore, bestClaimScore uint64
	offered := false
	for j := range nodes {
		n := &nodes[j]
		if !Eligible(n, a) {
			continue
		}
		s := Score(a.IP, n.Name)
		// A node with a stale view keeps what it claims but takes
		// nothing new: it would not answer.
		if !n.Stale {
			offered = offered || n.Name == a.OfferedTo
			if best == nil || better(s, n.Name, bestScore, best.Name) {
				best, bestScore = n, s
			}
		}
		if n.Claims[a.IP] && (bestClaimant == nil || better(s, n.Name, bestClaimScore, bestClaimant.Name)) {
			bestClaimant, bestClaimScore = n, s
		}
	}
	switch {
	case bestClaimant != nil:
		return bestClaimant.Name
	case offered:
		return a.OfferedTo
	case best != nil:
		return best.Name
	}
	return ""
}

// HandoverTarget returns the node a should be handed to, to balance the
// load: of the eligible nodes other than from that have room (room says
// whether a node may take one more), the one rendezvous prefers.
func HandoverTarget(nodes []Node, a *Address, from string, room func(node string) bool) string {
	var best *Node
	var bestScore uint64
	for j := range nodes {
		n := &nodes[j]
		if n.Name == from || n.Stale || !Eligible(n, a) || !room(n.Name) {
			continue
		}
		if s := Score(a.IP, n.Name); best == nil || better(s, n.Name, bestScore, best.Name) {
			best, bestScore = n, s
		}
	}
	if best == nil {
		return ""
	}
	return best.Name
}

// Leader returns the IPAM leader: the live node that claims the role (the
// highest-scoring of several claimants), else the live node with the highest
// score; "" when no node is live. Stale nodes are passed over, and so are
// nodes that serve no pool: the leader allocates from its own pools, and one
// with none would take every Service's address away. Readiness does not
// matter: writing Service status needs only a working daemon with a fresh
// view.
func Leader(nodes []Node) string {
	var best, bestClaimant *Node
	var bestScore, bestClaimScore uint64
	for i := range nodes {
		n := &nodes[i]
		if !n.Live || n.Stale || len(n.Pools) == 0 {
			continue
		}
		s := score(leaderKey, n.Name)
		if best == nil || better(s, n.Name, bestScore, best.Name) {
			best, bestScore = n, s
		}
		if n.Leads && (bestClaimant == nil || better(s, n.Name, bestClaimScore, bestClaimant.Name)) {
			bestClaimant, bestClaimScore = n, s
		}
	}
	switch {
	case bestClaimant != nil:
		return bestClaimant.Name
	case best != nil:
		return best.Name
	}
	return ""
}

// leaderKey is what the leader role is scored by. Its scores are only ever
// compared with each other, never with an address's.
var leaderKey = []byte("ipam")

// Self is how the deciding node sees its own state, for Claim.
type Self struct {
	Name     string
	Claims   bool // it claims the IPAM leader role now
	Frozen   bool // its view is stale
	Stale    bool // ... and has been for a lease duration, or its Lease may have expired
	Settling bool // it turned fresh less than a renew interval ago
}

// Claim says whether self claims the IPAM leader role after this decision.
// Like an address, the role is not taken over from a stale view and is kept
// through a short freeze; a long one gives it up, so that a healthy peer
// leads. A node that just turned fresh (settling) takes nothing up, and
// gives its claim up to a peer that claims the role too: the peer led while
// this node was away. A node that serves no pool never leads (see Leader).
// nodes must include self.
func Claim(self Self, nodes []Node) bool {
	servesNone := !slices.ContainsFunc(nodes, func(n Node) bool { return n.Name == self.Name && len(n.Pools) > 0 })
	switch {
	case self.Stale || servesNone:
		return false
	case self.Frozen:
		return self.Claims
	case self.Settling:
		if !self.Claims {
			return false
		}
		for _, n := range nodes {
			if n.Name != self.Name && n.Live && !n.Stale && n.Leads {
				return false
			}
		}
		return true
	}
	return Leader(nodes) == self.Name
}

// better orders candidates by score, then by name so that even a hash
// collision has one answer on every node.
func better(s uint64, name string, bestS uint64, bestName string) bool {
	return s > bestS || s == bestS && name < bestName
}

// Score is the rendezvous (highest random weight) score of node for ip.
func Score(ip netip.Addr, node string) uint64 {
	b := ip.As16()
	return score(b[:], node)
}

func score(key []byte, node string) uint64 {
	h := sha256.New()
	h.Write(key)
	h.Write([]byte(node))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}
