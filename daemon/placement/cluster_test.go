package placement

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2lb/l2lb/config"

	corev1 "k8s.io/api/core/v1"
)

// cluster runs several Cores against one simulated API server on a fake
// clock, in ticks: at the start of a tick each writes its Lease if a renew
// interval has passed or its claims changed in the previous tick, then
// each steps, seeing every Lease, Node and Service as the API server held
// them 0 to 3 ticks before (each node's informers have their own lag). Faults: a process paused, killed and
// restarted, a Node excluded. It checks what the clients would see: how
// many nodes answer each address.
type cluster struct {
	t       *testing.T
	now     time.Time
	members []*member
	leases  map[string]LeaseUpdate // the API server's member Leases
	svcs    map[string]ServiceUpdate
	svcVer  map[string]int
	nodes   map[string]NodeUpdate
	log     []string // what happened, for a failure's message
	seq     int      // renewTimes are unique
	spare   bool     // every node's config has a spare pool
	hist    []world  // the API server's state at the end of each tick's writes
	// lastFault is when the last fault was injected; darkSince, when
	// each address was last seen unanswered in a quiet cluster.
	lastFault time.Time
	rng       *rand.Rand // for the informers' backoff
	darkSince map[netip.Addr]time.Time
	apiDown   time.Time // the API server is down until then
	// since: when each address began to be answered by more than one
	// node; the ones answering hear each other's announcements.
	since map[netip.Addr]time.Time
}

// world is what the API server holds at one moment.
type world struct {
	leases map[string]LeaseUpdate
	svcs   map[string]ServiceUpdate
	svcVer map[string]int
	nodes  map[string]NodeUpdate
}

type member struct {
	lag int // its informers deliver the API server's state this many ticks late
	// Its Service informer, unlike the Lease informer, backs off after
	// losing the API server: cutSince is when it lost it, svcFrom when the
	// Service informer delivers again (until a RefreshView replaces it).
	cutSince   time.Time
	svcFrom    time.Time
	name       string
	core       *Core
	plan       Plan
	down       bool // killed, not yet started again
	starting   bool // started, waiting for the API server
	pausedTill time.Time
	cutTill    time.Time // cut off from the API server until then
	started    time.Time // when its process last took its first step
	noCarrier  time.Time // its service NIC has no carrier until then
	carrier    bool      // as last observed
	nextRenew  time.Time
	writeNow   bool          // the claims changed: write at the next tick
	writes     []Write       // written, not yet observed
	failed     []FailedWrite // not yet observed
	spare      bool          // its config has the spare pool, as last observed
	conflicts  []Conflict
	seen       int // version of the world last observed
	seenLeases map[string]time.Time
	seenSvcs   map[string]int // version
	seenNodes  map[string]NodeUpdate
}

const tick = 100 * time.Millisecond

func newCluster(t *testing.T, n int) *cluster {
	c := &cluster{t: t, now: time.Unix(1000, 0), leases: map[string]LeaseUpdate{}, svcs: map[string]ServiceUpdate{},
		nodes: map[string]NodeUpdate{}, since: map[netip.Addr]time.Time{}, svcVer: map[string]int{}, darkSince: map[netip.Addr]time.Time{}, rng: rand.New(rand.NewPCG(1, 1))}
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		c.nodes[name] = NodeUpdate{Name: name, Ready: true}
		c.members = append(c.members, &member{name: name})
	}
	for _, m := range c.members {
		c.start(m)
	}
	return c
}

// start starts m's process; it steps once it reaches the API server and
// its informers have listed, as l2lbd does.
func (c *cluster) start(m *member) {
	m.down, m.pausedTill, m.starting = false, time.Time{}, true
	if c.reaches(m) {
		c.firstStep(m)
	}
}

func (c *cluster) firstStep(m *member) {
	m.starting, m.started = false, c.now
	m.cutSince, m.svcFrom = time.Time{}, time.Time{} // new informers, synced
	m.core = NewCore(m.name, timings)
	m.nextRenew = c.now
	m.seenLeases, m.seenSvcs, m.seenNodes = map[string]time.Time{}, map[string]int{}, map[string]NodeUpdate{}
	m.writes, m.plan = nil, Plan{}
	m.spare = c.spare
	cfg := c.config()
	m.carrier = !c.now.Before(m.noCarrier)
	o := Observation{Config: cfg, Links: m.links(), NewLinks: true}
	c.observe(m, &o)
	m.plan = m.core.Step(o)
}

