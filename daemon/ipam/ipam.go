// Package ipam decides which addresses LoadBalancer Services get. It is pure:
// Allocate maps the configured pools and a snapshot of the Services (with the
// addresses their status already records) to an assignment per Service and a
// reason for every Service it could not serve. The Service status is the only
// record of earlier decisions, so the daemon that applies the result (the IPAM
// leader) never needs state of its own, and a restart reshuffles nothing.
package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/l2lb/l2lb/config"
)

// Key names a Service.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Family is an IP family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

func familyOf(ip netip.Addr) Family {
	if ip.Is4() {
		return IPv4
	}
	return IPv6
}

// Port is one port a Service exposes; two Services may share an IP only when
// none of their ports collide.
type Port struct {
	Protocol string
	Port     int32
}

// Service is what allocation needs to know of one Service we serve.
type Service struct {
	Key     Key
	Created time.Time // older Services win conflicts over an address
	// Families wanted, in order; Required of them must be served.
	Families []Family
	Required int
	// Pool requested by annotation, "" for any auto-assign pool.
	Pool string
	// Requested addresses, at most one per family.
	Requested []netip.Addr
	// SharingKey allows sharing an address with Services of the same key.
	SharingKey    string
	Ports         []Port
	TrafficPolicy string
	// Current addresses from status.loadBalancer.ingress.
	Current []netip.Addr
	// Invalid, when set, is why the Service's annotations or spec cannot be
	// acted on: it gets no new address, but keeps a valid one it holds, so a
	// typo in an annotation does not take its traffic down.
	Invalid string
}

// Reason says why a Service got no address (or not every family it needs),
// in words its author can act on.
type Reason struct {
	Code    string // PoolExhausted, NotInPool, InUse, UnknownPool, BadRequest, NoPool
	Message string
}

// Move records an address taken from a Service because the configuration no
// longer allows it.
type Move struct {
	Old, New netip.Addr // New is invalid when no replacement was found
}

// Result is the decision for one snapshot.
type Result struct {
	// Assigned holds the addresses of every Service that has any, ordered
	// as its Families.
	Assigned map[Key][]netip.Addr
	// Failed holds the reason for every Service missing a required family.
	Failed map[Key]Reason
	// Moved lists, per Service, addresses it lost to a configuration edit.
	Moved map[Key][]Move
}

type allocator struct {
	pools   []config.Pool
	holders map[netip.Addr][]*Service
	// byKey lists the addresses held by Services of each sharing key, so a
	// sharer finds its partners without scanning.
	byKey map[string][]netip.Addr
	// next is, per range, the lowest address that may still be free: within
	// one Allocate addresses are only taken, never freed, so it only grows.
	next map[config.Range]netip.Addr
}

