package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2lb/l2lb/config"
)

func pools(t testing.TB, spec string) []config.Pool {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(spec), "node")
	if err != nil {
		t.Fatal(err)
	}
	return c.Pools
}

const twoPools = `
pools:
  - name: a
    addresses: [198.51.100.200-198.51.100.202, "2001:db8:100::200-2001:db8:100::201"]
  - name: b
    addresses: [198.51.100.210/31]
    autoAssign: false
  - name: c
    addresses: [198.51.100.220-198.51.100.221]
    namespaces: [team]
  - name: buggy
    addresses: [198.51.100.254-198.51.101.1]
    autoAssign: false
    avoidBuggyIPs: true
`

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// svc builds a single-stack IPv4 Service created i seconds after t0.
func svc(ns, name string, i int, opts ...func(*Service)) Service {
	s := Service{Key: Key{ns, name}, Created: t0.Add(time.Duration(i) * time.Second), Families: []Family{IPv4}, Required: 1, TrafficPolicy: "Cluster",
		Ports: []Port{{"TCP", 80}}}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func current(s ...string) func(*Service) { return func(v *Service) { v.Current = ips(s...) } }
func request(s ...string) func(*Service) { return func(v *Service) { v.Requested = ips(s...) } }
func pool(p string) func(*Service)       { return func(v *Service) { v.Pool = p } }
func port(proto string, n int32) func(*Service) {
	return func(v *Service) { v.Ports = []Port{{proto, n}} }
}
func share(k string) func(*Service) { return func(v *Service) { v.SharingKey = k } }
func local(v *Service)              { v.TrafficPolicy = "Local" }
func dual(required int) func(*Service) {
	return func(v *Service) { v.Families, v.Required = []Family{IPv4, IPv6}, required }
}

// render prints a Result compactly and deterministically for comparisons.
func render(r Result) string {
	var lines []string
	for k, v := range r.Assigned {
		var s []string
		for _, ip := range v {
			s = append(s, ip.String())
		}
		lines = append(lines, fmt.Sprintf("%s=%s", k, strings.Join(s, ",")))
	}
	for k, v := range r.Failed {
		lines = append(lines, fmt.Sprintf("%s!%s: %s", k, v.Code, v.Message))
	}
	for k, v := range r.Moved {
		for _, m := range v {
			lines = append(lines, fmt.Sprintf("%s~%s->%s", k, m.Old, m.New))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func TestAllocate(t *testing.T) {
	p := pools(t, twoPools)
	tests := []struct {
		name string
		svcs []Service
		want []string
	}{
		{"lowest free first, in file order", []Service{svc("x", "s1", 1), svc("x", "s2", 2)},
			[]string{"x/s1=198.51.100.200", "x/s2=198.51.100.201"}},
		{"adopts existing before allocating", []Service{svc("x", "new", 1), svc("x", "old", 2, current("198.51.100.200"))},
			[]string{"x/new=198.51.100.201", "x/old=198.51.100.200"}},
		{"exhausted", []Service{svc("x", "s1", 1), svc("x", "s2", 2), svc("x", "s3", 3), svc("x", "s4", 4)},
			[]string{"x/s1=198.51.100.200", "x/s2=198.51.100.201", "x/s3=198.51.100.202", "x/s4!PoolExhausted: every IPv4 address of the pools open to it is in use"}},
		{"namespace pool after global ones", []Service{svc("team", "s1", 1, request("198.51.100.220"))},
			[]string{"team/s1=198.51.100.220"}},
		{"requested ip", []Service{svc("x", "s1", 1, request("198.51.100.202"))},
			[]string{"x/s1=198.51.100.202"}},
		{"requested outside every pool", []Service{svc("x", "s1", 1, request("198.51.100.1"))},
			[]string{"x/s1!NotInPool: 198.51.100.1 is not in any pool"}},
		{"requested in forbidden namespace pool", []Service{svc("x", "s1", 1, request("198.51.100.220"))},
			[]string{"x/s1!NotInPool: 198.51.100.220 is in pool c, which namespace x may not use"}},
		{"requested in use", []Service{svc("x", "s1", 1, current("198.51.100.200")), svc("x", "s2", 2, request("198.51.100.200"))},
			[]string{"x/s1=198.51.100.200", "x/s2!InUse: 198.51.100.200 is in use by Service x/s1 (not shared)"}},
		{"non-auto pool by annotation", []Service{svc("x", "s1", 1, pool("b"))},
			[]string{"x/s1=198.51.100.210"}},
		{"unknown pool", []Service{svc("x", "s1", 1, pool("nope"))},
			[]string{`x/s1!UnknownPool: pool "nope" does not exist`}},
		{"pool closed to namespace", []Service{svc("x", "s1", 1, pool("c"))},
			[]string{"x/s1!NotInPool: namespace x may not use pool c"}},
		{"avoid buggy ips", []Service{svc("x", "s1", 1, pool("buggy")), svc("x", "s2", 2, pool("buggy")), svc("x", "s3", 3, pool("buggy"))},
			[]string{"x/s1=198.51.100.254", "x/s2=198.51.101.1", "x/s3!PoolExhausted: every IPv4 address of the pools open to it is in use"}},
		{"dual stack", []Service{svc("x", "s1", 1, dual(2))},
			[]string{"x/s1=198.51.100.200,2001:db8:100::200"}},
		{"dual stack required fails without v6", []Service{svc("x", "s1", 1, dual(2), pool("b"))},
			[]string{"x/s1!NoPool: pool b has no IPv6 addresses", "x/s1=198.51.100.210"}},
		{"prefer dual stack is fine with v4 only", []Service{svc("x", "s1", 1, dual(1), pool("b"))},
			[]string{"x/s1=198.51.100.210"}},
		{"sharing joins partner", []Service{svc("x", "s1", 1, share("k")), svc("x", "s2", 2, share("k"), port("TCP", 443))},
			[]string{"x/s1=198.51.100.200", "x/s2=198.51.100.200"}},
		{"sharing refused on port clash", []Service{svc("x", "s1", 1, share("k")), svc("x", "s2", 2, share("k"))},
			[]string{"x/s1=198.51.100.200", "x/s2=198.51.100.201"}},
		{"sharing same port other protocol", []Service{svc("x", "s1", 1, share("k")), svc("x", "s2", 2, share("k"), port("UDP", 80))},
			[]string{"x/s1=198.51.100.200", "x/s2=198.51.100.200"}},
		{"sharing needs same traffic policy", []Service{svc("x", "s1", 1, share("k")), svc("x", "s2", 2, share("k"), port("TCP", 443), local, request("198.51.100.200"))},
			[]string{"x/s1=198.51.100.200", "x/s2!InUse: 198.51.100.200 is in use by Service x/s1 (another externalTrafficPolicy)"}},
		{"config edit removed the ip: moved loudly", []Service{svc("x", "s1", 1, current("198.51.100.203"))},
			[]string{"x/s1=198.51.100.200", "x/s1~198.51.100.203->198.51.100.200"}},
		{"conflicting status: older wins", []Service{svc("x", "young", 2, current("198.51.100.200")), svc("x", "old", 1, current("198.51.100.200"))},
			[]string{"x/old=198.51.100.200", "x/young=198.51.100.201", "x/young~198.51.100.200->198.51.100.201"}},
		{"invalid keeps what it has, gets nothing new", []Service{
			svc("x", "s1", 1, current("198.51.100.201"), func(s *Service) { s.Invalid = "bad annotation" }),
			svc("x", "s2", 2, func(s *Service) { s.Invalid = "bad annotation" }),
		}, []string{"x/s1!BadRequest: bad annotation", "x/s1=198.51.100.201", "x/s2!BadRequest: bad annotation"}},
		{"request change moves", []Service{svc("x", "s1", 1, current("198.51.100.200"), request("198.51.100.201"))},
			[]string{"x/s1=198.51.100.201", "x/s1~198.51.100.200->198.51.100.201"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := render(Allocate(p, tc.svcs))
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if got != strings.Join(want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
		})
	}
}

// randomWorld makes a random but valid snapshot: pools, and Services with
// random requests, sharing keys, families and stale statuses.
func randomWorld(r *rand.Rand, n int) ([]config.Pool, []Service) {
	spec := `
pools:
  - name: a
    addresses: [198.51.100.200-198.51.100.215, "2001:db8:100::200-2001:db8:100::20f"]
  - name: b
    addresses: [198.51.100.216-198.51.100.223]
    autoAssign: false
  - name: c
    addresses: [198.51.100.224-198.51.100.231]
    namespaces: [n1]
    avoidBuggyIPs: true
`
	c, err := config.Parse("t.yaml", []byte(spec), "n")
	if err != nil {
		panic(err)
	}
	addr := func() netip.Addr {
		if r.IntN(4) == 0 {
			return netip.MustParseAddr(fmt.Sprintf("2001:db8:100::2%02x", r.IntN(20)))
		}
		return netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 195+r.IntN(40)))
	}
	var svcs []Service
	for i := range n {
		s := svc(fmt.Sprintf("n%d", r.IntN(3)), fmt.Sprintf("s%d", i), r.IntN(5), port("TCP", int32(80+r.IntN(3))))
		if r.IntN(3) == 0 {
			s.Families, s.Required = []Family{IPv4, IPv6}, 1+r.IntN(2)
		}
		if r.IntN(3) == 0 {
			s.SharingKey = []string{"k1", "k2"}[r.IntN(2)]
		}
		if r.IntN(4) == 0 {
			s.Requested = []netip.Addr{addr()}
		}
		if r.IntN(5) == 0 {
			s.Pool = []string{"a", "b", "c", "zz"}[r.IntN(4)]
		}
		if r.IntN(2) == 0 {
			s.Current = []netip.Addr{addr()}
		}
		if r.IntN(6) == 0 {
			s.TrafficPolicy = "Local"
		}
		svcs = append(svcs, s)
	}
	return c.Pools, svcs
}

// TestAllocateProperties checks, over many random snapshots: no address is
// held by two Services unless they may share it; every address lies in a pool
// the Service may use; the result does not depend on input order; and feeding
// the result back as the status changes nothing (adoption is stable).
func TestAllocateProperties(t *testing.T) {
	for seed := range uint64(500) {
		r := rand.New(rand.NewPCG(seed, 7))
		ps, svcs := randomWorld(r, 1+r.IntN(40))
		res := Allocate(ps, svcs)

		byKey := map[Key]*Service{}
		for i := range svcs {
			byKey[svcs[i].Key] = &svcs[i]
		}
		holders := map[netip.Addr][]*Service{}
		for k, addrs := range res.Assigned {
			s := byKey[k]
			seenFam := map[Family]bool{}
			for _, ip := range addrs {
				if seenFam[familyOf(ip)] {
					t.Fatalf("seed %d: %s got two %s addresses: %v", seed, k, familyOf(ip), addrs)
				}
				seenFam[familyOf(ip)] = true
				if !slices.Contains(s.Families, familyOf(ip)) {
					t.Fatalf("seed %d: %s got %s but wants %v", seed, k, ip, s.Families)
				}
				p, ok := poolOf(ps, ip)
				if !ok || !p.AllowsNamespace(k.Namespace) || (s.Pool != "" && p.Name != s.Pool) {
					t.Fatalf("seed %d: %s got %s outside the pools it may use", seed, k, ip)
				}
				if len(s.Requested) > 0 && !slices.Contains(s.Requested, ip) && !slices.Contains(s.Current, ip) {
					t.Fatalf("seed %d: %s requested %v, got %s", seed, k, s.Requested, ip)
				}
				for _, o := range holders[ip] {
					if why := incompatible(s, o); why != "" {
						t.Fatalf("seed %d: %s held by %s and %s (%s)", seed, ip, k, o.Key, why)
					}
				}
				holders[ip] = append(holders[ip], s)
			}
		}

		shuffled := slices.Clone(svcs)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got, want := render(Allocate(ps, shuffled)), render(res); got != want {
			t.Fatalf("seed %d: result depends on input order:\n%s\nvs\n%s", seed, got, want)
		}

		// The leader writes Assigned to the status; the next round must keep it.
		again := slices.Clone(svcs)
		for i := range again {
			again[i].Current = res.Assigned[again[i].Key]
		}
		res2 := Allocate(ps, again)
		if !reflect.DeepEqual(res2.Assigned, res.Assigned) || len(res2.Moved) != 0 {
			t.Fatalf("seed %d: adoption is not stable:\n%s\nvs\n%s", seed, render(res2), render(res))
		}
	}
}

func poolOf(ps []config.Pool, ip netip.Addr) (*config.Pool, bool) {
	for i := range ps {
		if ps[i].Contains(ip) {
			return &ps[i], true
		}
	}
	return nil, false
}

// BenchmarkAllocate10000 allocates 10,000 Services from cold (no status) and
// then re-runs with every status in place, as a leader does on each change.
func BenchmarkAllocate10000(b *testing.B) {
	ps := pools(b, "pools:\n  - name: big\n    addresses: [10.0.0.0/16, \"2001:db8:100::/112\"]\n")
	svcs := make([]Service, 10000)
	for i := range svcs {
		svcs[i] = svc(fmt.Sprintf("ns%d", i%50), fmt.Sprintf("s%d", i), i)
		if i%4 == 0 {
			svcs[i].Families, svcs[i].Required = []Family{IPv4, IPv6}, 2
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			if res := Allocate(ps, svcs); len(res.Assigned) != len(svcs) {
				b.Fatalf("assigned %d", len(res.Assigned))
			}
		}
	})
	res := Allocate(ps, svcs)
	warm := slices.Clone(svcs)
	for i := range warm {
		warm[i].Current = res.Assigned[warm[i].Key]
	}
	b.Run("adopt", func(b *testing.B) {
		for b.Loop() {
			if res := Allocate(ps, warm); len(res.Moved) != 0 {
				b.Fatal("moved")
			}
		}
	})
}