// links is its one service NIC as netio reports it.
func (m *member) links() []Link {
	l := Link{Name: "eth0", Usable: m.carrier, MAC: m.mac()}
	if m.carrier {
		l.Prefixes = eth0[0].Prefixes
	}
	return []Link{l}
}

func (m *member) mac() string { return "02:00:00:00:00:" + strings.TrimPrefix(m.name, "n") + "0" }

// config is the nodes' configuration: testConfig's, with a spare pool when
// the operator added one.
func (c *cluster) config() *config.Config {
	y := "nodeName: a\npools:\n  - name: lan\n    addresses: [198.51.100.200-198.51.100.231]\n" +
		"  - name: other\n    addresses: [198.51.100.240-198.51.100.241]\n    autoAssign: false\n"
	if c.spare {
		y += "  - name: spare\n    addresses: [198.51.100.250-198.51.100.251]\n    autoAssign: false\n"
	}
	cfg, err := config.Parse("test.yaml", []byte(y), "a")
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

// reaches: m can talk to the API server now.
func (c *cluster) reaches(m *member) bool {
	return !c.now.Before(c.apiDown) && !c.now.Before(m.cutTill)
}

// observe adds what changed in the API server since m last looked.
func (c *cluster) observe(m *member, o *Observation) {
	o.Now, o.Synced = c.now, true
	o.Conflicts, m.conflicts = m.conflicts, nil // heard on the wire, not through the API
	if m.spare != c.spare {                     // a config file is local: read even when cut off
		m.spare = c.spare
		o.Config = c.config()
	}
	if carrier := !c.now.Before(m.noCarrier); carrier != m.carrier {
		m.carrier = carrier
		o.Links, o.NewLinks = m.links(), true
	}
	if !c.reaches(m) {
		if m.cutSince.IsZero() {
			m.cutSince = c.now
		}
		return
	}
	if !m.cutSince.IsZero() {
		// Like client-go's reflector: the longer the API server was
		// gone, the longer the backoff (here up to half a minute).
		away := min(c.now.Sub(m.cutSince), 30*time.Second)
		m.svcFrom = c.now.Add(time.Duration(c.rng.Int64N(int64(away) + 1)))
		m.cutSince = time.Time{}
	}
	w := world{c.leases, c.svcs, c.svcVer, c.nodes}
	if n := len(c.hist); n > 0 {
		w = c.hist[max(0, n-1-m.lag)]
	}
	for _, name := range slices.Sorted(maps.Keys(w.leases)) {
		l := w.leases[name]
		if at, ok := m.seenLeases[name]; !ok || !at.Equal(l.Renew) {
			m.seenLeases[name] = l.Renew
			o.Leases = append(o.Leases, l)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(w.nodes)) {
		if n, seen := w.nodes[name], m.seenNodes[name]; seen.Name == "" || seen.Excluded != n.Excluded || seen.Ready != n.Ready {
			m.seenNodes[name] = n
			o.Nodes = append(o.Nodes, n)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(w.svcs)) {
		if c.now.Before(m.svcFrom) {
			break
		}
		if v, seen := m.seenSvcs[name]; !seen || v != w.svcVer[name] {
			m.seenSvcs[name] = w.svcVer[name]
			o.Services = append(o.Services, w.svcs[name])
		}
	}
	for name := range m.seenLeases {
		if _, ok := w.leases[name]; !ok {
			delete(m.seenLeases, name)
			o.LeasesGone = append(o.LeasesGone, name)
		}
	}
	for name := range m.seenSvcs {
		if _, ok := w.svcs[name]; !ok && !c.now.Before(m.svcFrom) {
			delete(m.seenSvcs, name)
			o.Services = append(o.Services, gone(name))
		}
	}
	o.Writes, m.writes = m.writes, nil
	o.Failed, m.failed = m.failed, nil
}

// runFor advances the clock tick by tick, checking at every tick that no
// address has two answering nodes.
func (c *cluster) runFor(d time.Duration) {
	for end := c.now.Add(d); c.now.Before(end); {
		c.now = c.now.Add(tick)
		for _, m := range c.members {
			if m.starting && !m.down && c.reaches(m) {
				c.firstStep(m)
			}
			if m.down || m.starting || c.now.Before(m.pausedTill) {
				continue
			}
			due := m.writeNow || !c.now.Before(m.nextRenew)
			if due && c.reaches(m) {
				c.seq++
				// renewTime is the writer's clock, as kube.Heartbeat
				// writes it (the nanoseconds keep each one unique).
				r := c.now.Add(time.Duration(c.seq))
				pub := m.plan.Publish
				if c.now.After(m.plan.AnswerUntil) { // as kube.Heartbeat writes it
					pub.Claims, pub.Leader, pub.Handover, pub.HandoverTo = nil, false, netip.Addr{}, ""
				}
				c.leases[m.name] = LeaseUpdate{Node: m.name, Renew: r, Member: pub}
				m.writes = append(m.writes, Write{Renew: r, Sent: c.now})
				if !c.now.Before(m.nextRenew) {
					m.nextRenew = c.now.Add(timings.Renew)
				}
				m.writeNow = false
			} else if due {
				m.failed = append(m.failed, FailedWrite{Sent: c.now, Unanswered: true}) // refused or timed out
			}
		}
		c.hist = append(c.hist, world{maps.Clone(c.leases), maps.Clone(c.svcs), maps.Clone(c.svcVer), maps.Clone(c.nodes)})
		if len(c.hist) > 8 {
			c.hist = c.hist[1:]
		}
		for _, m := range c.members {
			if m.down || m.starting || c.now.Before(m.pausedTill) {
				continue
			}
			var o Observation
			c.observe(m, &o)
			m.plan = m.core.Step(o)
			m.writeNow = m.writeNow || m.plan.PublishChanged
			if m.plan.RefreshView {
				m.svcFrom = time.Time{} // new informers list at once
			}
			for _, n := range m.plan.Notes {
				if n.Level >= slog.LevelInfo {
					c.event("%s: %s %v", m.name, n.Msg, n.Attrs)
				}
			}
		}
		c.checkOverlap()
		c.checkQuiet()
	}
}

// answering lists the nodes answering for ip now: running, within their
// deadline, with ip in their set.
func (c *cluster) answering(ip netip.Addr) []string {
	var out []string
	for _, m := range c.members {
		if m.down || m.starting || c.now.Before(m.pausedTill) || !c.now.Before(m.plan.AnswerUntil) {
			continue
		}
		if _, ok := m.core.owned[ip]; ok {
			out = append(out, m.name)
		}
	}
	return out
}

func (c *cluster) addrs() []netip.Addr {
	var out []netip.Addr
	for _, u := range c.svcs {
		for _, in := range u.Service.Status.LoadBalancer.Ingress {
			out = append(out, netip.MustParseAddr(in.IP))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// checkOverlap: two nodes answer for an address only briefly: a node cut
// off yields when it hears the other's announcement.
func (c *cluster) checkOverlap() {
	for _, ip := range c.addrs() {
		a := c.answering(ip)
		if len(a) < 2 {
			delete(c.since, ip)
			continue
		}
		if _, ok := c.since[ip]; !ok {
			c.since[ip] = c.now
		}
		// A node cut off acts on its view for freshFor before it knows it
		// is stale and yields; one tick more for it to hear the other.
		if d := c.now.Sub(c.since[ip]); d > timings.freshFor()+tick {
			c.t.Fatalf("%s answered by %v for %v at %v\n%s", ip, a, d, c.now.Sub(time.Unix(1000, 0)), strings.Join(c.log, "\n"))
		}
		for _, m := range c.members {
			for _, o := range c.members {
				if m != o && slices.Contains(a, m.name) && slices.Contains(a, o.name) {
					m.conflicts = append(m.conflicts, Conflict{IP: ip, MAC: o.mac(), Sender: o.mac(), Interface: "eth0"})
				}
			}
		}
	}
}

// quietFor is how long after the last fault every node must have settled:
// a lease duration for a dead node's Lease to expire, and two seconds for
// the view to turn fresh and settle.
const quietFor = 3*time.Second + 2*time.Second

// checkQuiet: once every fault began and ended quietFor ago (every node
// running, reaching the API server, with carrier, since), every
// address some node may serve is answered by exactly one, but for a hand-
// over's tick.
func (c *cluster) checkQuiet() {
	ends := []time.Time{c.lastFault, c.apiDown} // the last fault began, or ended
	quiet := true
	for _, m := range c.members {
		quiet = quiet && !m.starting
		ends = append(ends, m.pausedTill, m.cutTill, m.noCarrier, m.started)
	}
	quiet = quiet && c.now.Sub(slices.MaxFunc(ends, time.Time.Compare)) >= quietFor
	if !quiet {
		clear(c.darkSince)
		return
	}
	for _, ip := range c.addrs() {
		if len(c.answering(ip)) == 1 || !c.servable(ip) {
			delete(c.darkSince, ip)
			continue
		}
		if _, ok := c.darkSince[ip]; !ok {
			c.darkSince[ip] = c.now
		}
		if d := c.now.Sub(c.darkSince[ip]); d > time.Second {
			c.t.Fatalf("%s answered by %v for %v in a quiet cluster, at %v; %s\n%s", ip, c.answering(ip), d,
				c.now.Sub(time.Unix(1000, 0)), c.views(ip), strings.Join(c.log, "\n"))
		}
	}
}

// servable reports whether some running node may answer for ip: Ready,
// not excluded, and with a ready endpoint of its Service if it is Local.
func (c *cluster) servable(ip netip.Addr) bool {
	for _, u := range c.svcs {
		if !slices.ContainsFunc(u.Service.Status.LoadBalancer.Ingress, func(in corev1.LoadBalancerIngress) bool { return in.IP == ip.String() }) {
			continue
		}
		for _, m := range c.members {
			n := c.nodes[m.name]
			if !m.down && n.Ready && !n.Excluded && (u.Endpoints == nil || u.Endpoints[m.name]) {
				return true
			}
		}
	}
	return false
}

// checkSettled: with nothing happening, every address is answered by
// exactly one node, at some tick within five seconds (a hand-over to
// balance the load leaves one address between two nodes for a tick).
func (c *cluster) checkSettled() {
	var bad netip.Addr
	var who []string
	for range 50 {
		bad = netip.Addr{}
		for _, ip := range c.addrs() {
			if a := c.answering(ip); len(a) != 1 {
				bad, who = ip, a
				break
			}
		}
		if !bad.IsValid() {
			return
		}
		c.runFor(tick)
	}
	c.t.Fatalf("%s answered by %v for five seconds after settling, at %v; %s\n%s", bad, who,
		c.now.Sub(time.Unix(1000, 0)), c.views(bad), strings.Join(c.log, "\n"))
}

// views says where each running node places ip, and whether its Service
// informer delivers.
func (c *cluster) views(ip netip.Addr) string {
	var out []string
	for _, m := range c.members {
		if !m.down && !m.starting {
			out = append(out, fmt.Sprintf("%s places it with %q (Services seen %v)", m.name, m.core.owners[ip], !c.now.Before(m.svcFrom)))
		}
	}
	return strings.Join(out, ", ")
}

func (c *cluster) event(format string, args ...any) {
	c.log = append(c.log, fmt.Sprintf("%6.1fs ", c.now.Sub(time.Unix(1000, 0)).Seconds())+fmt.Sprintf(format, args...))
}

// TestClusterConverges drives five Cores through random faults, from
// fixed seeds: no address is ever answered by two nodes at once, and once
// the faults stop every address is answered by exactly one.
func TestClusterConverges(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			c := newCluster(t, 5)
			c.rng = rng
			for _, m := range c.members {
				m.lag = rng.IntN(4)
			}
			next := 200
			names := func() []string {
				var out []string
				for _, m := range c.members {
					out = append(out, m.name)
				}
				return out
			}()
			endpoints := func() []string { // one or two nodes
				return []string{names[rng.IntN(len(names))], names[rng.IntN(len(names))]}
			}
			addSvc := func() {
				ip := fmt.Sprintf("198.51.100.%d", next)
				name := fmt.Sprintf("s%d", next)
				next++
				if next%3 == 0 {
					ep := endpoints()
					c.svcs[name] = localSvc(name, ip, ep...)
					c.event("created %s (%s), Local, endpoints on %v", name, ip, ep)
				} else {
					c.svcs[name] = svc(name, ip)
					c.event("created %s (%s)", name, ip)
				}
				c.svcVer[name]++
			}
			for range 8 {
				addSvc()
			}
			c.runFor(10 * time.Second)
			c.checkSettled()
			for range 25 {
				m := c.members[rng.IntN(len(c.members))]
				switch k := rng.IntN(12); {
				case k == 11:
					c.spare = !c.spare
					c.event("config edited: spare pool %v", c.spare)
				case k == 8:
					d := time.Duration(1+rng.IntN(9)) * time.Second
					m.noCarrier = c.now.Add(d)
					c.event("%s lost carrier for %v", m.name, d)
				case k == 9:
					n := c.nodes[m.name]
					n.Ready = !n.Ready
					c.nodes[m.name] = n
					c.event("%s Ready: %v", m.name, n.Ready)
				case k == 10:
					for _, name := range slices.Sorted(maps.Keys(c.svcs)) {
						if u := c.svcs[name]; u.Endpoints != nil {
							ep := endpoints()
							u.Endpoints = set(ep)
							c.svcs[name] = u
							c.svcVer[name]++
							c.event("moved the endpoints of %s to %v", name, ep)
							break
						}
					}
				case k == 0 && !m.down:
					d := time.Duration(1+rng.IntN(9)) * time.Second
					m.pausedTill = c.now.Add(d)
					c.event("paused %s for %v", m.name, d)
				case k == 1 && !m.down && rng.IntN(2) == 0:
					m.down = true
					c.event("killed %s", m.name)
				case k == 1 && !m.down && !m.starting && !c.now.Before(m.pausedTill):
					// Stopped: it stops answering, then deletes its
					// Lease if a peer can take over (l2lbd's shutdown).
					m.down = true
					if m.core.PeerCanTakeOver() && c.reaches(m) {
						delete(c.leases, m.name)
					}
					c.event("stopped %s", m.name)
				case k == 2 && m.down:
					c.start(m)
					c.event("restarted %s", m.name)
				case k == 3:
					n := c.nodes[m.name]
					n.Excluded = !n.Excluded
					c.nodes[m.name] = n
					c.event("%s excluded: %v", m.name, n.Excluded)
				case k == 4 && next < 230:
					addSvc()
				case k == 6:
					d := time.Duration(3+rng.IntN(20)) * time.Second
					c.apiDown = c.now.Add(d)
					c.event("API server down for %v", d)
				case k == 7:
					d := time.Duration(1+rng.IntN(9)) * time.Second
					m.cutTill = c.now.Add(d)
					c.event("%s cut off for %v", m.name, d)
				case k == 5 && len(c.svcs) > 1:
					names := slices.Sorted(maps.Keys(c.svcs))
					name := names[rng.IntN(len(names))]
					delete(c.svcs, name)
					c.event("deleted %s", name)
				}
				c.lastFault = c.now
				gap := time.Duration(rng.IntN(4000)) * time.Millisecond
				if rng.IntN(4) == 0 {
					gap += quietFor + 3*time.Second // long enough to check a quiet cluster
				}
				c.runFor(gap)
			}
			for _, m := range c.members {
				if m.down {
					c.start(m)
					c.event("restarted %s", m.name)
				}
				n := c.nodes[m.name]
				n.Excluded, n.Ready = false, true
				c.nodes[m.name] = n
			}
			c.event("faults end")
			c.lastFault = c.now // Ready and excluded reset just now
			c.runFor(30 * time.Second)
			c.checkSettled()
		})
	}
}

// TestClusterRollingRestart: 24 addresses on 3 nodes, each node stopped
// and started again in turn, as an upgrade does; within 60 s of the last
// restart no node holds more than 9 (issue 11's goal, measured end to end
// by TestRollingRestart in the lab).
func TestClusterRollingRestart(t *testing.T) {
	c := newCluster(t, 3)
	for i := range 24 {
		name := fmt.Sprintf("s%d", i)
		c.svcs[name] = svc(name, fmt.Sprintf("198.51.100.%d", 200+i))
		c.svcVer[name]++
	}
	c.runFor(20 * time.Second)
	c.checkSettled()
	for _, m := range c.members {
		m.down = true
		if m.core.PeerCanTakeOver() {
			delete(c.leases, m.name)
		}
		c.event("stopped %s", m.name)
		c.runFor(500 * time.Millisecond)
		c.start(m)
		c.event("started %s", m.name)
		c.runFor(5 * time.Second) // back, fresh and settled
	}
	c.runFor(60 * time.Second)
	c.checkSettled()
	held := map[string]int{}
	for _, ip := range c.addrs() {
		for _, n := range c.answering(ip) {
			held[n]++
		}
	}
	for n, k := range held {
		if k > 9 {
			t.Errorf("%s holds %d of 24 60 s after the last restart, want at most 9 (%v)\n%s", n, k, held, strings.Join(c.log, "\n"))
		}
	}
	t.Logf("held after the rolling restart: %v", held)
}