// Allocate decides every Service's addresses. The result depends only on its
// arguments, not on the order of services.
func Allocate(pools []config.Pool, services []Service) Result {
	svcs := make([]*Service, len(services))
	for i := range services {
		svcs[i] = &services[i]
	}
	// Older Services first, so that they win any conflict, then by name for
	// a total order.
	slices.SortFunc(svcs, func(a, b *Service) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
	a := &allocator{
		pools:   pools,
		holders: map[netip.Addr][]*Service{},
		byKey:   map[string][]netip.Addr{},
		next:    map[config.Range]netip.Addr{},
	}
	res := Result{Assigned: map[Key][]netip.Addr{}, Failed: map[Key]Reason{}, Moved: map[Key][]Move{}}
	got := make(map[*Service]map[Family]netip.Addr, len(svcs))

	// Adopt every valid existing assignment before allocating anything new,
	// so that a restart or a new leader changes no address.
	for _, s := range svcs {
		got[s] = map[Family]netip.Addr{}
		for _, ip := range s.Current {
			f := familyOf(ip)
			if _, dup := got[s][f]; dup || !slices.Contains(s.Families, f) {
				continue
			}
			if a.allowed(s, ip) == nil && a.free(s, ip) == nil {
				a.take(s, ip)
				got[s][f] = ip
			}
		}
	}

	for _, s := range svcs {
		var failure *Reason
		if s.Invalid != "" {
			failure = &Reason{"BadRequest", s.Invalid}
		}
		for i, f := range s.Families {
			if _, ok := got[s][f]; ok || s.Invalid != "" {
				continue
			}
			ip, reason := a.allocate(s, f)
			if reason != nil {
				if i < s.Required && failure == nil {
					failure = reason
				}
				continue
			}
			got[s][f] = ip
		}
		var ips []netip.Addr
		for _, f := range s.Families {
			if ip, ok := got[s][f]; ok {
				ips = append(ips, ip)
			}
		}
		if len(ips) > 0 {
			res.Assigned[s.Key] = ips
		}
		if failure != nil {
			res.Failed[s.Key] = *failure
		}
		for _, old := range s.Current {
			if slices.Contains(ips, old) {
				continue
			}
			m := Move{Old: old}
			if ip, ok := got[s][familyOf(old)]; ok {
				m.New = ip
			}
			res.Moved[s.Key] = append(res.Moved[s.Key], m)
		}
	}
	return res
}

// allowed checks that s may use ip at all: it lies in a pool s may use.
func (a *allocator) allowed(s *Service, ip netip.Addr) *Reason {
	for i := range a.pools {
		p := &a.pools[i]
		if !p.Contains(ip) {
			continue
		}
		switch {
		case !p.AllowsNamespace(s.Key.Namespace):
			return &Reason{"NotInPool", fmt.Sprintf("%s is in pool %s, which namespace %s may not use", ip, p.Name, s.Key.Namespace)}
		case s.Pool != "" && p.Name != s.Pool:
			return &Reason{"NotInPool", fmt.Sprintf("%s is in pool %s, not in the requested pool %s", ip, p.Name, s.Pool)}
		case len(s.Requested) > 0 && !slices.Contains(s.Requested, ip):
			return &Reason{"BadRequest", fmt.Sprintf("%s is not the requested address", ip)}
		case p.AvoidBuggyIPs && buggy(ip):
			return &Reason{"NotInPool", fmt.Sprintf("%s ends in .0 or .255, which pool %s avoids", ip, p.Name)}
		}
		return nil
	}
	return &Reason{"NotInPool", fmt.Sprintf("%s is not in any pool", ip)}
}

// free checks that s may hold ip alongside the Services already holding it.
func (a *allocator) free(s *Service, ip netip.Addr) *Reason {
	for _, o := range a.holders[ip] {
		if why := incompatible(s, o); why != "" {
			return &Reason{"InUse", fmt.Sprintf("%s is in use by Service %s (%s)", ip, o.Key, why)}
		}
	}
	return nil
}

// incompatible says why s and o cannot share an address, or "" when they can.
func incompatible(s, o *Service) string {
	switch {
	case s.SharingKey == "" || o.SharingKey == "":
		return "not shared"
	case s.SharingKey != o.SharingKey:
		return "another sharing key"
	case s.TrafficPolicy != o.TrafficPolicy:
		return "another externalTrafficPolicy"
	}
	for _, p := range s.Ports {
		if slices.Contains(o.Ports, p) {
			return fmt.Sprintf("both use %s/%d", p.Protocol, p.Port)
		}
	}
	return ""
}

func (a *allocator) take(s *Service, ip netip.Addr) {
	if len(a.holders[ip]) == 0 && s.SharingKey != "" {
		a.byKey[s.SharingKey] = append(a.byKey[s.SharingKey], ip)
	}
	a.holders[ip] = append(a.holders[ip], s)
}

// allocate finds s an address of family f.
func (a *allocator) allocate(s *Service, f Family) (netip.Addr, *Reason) {
	for _, ip := range s.Requested {
		if familyOf(ip) != f {
			continue
		}
		if r := a.allowed(s, ip); r != nil {
			return netip.Addr{}, r
		}
		if r := a.free(s, ip); r != nil {
			return netip.Addr{}, r
		}
		a.take(s, ip)
		return ip, nil
	}
	if len(s.Requested) > 0 {
		// A Service that asks for addresses gets exactly those.
		return netip.Addr{}, &Reason{"BadRequest", fmt.Sprintf("no %s address was requested", f)}
	}

	// A sharer joins an address its partners already hold.
	for _, ip := range a.byKey[s.SharingKey] {
		if familyOf(ip) == f && a.allowed(s, ip) == nil && a.free(s, ip) == nil {
			a.take(s, ip)
			return ip, nil
		}
	}

	candidates := 0
	for i := range a.pools {
		p := &a.pools[i]
		if s.Pool != "" && p.Name != s.Pool || s.Pool == "" && !p.AutoAssign || !p.AllowsNamespace(s.Key.Namespace) {
			continue
		}
		for _, r := range p.Addresses {
			if familyOf(r.First) != f {
				continue
			}
			candidates++
			if ip, ok := a.lowestFree(p, r); ok {
				a.take(s, ip)
				return ip, nil
			}
		}
	}
	switch {
	case s.Pool != "" && !a.poolExists(s.Pool):
		return netip.Addr{}, &Reason{"UnknownPool", fmt.Sprintf("pool %q does not exist", s.Pool)}
	case s.Pool != "" && !a.poolAllows(s.Pool, s.Key.Namespace):
		return netip.Addr{}, &Reason{"NotInPool", fmt.Sprintf("namespace %s may not use pool %s", s.Key.Namespace, s.Pool)}
	case candidates == 0 && s.Pool != "":
		return netip.Addr{}, &Reason{"NoPool", fmt.Sprintf("pool %s has no %s addresses", s.Pool, f)}
	case candidates == 0:
		return netip.Addr{}, &Reason{"NoPool", fmt.Sprintf("no auto-assign pool with %s addresses is open to namespace %s", f, s.Key.Namespace)}
	}
	return netip.Addr{}, &Reason{"PoolExhausted", fmt.Sprintf("every %s address of the pools open to it is in use", f)}
}

// lowestFree returns r's lowest address nobody holds.
func (a *allocator) lowestFree(p *config.Pool, r config.Range) (netip.Addr, bool) {
	ip, seen := a.next[r]
	if !seen {
		ip = r.First
	}
	for ; ip.IsValid() && ip.Compare(r.Last) <= 0; ip = ip.Next() {
		if len(a.holders[ip]) == 0 && !(p.AvoidBuggyIPs && buggy(ip)) {
			a.next[r] = ip.Next()
			return ip, true
		}
	}
	a.next[r] = ip
	return netip.Addr{}, false
}

func (a *allocator) poolExists(name string) bool {
	return slices.ContainsFunc(a.pools, func(p config.Pool) bool { return p.Name == name })
}

func (a *allocator) poolAllows(name, ns string) bool {
	return slices.ContainsFunc(a.pools, func(p config.Pool) bool { return p.Name == name && p.AllowsNamespace(ns) })
}

// buggy reports IPv4 addresses ending in .0 or .255, which some old clients
// treat as network or broadcast addresses whatever the prefix length.
func buggy(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	last := ip.As4()[3]
	return last == 0 || last == 255
}
