package placement

import (
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/ipam"
)

// This file is the decision core of one node: a state machine that takes
// what the node observed since its last step and returns what it must do.
// It does no I/O and reads no clock; the daemon observes, calls Step and
// applies the Plan. Work is proportional to what changed: a renewal that
// only moves a peer's renewTime refreshes its liveness, a Service change
// re-decides that Service's addresses, and every address is re-decided only
// when membership, eligibility, the config or this node's health changes.

// Timings are the coordination timings. The heartbeat and the core use the
// same values for the life of the process: they are restart-only.
type Timings struct {
	Renew time.Duration // coordination.renewInterval
	Lease time.Duration // coordination.leaseDuration
}

// window is how long a decision stays good. A node answers and claims only
// until window after its latest step: its last renewal was written at most
// Renew before it paused, so peers take over no sooner than Lease after
// that, and it must be silent by then.
func (t Timings) window() time.Duration { return t.Lease - t.Renew }

// Window is how long a decision is good for: the next step must come
// within it, or the node takes itself for paused.
func (c *Core) Window() time.Duration { return c.t.window() }

// freshFor is how old the newest own renewal seen back may be for the view
// to count as fresh: two thirds of a lease duration, which leaves room for
// a renewal's latency even at the fastest timings (lease = 2 × renew).
func (t Timings) freshFor() time.Duration { return t.Lease * 2 / 3 }

// lagLimit is how far behind informers that still deliver own renewals
// may fall before they are replaced anyway: three lease durations.
func (t Timings) lagLimit() time.Duration { return 3 * t.Lease }

// Link is one interface of this host, as netio sees it.
type Link struct {
	Name     string
	Usable   bool   // up, with carrier, Ethernet: neighbours can reach us here
	MAC      string // as net.HardwareAddr.String writes it
	Prefixes []netip.Prefix
}

// Member is what a node publishes in its member Lease.
type Member struct {
	Pools  []string
	Claims []netip.Addr
	Leader bool // it claims the IPAM leader role
	Stale  bool // its view has been stale for a lease duration
	// Handover, when valid, is an address the node no longer answers for
	// and offers to node HandoverTo, to balance the load.
	Handover   netip.Addr
	HandoverTo string
	// MACs are the hardware addresses of the links the node answers its
	// pools on: what a cut-off peer may yield to (conflict).
	MACs []string
}

// LeaseUpdate is a member Lease as it is now in the view.
type LeaseUpdate struct {
	Node string
	// Renew is the Lease's renewTime: the identity of a renewal, never
	// compared with this node's clock.
	Renew  time.Time
	Member Member
}

// NodeUpdate is a Node object as it is now; Deleted when it is gone.
type NodeUpdate struct {
	Name            string
	Ready, Excluded bool
	// Labels are matched against the pools' nodeSelectors.
	Labels  map[string]string
	Deleted bool
}

// ServiceUpdate is a Service (nil when deleted) and the nodes that have a
// ready endpoint of it.
type ServiceUpdate struct {
	Key       ipam.Key
	Service   *corev1.Service
	Endpoints map[string]bool
}

// Write is one successful renewal of this node's own Lease.
type Write struct {
	Renew time.Time // the renewTime the API server stored
	Sent  time.Time // when the write was sent, by this node's clock
}

// written is a renewal this node wrote; afterFailure: a write failed
// between it and the one written before it.
type written struct {
	Write
	afterFailure bool
}

// FailedWrite is a write of the own Lease that failed.
type FailedWrite struct {
	Sent time.Time // by this node's clock
	// Unanswered: no answer (no connection, a timeout) or a server error:
	// the API server may be out of reach, and the informers' reflectors
	// backing off. Not a conflict, or a 429 from a loaded server.
	Unanswered bool
}

// Offer is a hand-over offer of IP to node To.
type Offer struct {
	IP netip.Addr
	To string
}

// Conflict is another MAC announcing an address this node answers for.
type Conflict struct {
	IP  netip.Addr
	MAC string // the MAC the frame claims the address for
	// Sender is the frame's Ethernet source (netio.Conflict).
	Sender    string
	Interface string
}

// Observation is what the node saw since its previous step. Only Now and
// Synced are whole; everything else lists what changed. The first step
// must carry the config, the links and the whole view.
type Observation struct {
	Now    time.Time // monotonic, this node's clock
	Synced bool      // every informer has listed
	Config *config.Config
	Links  []Link
	// NewLinks: Links is the new list of interfaces.
	NewLinks   bool
	Leases     []LeaseUpdate // member Leases added or changed, this node's own included
	LeasesGone []string      // nodes whose member Lease was deleted
	Nodes      []NodeUpdate
	Services   []ServiceUpdate
	Writes     []Write
	Failed     []FailedWrite // since the previous step
	// Unsent are hand-over offers the heartbeat gave up: no write that
	// carried them can have reached the API server, and none will.
	Unsent    []Offer
	Conflicts []Conflict
}

// Plan is what the daemon does after a step.
type Plan struct {
	// Desired is the new set this node answers for (address -> interface),
	// when DesiredChanged. Shared with the core, which replaces its set
	// and never changes it: read only.
	Desired        map[netip.Addr]string
	DesiredChanged bool
	// AnswerUntil: netio answers nothing after it unless a later step
	// extends it (a paused process must not answer when it resumes).
	AnswerUntil time.Time
	// Publish is the member Lease content; PublishChanged when it differs
	// from the previous step's. Claims are valid until AnswerUntil.
	Publish        Member
	PublishChanged bool
	// PublishMayWait: the claims this step added are of addresses no peer
	// claims or offered to this node (new ones, a cold start's), so peers
	// lose nothing if they are written a little later, together with
	// others. A claim taken from a peer, or an offer taken, must be seen at
	// once: the peer, or a node coming back from a freeze, decides by it.
	PublishMayWait bool
	// Lead: this node writes Service status (it leads IPAM with a fresh view).
	Lead bool
	// RefreshView: the informers lag behind working writes; replace them.
	RefreshView bool
	// Wake is when to step again if nothing is observed before.
	Wake time.Duration
	// Notes are log lines explaining the decisions.
	Notes []Note
	// Announced lists the addresses this node took up, for Events.
	Announced []Announced
	// Conflicts to report (log and Event), de-duplicated.
	Conflicts []ConflictReport
	// Healthy: the view is fresh.
	Healthy bool
	// Answering is how many addresses this node answers for.
	Answering int
	// Redecided is how many addresses this step placed anew: the measure
	// of its work.
	Redecided int
}

// Note is one log line.
type Note struct {
	Level slog.Level
	Msg   string
	Attrs []any
}

// Announced is an address this node started answering for, and why.
type Announced struct {
	IP        netip.Addr
	Interface string
	Services  []ipam.Key
	Reason    TakeoverReason
	// Moved: it answered for IP before, on another interface; not a
	// takeover.
	Moved bool
}

// ConflictLog is the daemon's log line for a ConflictReport.
const ConflictLog = "another host announces an address this node answers for"

// FreshLog is the daemon's log line when its view turns fresh (at start, and
// after a freeze): from then it gives every peer live before a lease
// duration by its own clock, and takes over none of their addresses sooner.
const FreshLog = "view of the cluster is fresh; placing addresses"

// HandoverLog is logged when this node offers an address to a peer to
// balance the load (the chaos checker reads it).
const HandoverLog = "handing an address over to balance the load"

// WithdrawLog is logged when this node takes back an offer nobody took.
const WithdrawLog = "hand-over withdrawn"

// ConflictReport is a conflict worth telling the operator about.
type ConflictReport struct {
	Conflict
	Services []ipam.Key
}

// Bounds of the core's own pacing.
const (
	// ConflictQuiet: the same address and MAC are reported once a minute.
	ConflictQuiet = time.Minute
	// conflictMACs bounds the MACs reported per address per ConflictQuiet;
	// one more gets a summary line. Forged claims from a new MAC in every
	// frame are then a few lines a minute, not one per frame, and the
	// memory of what was reported stays bounded by the owned addresses.
	conflictMACs = 3
	// fairSlack is ε in the fair share ⌈(1+ε) · addresses / nodes⌉.
	fairSlack = 0.1
	// writesKept is how many recent renewals are remembered to recognise
	// them when they come back through the informers.
	writesKept = 16
	// handoverBackoff: after a hand-over nobody took, nothing is offered
	// for this long; nor is an address passed on this long after it was
	// received through one.
	handoverBackoff = time.Minute
)

// offerable: a hand-over goes only to a peer whose renewals this node saw
// within two renew intervals, not to one that merely has not expired yet
// (it may have died a moment ago); and an offer whose target stops being
// offerable is withdrawn. Two intervals, not one: a renewal seen late on a
// busy machine must not look like a death (the lease duration is at least
// two renew intervals). Nor to a peer live for less than a lease duration:
// one just back from a pause, a crash or a cut must show it stays before
// the load moves to it (a flapping node would take and drop addresses).
func (t Timings) offerable(p *peer, now time.Time) bool {
	return p.live && now.Sub(p.seenAt) < t.silent() && now.Sub(p.liveSince) >= t.Lease
}

// silent is how long a peer's renewals may go unseen before it counts as
// no longer renewing for a hand-over.
func (t Timings) silent() time.Duration { return 2 * t.Renew }

// Core is one node's decision state. It is not safe for concurrent use.
type Core struct {
	self string
	t    Timings
	cfg  *config.Config

	links    []Link
	macs     []string // servingMACs, published for peers
	ownPools map[string]bool

	peers    map[string]*peer
	nodes    map[string]nodeFacts
	services map[ipam.Key]*service
	addrs    map[netip.Addr]*address

	// labels and unselected (the pools whose nodeSelector a node fails,
	// see Node.Unselected) are per node; unselected is recomputed when the
	// labels or the config change, never per decision.
	labels     map[string]map[string]string
	unselected map[string]map[string]bool

	owned   map[netip.Addr]string // answered now: address -> interface
	claims  map[netip.Addr]bool   // owned's keys, for placement
	yielded map[netip.Addr]bool   // given up to a peer while frozen
	owners  map[netip.Addr]string // the latest decision, every address
	count   map[string]int        // addresses per owner in owners
	leading bool
	publish Member

	started     bool
	answerUntil time.Time
	writes      []written
	// failedSinceWrite: a write failed after the newest renewal written.
	failedSinceWrite bool
	ownRenew         time.Time // own Lease's renewTime as last seen in the view
	ownSeenAt        time.Time // when the view last showed a new own renewal
	fresh            time.Time // sent time of the newest own renewal seen back
	lastWrite        time.Time // sent time of the newest successful renewal
	frozen           bool
	frozenSince      time.Time
	// freshBeforeFreeze is fresh when the node last froze: the peers
	// live then are given a lease duration when it thaws.
	freshBeforeFreeze time.Time
	// lapsedAt is set while this node recovers from not running for
	// longer than window: it claims nothing until a renewal sent after
	// this time has come back.
	lapsedAt time.Time
	// paused is what this node answered for when it noticed a lapse, until
	// it has decided with a fresh view again: what it then takes back is
	// no new address (for the takeover reason).
	paused map[netip.Addr]string
	// provenTime is how long in all the API server is known to have
	// served this node and its view to have kept up: the spans between
	// consecutive own renewals written (see proven). A live peer renews
	// within silent of it, unless its writes alone failed.
	provenTime time.Duration
	// awaySince is set while its Lease has gone unrenewed for a lease
	// duration during this freeze (peers may have expired it and taken
	// over): the sent time of its last renewal before that gap.
	awaySince     time.Time
	settleUntil   time.Time
	settling      bool
	refreshed     time.Time // when the informers were last replaced
	debug         bool      // the config logs at debug level: notes of every placement
	writeFailedAt time.Time // when a write of the own Lease last failed unanswered

	// Rebalancing: at most one address is being handed over at a time.
	handover   netip.Addr
	handoverTo string
	handoverAt time.Time
	nextShed   time.Time
	// received: addresses this node took through a hand-over, and when.
	// It passes none of them on for handoverBackoff: views that differ
	// by one address would otherwise bounce it between two nodes.
	received map[netip.Addr]time.Time

	warned     map[conflictKey]time.Time
	warnedMACs map[netip.Addr]int // keys of warned per address
	// peerMACs are the MACs each peer published, kept when its Lease goes
	// (a peer stopped and started again while this node was cut off comes
	// back with the same MACs, under a Lease this node never saw), and
	// forgotten when its Node object is deleted.
	peerMACs map[string][]string
}

type peer struct {
	renew     time.Time // renewTime as last seen
	seenAt    time.Time // when this node saw it change (from when a late write was written)
	arrived   time.Time // when this node last saw it change, never backdated
	live      bool
	liveSince time.Time // when live last turned true
	// revived: a thaw gave it a lease duration, and no renewal of it has
	// arrived since; revivedAt is the node's provenTime then.
	revived   bool
	revivedAt time.Duration
	member    Member
	pools     map[string]bool
	claims    map[netip.Addr]bool
}

func (p *peer) claimsAny(ips map[netip.Addr]string) bool {
	for ip := range p.claims {
		if _, ok := ips[ip]; ok {
			return true
		}
	}
	return false
}

type nodeFacts struct{ ready, excluded bool }

type service struct {
	svc       *corev1.Service
	endpoints map[string]bool
	addrs     []netip.Addr // its addresses this node would announce
}

type address struct {
	pool     string
	services []ipam.Key
}

type conflictKey struct {
	ip  netip.Addr
	mac string
}

// NewCore returns the state of node self before its first step.
func NewCore(self string, t Timings) *Core {
	return &Core{
		self:       self,
		t:          t,
		ownPools:   map[string]bool{},
		peers:      map[string]*peer{},
		nodes:      map[string]nodeFacts{},
		labels:     map[string]map[string]string{},
		unselected: map[string]map[string]bool{},
		services:   map[ipam.Key]*service{},
		addrs:      map[netip.Addr]*address{},
		owned:      map[netip.Addr]string{},
		claims:     map[netip.Addr]bool{},
		yielded:    map[netip.Addr]bool{},
		owners:     map[netip.Addr]string{},
		count:      map[string]int{},
		frozen:     true,
		warned:     map[conflictKey]time.Time{},
		warnedMACs: map[netip.Addr]int{},
		received:   map[netip.Addr]time.Time{},
		peerMACs:   map[string][]string{},
	}
}

// step is the working state of one Step.
type step struct {
	now   time.Time
	full  bool
	dirty map[netip.Addr]bool
	plan  Plan
	next  map[netip.Addr]string // owned after this step, once copied
	// reclaim is an address whose hand-over this node withdrew in this
	// step: it counts as its claimant in this step's decisions.
	reclaim netip.Addr
	// was: the owner this node had placed an address with before this
	// step, where this step changed it (for the log's reasons).
	was map[netip.Addr]string
}

func (s *step) note(level slog.Level, msg string, attrs ...any) {
	s.plan.Notes = append(s.plan.Notes, Note{level, msg, attrs})
}

func (s *step) touch(ip netip.Addr) { s.dirty[ip] = true }

// Step applies one observation and returns the plan.
func (c *Core) Step(o Observation) Plan {
	s := &step{now: o.Now, dirty: map[netip.Addr]bool{}}
	first := !c.started
	if first {
		c.frozenSince = o.Now
		c.refreshed = o.Now
		s.full = true
	} else if o.Now.After(c.answerUntil) {
		c.lapse(s)
	}
	if o.Config != nil {
		c.setConfig(s, o.Config)
	}
	if o.NewLinks {
		// The interface of what this node answers for may change; other
		// nodes' choices only if the pools it can serve change.
		c.links = o.Links
		for ip := range c.owned {
			s.touch(ip)
		}
	}
	if o.Config != nil || o.NewLinks {
		c.macs = servingMACs(c.cfg, c.links, c.macs)
		if pools := servablePools(c.cfg, c.links); !maps.Equal(pools, c.ownPools) {
			c.ownPools = pools
			s.full = true
		}
	}
	for _, u := range o.Services {
		c.setService(s, u)
	}
	for _, u := range o.Nodes {
		c.setNode(s, u)
	}
	for _, u := range o.Leases {
		c.setLease(s, u)
	}
	for _, name := range o.LeasesGone {
		if p, ok := c.peers[name]; ok {
			for ip := range p.claims {
				s.touch(ip)
			}
			delete(c.peers, name)
			s.full = true
		}
	}
	if first {
		c.restore(s, o.Leases)
	}
	c.recordWrites(o.Writes, o.Failed, o.Now)
	c.expirePeers(s)
	for ip, at := range c.received {
		if s.now.Sub(at) >= handoverBackoff {
			delete(c.received, ip)
		}
	}
	c.checkHealth(s, o.Synced)
	if len(o.Conflicts) > 0 {
		c.forgetConflicts(o.Now)
	}
	for _, cf := range o.Conflicts {
		c.conflict(s, cf)
	}
	settling := o.Now.Before(c.settleUntil)
	if settling != c.settling {
		c.settling = settling
		s.full = true // what settling held back is taken now
	}
	stale := c.frozen && (o.Now.Sub(c.frozenSince) >= c.t.Lease || !c.awaySince.IsZero())
	c.endHandover(s, o.Unsent)
	nodes := c.nodeList()
	if s.reclaim.IsValid() {
		self := &nodes[len(nodes)-1]
		self.Claims = maps.Clone(self.Claims)
		self.Claims[s.reclaim] = true
	}
	c.decideLeader(s, nodes, settling, stale)
	c.place(s, nodes, settling)
	if !c.frozen && !settling && c.cfg.Placement.Rebalance {
		c.rebalance(s, nodes)
	}
	c.finish(s, stale)
	if !c.frozen && !settling {
		c.paused = nil // what it re-took after a pause, it has taken by now
	}
	c.started = true
	return s.plan
}

// lapse handles a step that comes later than the previous one allowed:
// the process did not run (paused, frozen VM) and peers may have taken
// everything over. It is no better than a restarted node that has lost its
// Lease: it drops every claim and answers nothing until its view is fresh.
func (c *Core) lapse(s *step) {
	s.note(slog.LevelWarn, "this node did not run for longer than its claims last (paused?); answering nothing until its view is fresh again",
		"late", s.now.Sub(c.answerUntil).Round(time.Millisecond).String())
	for ip := range c.owned {
		s.touch(ip)
	}
	if c.paused == nil { // a second pause keeps what the first one dropped
		c.paused = map[netip.Addr]string{}
	}
	maps.Copy(c.paused, c.owned)
	s.next = map[netip.Addr]string{}
	c.lapsedAt = s.now
	c.leading = false
	c.handover, c.handoverTo = netip.Addr{}, ""
	c.enterFrozen(s)
	s.full = true
}

func (c *Core) setConfig(s *step, cfg *config.Config) {
	c.cfg = cfg
	c.debug = cfg.Log.Level <= slog.LevelDebug
	for name, l := range c.labels {
		c.unselected[name] = unselectedPools(cfg, l)
	}
	clear(c.addrs)
	for k, svc := range c.services {
		svc.addrs = c.addressesOf(svc.svc)
		for _, ip := range svc.addrs {
			c.addTo(ip, k)
		}
	}
	s.full = true
}

// addressesOf lists the addresses of svc this node may announce: those of
// a Service l2lb serves that lie in a pool its namespace may use. Nothing
// outside the pools is ever announced, whoever wrote the status.
func (c *Core) addressesOf(svc *corev1.Service) []netip.Addr {
	if c.cfg == nil || !ipam.Serves(c.cfg, svc) {
		return nil
	}
	var out []netip.Addr
	for _, ip := range ipam.IngressIPs(svc) {
		if pool, ok := c.cfg.PoolFor(ip); ok && pool.AllowsNamespace(svc.Namespace) {
			out = append(out, ip)
		}
	}
	return out
}

func (c *Core) addTo(ip netip.Addr, k ipam.Key) {
	a, ok := c.addrs[ip]
	if !ok {
		pool, _ := c.cfg.PoolFor(ip)
		a = &address{pool: pool.Name}
		c.addrs[ip] = a
	}
	a.services = append(a.services, k)
}

func (c *Core) setService(s *step, u ServiceUpdate) {
	if old, ok := c.services[u.Key]; ok {
		for _, ip := range old.addrs {
			s.touch(ip)
			if a := c.addrs[ip]; a != nil {
				a.services = slices.DeleteFunc(a.services, func(k ipam.Key) bool { return k == u.Key })
				if len(a.services) == 0 {
					delete(c.addrs, ip)
				}
			}
		}
		delete(c.services, u.Key)
	}
	if u.Service == nil {
		return
	}
	svc := &service{svc: u.Service, endpoints: u.Endpoints, addrs: c.addressesOf(u.Service)}
	c.services[u.Key] = svc
	for _, ip := range svc.addrs {
		c.addTo(ip, u.Key)
		s.touch(ip)
	}
}

func (c *Core) setNode(s *step, u NodeUpdate) {
	old, known := c.nodes[u.Name]
	if u.Deleted {
		delete(c.nodes, u.Name)
		delete(c.labels, u.Name)
		delete(c.unselected, u.Name)
		delete(c.peerMACs, u.Name) // decommissioned: its MACs are no peer's
		_, member := c.peers[u.Name]
		s.full = s.full || known && (member || u.Name == c.self)
		return
	}
	f := nodeFacts{ready: u.Ready, excluded: u.Excluded}
	c.nodes[u.Name] = f
	relabelled := false
	if l, seen := c.labels[u.Name]; !seen || !maps.Equal(l, u.Labels) {
		c.labels[u.Name] = u.Labels
		un := unselectedPools(c.cfg, u.Labels)
		relabelled = !maps.Equal(un, c.unselected[u.Name])
		c.unselected[u.Name] = un
	}
	// Only members (this node, or a peer with a Lease) are placed on.
	_, member := c.peers[u.Name]
	if member || u.Name == c.self {
		s.full = s.full || !known || old != f || relabelled
	}
}

// unselectedPools names the pools whose nodeSelector a Node with these
// labels fails; nil when it fails none.
func unselectedPools(cfg *config.Config, labels map[string]string) map[string]bool {
	if cfg == nil {
		return nil
	}
	var out map[string]bool
	for i := range cfg.Pools {
		if p := &cfg.Pools[i]; !p.SelectsNode(labels) {
			if out == nil {
				out = map[string]bool{}
			}
			out[p.Name] = true
		}
	}
	return out
}

func (c *Core) setLease(s *step, u LeaseUpdate) {
	if u.Node == c.self {
		if u.Renew.After(c.ownRenew) {
			c.ownSeenAt = s.now
		}
		c.ownRenew = u.Renew
		return
	}
	p, known := c.peers[u.Node]
	if !known {
		p = &peer{}
		c.peers[u.Node] = p
	}
	if !known || !p.renew.Equal(u.Renew) {
		seen := s.now
		// A write can arrive long after it was sent: sent before its node
		// was cut off and paused, held in a TCP retransmission, accepted
		// when the cut ended. Its renewTime then advanced, by the writer's
		// clock, far less than this node's clock did since the previous
		// renewal. Beyond a lease duration of such delay it says nothing of
		// now (the writer's claims have lapsed by its own clock): it counts
		// from when it was written, and revives no expired node. Only
		// differences of each clock are compared, never one with the other;
		// a watch that lags does not delay one renewal by a lease duration
		// while this node's own come back fresh.
		// From the previous renewal's arrival, not its backdated seenAt,
		// and only forward: a writer's clock stepped back once must not
		// keep it expired for good.
		late := s.now.Sub(p.arrived) - u.Renew.Sub(p.renew)
		if !p.renew.IsZero() && u.Renew.After(p.renew) && late > c.t.Lease {
			seen = s.now.Add(-late)
		}
		if known && seen.Sub(p.seenAt) >= c.t.silent() {
			// Back after a gap long enough for it to have lapsed
			// (paused, restarted) though not yet expired here: it
			// shows it stays before hand-overs go to it.
			p.liveSince = s.now
		}
		p.renew, p.seenAt, p.arrived = u.Renew, seen, s.now
		p.revived = false
	}
	m := u.Member
	if !known || !slices.Equal(p.member.Pools, m.Pools) {
		p.pools = set(m.Pools)
		s.full = true
	}
	if !known || !slices.Equal(p.member.Claims, m.Claims) {
		claims := set(m.Claims)
		for ip := range p.claims {
			if !claims[ip] {
				s.touch(ip)
			}
		}
		for ip := range claims {
			if !p.claims[ip] {
				s.touch(ip)
			}
		}
		p.claims = claims
	}
	if p.member.Handover != m.Handover || p.member.HandoverTo != m.HandoverTo {
		for _, ip := range []netip.Addr{p.member.Handover, m.Handover} {
			if ip.IsValid() {
				s.touch(ip)
			}
		}
	}
	if len(m.MACs) > 0 && !slices.Equal(m.MACs, p.member.MACs) {
		// The previous list and this one: a peer restarted while one of
		// its NICs has no carrier publishes fewer, and the others are
		// still its; older lists are forgotten (a NIC replaced).
		macs := append(slices.Clone(p.member.MACs), m.MACs...)
		slices.Sort(macs)
		c.peerMACs[u.Node] = slices.Compact(macs)
	}
	p.member = m
}

// restore starts from the claims this node's Lease carries from a previous
// run, minus every address (and the IPAM role) another node claims
// meanwhile, and every address this node may not serve now (excluded, not
// Ready, a Local Service's endpoints gone from it): a quick restart keeps
// answering, a node that restarts after a peer took over does not take its
// addresses back, and one that lost its eligibility while it was down does
// not answer until its first fresh view drops them.
func (c *Core) restore(s *step, leases []LeaseUpdate) {
	var mine *Member
	for i := range leases {
		if leases[i].Node == c.self {
			mine = &leases[i].Member
		}
	}
	if mine == nil {
		return
	}
	ledElsewhere := false
	for _, p := range c.peers {
		ledElsewhere = ledElsewhere || p.member.Leader
	}
	c.leading = mine.Leader && !ledElsewhere
	for _, ip := range mine.Claims {
		if c.claimedByPeer(ip) {
			continue
		}
		// Its view is not fresh before the first renewal comes back:
		// eligibility aside from that.
		if a := c.addrs[ip]; a != nil && !c.mayKeep(ip, a) {
			continue
		}
		if iface, ok := c.interfaceFor(ip); ok {
			s.own(c, ip, iface)
		}
	}
	if n := len(s.next); n > 0 {
		s.note(slog.LevelInfo, "answering again for the addresses claimed before the restart", "ips", n)
	}
}

func (c *Core) claimedByLivePeer(ip netip.Addr) bool {
	for _, p := range c.peers {
		if p.live && p.claims[ip] {
			return true
		}
	}
	return false
}

// takenOver reports whether a live peer that may answer for ip claims it:
// the hand-over of ip is done. Not any live peer's claim: the node this
// one took ip from may claim it still, ineligible (NotReady, excluded) or
// a moment behind, and the offer would end before its target took it.
func (c *Core) takenOver(ip netip.Addr, a *address) bool {
	for name, p := range c.peers {
		if p.live && p.claims[ip] && (name == c.handoverTo || c.eligible(name, ip, a)) {
			return true
		}
	}
	return false
}

// claimedSince reports whether a peer whose latest renewal was written
// after since (as far as this node can tell: a late write counts from when
// it was written) claims ip.
func (c *Core) claimedSince(ip netip.Addr, since time.Time) bool {
	for _, p := range c.peers {
		if p.claims[ip] && p.seenAt.After(since) {
			return true
		}
	}
	return false
}

func (c *Core) claimedByPeer(ip netip.Addr) bool {
	for _, p := range c.peers {
		if p.claims[ip] {
			return true
		}
	}
	return false
}

// own and disown change the owned set of this step.
func (s *step) own(c *Core, ip netip.Addr, iface string) {
	if s.next == nil {
		s.next = maps.Clone(c.owned)
	}
	s.next[ip] = iface
}

func (s *step) disown(c *Core, ip netip.Addr) {
	if _, ok := s.owned(c)[ip]; !ok {
		return
	}
	if s.next == nil {
		s.next = maps.Clone(c.owned)
	}
	delete(s.next, ip)
}

func (s *step) owned(c *Core) map[netip.Addr]string {
	if s.next != nil {
		return s.next
	}
	return c.owned
}

// recordWrites takes the heartbeat's results: renewals written and writes
// that failed.
func (c *Core) recordWrites(ws []Write, failed []FailedWrite, now time.Time) {
	var fails []time.Time
	for _, f := range failed {
		fails = append(fails, f.Sent)
		if f.Unanswered {
			c.writeFailedAt = now
		}
	}
	slices.SortFunc(fails, time.Time.Compare)
	slices.SortFunc(ws, func(a, b Write) int { return a.Sent.Compare(b.Sent) }) // the observation's, handed over
	for _, w := range ws {
		// The heartbeat writes one at a time, and reports a failure
		// before it sends the next write: the failures sent before w
		// came after the renewal written before it.
		broken := c.failedSinceWrite
		for len(fails) > 0 && fails[0].Before(w.Sent) {
			broken, fails = true, fails[1:]
		}
		c.failedSinceWrite = false
		c.writes = append(c.writes, written{Write: w, afterFailure: broken})
		if w.Sent.After(c.lastWrite) {
			c.lastWrite = w.Sent
		}
	}
	c.failedSinceWrite = c.failedSinceWrite || len(fails) > 0
	if n := len(c.writes) - writesKept; n > 0 {
		// The first kept spans the dropped ones (see proven), and any
		// failure among them.
		for _, w := range c.writes[:n] {
			c.writes[n].afterFailure = c.writes[n].afterFailure || w.afterFailure
		}
		c.writes = slices.Delete(c.writes, 0, n)
	}
	// A renewal seen back proves the view is at least as recent as the
	// moment it was sent. The write's result and its watch event arrive
	// in either order; both are kept until they meet.
	was := c.fresh
	for _, w := range c.writes {
		if w.Renew.Equal(c.ownRenew) && w.Sent.After(c.fresh) {
			c.fresh = w.Sent
		}
	}
	if !was.IsZero() {
		c.provenTime += c.proven(was, c.fresh)
	}
}

// proven is how much of (from, to] the API server is shown to have served
// this node, from and to being renewals seen back: the spans between
// consecutive renewals written in it, where no write failed between them
// and they are at most silent apart (a write may be slow, but a longer gap
// is an outage of this node's, a pause or the API server's).
func (c *Core) proven(from, to time.Time) time.Duration {
	var in []written
	for _, w := range c.writes {
		if w.Sent.After(from) && !w.Sent.After(to) {
			in = append(in, w)
		}
	}
	slices.SortFunc(in, func(a, b written) int { return a.Sent.Compare(b.Sent) })
	var d time.Duration
	for _, w := range in {
		if gap := w.Sent.Sub(from); gap <= c.t.silent() && !w.afterFailure {
			d += gap
		}
		from = w.Sent
	}
	return d
}

// expirePeers updates each peer's liveness by this node's clock.
func (c *Core) expirePeers(s *step) {
	for _, p := range c.peers {
		live := s.now.Sub(p.seenAt) < c.t.Lease
		if live != p.live {
			p.live = live
			p.liveSince = s.now
			s.full = true
		}
	}
}

// checkHealth moves between fresh and frozen. Healthy means both directions
// to the API work: this node's renewals are written and come back through
// its informers, recently enough. A node cut off, an API server down, or
// informers lagging after an outage make the view stale, and a stale node
// takes nothing over.
func (c *Core) checkHealth(s *step, synced bool) {
	now := s.now
	if !c.lastWrite.IsZero() && now.Sub(c.lastWrite) > c.t.Lease && c.awaySince.IsZero() {
		c.awaySince = c.lastWrite
	}
	healthy := synced && !c.fresh.IsZero() && now.Sub(c.fresh) <= c.t.freshFor() &&
		(c.lapsedAt.IsZero() || c.fresh.After(c.lapsedAt))
	switch {
	case healthy && c.frozen:
		if !c.awaySince.IsZero() {
			// Peers may have expired this node and taken its addresses:
			// where one that renewed since this node's last write claims
			// an address too, it keeps it. Not an older claim: the node
			// this one took the address from may claim it still, dead or
			// paused, and nobody would answer.
			for ip := range s.owned(c) {
				if c.claimedSince(ip, c.awaySince) {
					s.disown(c, ip)
					s.touch(ip)
					s.note(slog.LevelInfo, "leaving an address to the peer that took it over while this node was away", "ip", ip)
				}
			}
		}
		// Peers were unobservable too; give each that was live when the
		// view was last fresh a full lease duration to show it still is.
		// (Not "live when the freeze began": the freeze is noticed a
		// window after the outage began, when peers that renewed until
		// the outage may already look expired.) Not a peer expired here
		// that this node took an address from: alive, its next renewal
		// shows it; dead, its revived claim would win the address back
		// and nobody would answer.
		// Nor one revived before that has not renewed since, while this
		// node's view was fresh for long enough to show a renewal (a
		// watch that freezes and thaws the view in turn would otherwise
		// keep a dead peer live for good); a peer the API server was down
		// for, like this node, has had no such chance.
		owned := s.owned(c)
		for _, p := range c.peers {
			tookFrom := !p.live && p.claimsAny(owned)
			hadChance := p.revived && c.provenTime-p.revivedAt >= c.t.silent()
			if (c.freshBeforeFreeze.IsZero() || p.seenAt.Add(c.t.Lease).After(c.freshBeforeFreeze)) && !tookFrom && !hadChance {
				if !p.live {
					p.liveSince = now
				}
				if !p.revived {
					p.revived, p.revivedAt = true, c.provenTime
				}
				p.seenAt, p.live = now, true
			}
		}
		s.note(slog.LevelInfo, FreshLog)
		// The API server may last have been out of reach then: a write
		// failed unanswered, or this node lapsed (its watches may have been dropped).
		lost := c.writeFailedAt
		if c.lapsedAt.After(lost) {
			lost = c.lapsedAt
		}
		if c.refreshed.Before(lost) && lost.After(c.freshBeforeFreeze) {
			// Fresh says the Lease informer is current. The others
			// (Services, EndpointSlices, Nodes) may still be backing off
			// after the API server was out of reach, and would hide what
			// changed meanwhile: replace them all, unless they were
			// replaced since. Only after a failed write or a lapse since
			// the view was last fresh (the reflectors' backoff of an
			// older failure has long ended), not after writes that were
			// merely slow: an API server too loaded to return renewals in
			// time (a cold start's thousands of status writes) kept the
			// watches, and a relist of everything would load it further
			// into the next freeze.
			s.plan.RefreshView = true
			c.refreshed = now
			s.note(slog.LevelInfo, "replacing the informers after the freeze, so that none lags behind the Lease's")
		}
		clear(c.yielded)
		c.frozen, c.awaySince = false, time.Time{}
		c.lapsedAt = time.Time{}
		c.settleUntil = now.Add(c.t.Renew)
		s.full = true
	case !healthy && !c.frozen:
		s.note(slog.LevelWarn, "view of the cluster is stale (own Lease renewals not seen back); keeping current addresses, taking none over",
			"fresh_for", now.Sub(c.fresh).Round(time.Millisecond).String())
		c.enterFrozen(s)
	}
	// Writes work but the informers deliver nothing (reflectors back off
	// after an API outage): replace them rather than wait. Not while own
	// renewals keep coming back, late by up to lagLimit:
	// an API server too loaded to return them in time (a cold start's
	// thousands of status writes) would only get a relist of everything on
	// top (if writes failed too, the thaw still relists: see above).
	// Further behind, a relist is worth it.
	delivering := now.Sub(c.ownSeenAt) <= c.t.freshFor() && now.Sub(c.fresh) <= c.t.lagLimit()
	if c.frozen && synced && !c.lastWrite.IsZero() && now.Sub(c.lastWrite) < 2*c.t.Renew &&
		now.Sub(c.fresh) > c.t.freshFor() && !delivering && now.Sub(c.refreshed) > c.t.Lease {
		s.note(slog.LevelInfo, "own Lease renewals are not coming back through the informers in time; restarting them",
			"view_lag", now.Sub(c.fresh).Round(time.Millisecond).String())
		s.plan.RefreshView = true
		c.refreshed = now
	}
}

func (c *Core) enterFrozen(s *step) {
	if !c.frozen {
		c.frozenSince = s.now
		c.freshBeforeFreeze = c.fresh
	}
	c.frozen = true
	s.full = true
}

// conflict handles another MAC announcing an address this node answers for.
func (c *Core) conflict(s *step, cf Conflict) {
	if _, ours := s.owned(c)[cf.IP]; !ours {
		return
	}
	if c.frozen && cf.Sender == cf.MAC && c.peerMAC(cf.MAC) {
		// Cut off from the API, this node cannot know better than a peer
		// that took the address over: yield. Only to a peer: a foreign
		// host announcing the address (a forged ARP) proves nothing, and
		// yielding to it would let one frame silence every address while
		// the API is down; nor does a frame that claims a peer's MAC from
		// another Ethernet source.
		if !c.yielded[cf.IP] {
			c.yielded[cf.IP] = true
			s.touch(cf.IP)
			s.note(slog.LevelWarn, "yielding an address to the peer that announced it (this node is cut off from the API)",
				"ip", cf.IP, "mac", cf.MAC, "interface", cf.Interface)
		}
		return
	}
	k := conflictKey{cf.IP, cf.MAC}
	n := c.warnedMACs[cf.IP]
	if _, ok := c.warned[k]; ok || n > conflictMACs {
		return
	}
	c.warned[k] = s.now
	c.warnedMACs[cf.IP]++
	if n == conflictMACs {
		s.note(slog.LevelWarn, "more hosts announce an address this node answers for; no more of them are reported for a minute",
			"ip", cf.IP, "mac", cf.MAC, "interface", cf.Interface)
		return
	}
	var svcs []ipam.Key
	if a := c.addrs[cf.IP]; a != nil {
		svcs = slices.Clone(a.services)
	}
	s.plan.Conflicts = append(s.plan.Conflicts, ConflictReport{Conflict: cf, Services: svcs})
}

// peerMAC reports whether mac is one of a peer's links, as its Lease last
// said.
func (c *Core) peerMAC(mac string) bool {
	for _, macs := range c.peerMACs {
		if slices.Contains(macs, mac) {
			return true
		}
	}
	return false
}

// servingMACs are the MACs of the links this node would answer a pool's
// addresses on, sorted, once each: what a peer cut off from the API may
// yield to. Not every up link's: a node has one per pod (cni0, veths), and
// each pod started would rewrite the Lease. A MAC published before (prev)
// stays while its link is still there but unusable: a link that lost
// carrier still is this node's, and a peer cut off just then keeps the last
// list it saw, in which the MAC must not be missing when the link is back.
func servingMACs(cfg *config.Config, links []Link, prev []string) []string {
	if cfg == nil {
		return nil
	}
	names := map[string]bool{}
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		for _, r := range p.Addresses {
			for _, ip := range []netip.Addr{r.First, r.Last} {
				if name, ok := interfaceFor(cfg, p, ip, links); ok {
					names[name] = true
				}
			}
		}
	}
	var out []string
	for _, l := range links {
		if l.MAC != "" && (names[l.Name] || !l.Usable && slices.Contains(prev, l.MAC)) {
			out = append(out, l.MAC)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// forgetConflicts forgets the reports older than ConflictQuiet.
func (c *Core) forgetConflicts(now time.Time) {
	for k, at := range c.warned {
		if now.Sub(at) >= ConflictQuiet {
			delete(c.warned, k)
			if c.warnedMACs[k.ip]--; c.warnedMACs[k.ip] <= 0 {
				delete(c.warnedMACs, k.ip)
			}
		}
	}
}

// nodeList is every known node as placement sees it, this one included.
func (c *Core) nodeList() []Node {
	node := func(name string) Node {
		f := c.nodes[name]
		return Node{Name: name, Ready: f.ready, Excluded: f.excluded, Unselected: c.unselected[name]}
	}
	out := make([]Node, 0, len(c.peers)+1)
	for name, p := range c.peers {
		n := node(name)
		n.Live, n.Pools, n.Claims = p.live, p.pools, p.claims
		n.Leads, n.Stale = p.member.Leader, p.member.Stale
		out = append(out, n)
	}
	self := node(c.self)
	self.Live = !c.frozen
	self.Pools = c.ownPools
	self.Claims = c.claims
	self.Leads = c.leading
	return append(out, self)
}

// decideLeader settles this node's IPAM role (Claim): the allocator runs
// only with a fresh view, and not while settling, when a peer that led
// meanwhile may not have seen this node's claim yet.
func (c *Core) decideLeader(s *step, nodes []Node, settling, stale bool) {
	claim := Claim(Self{Name: c.self, Claims: c.leading, Frozen: c.frozen, Stale: stale, Settling: settling}, nodes)
	if claim != c.leading {
		c.leading = claim
		switch {
		case claim:
			s.note(slog.LevelInfo, "became the IPAM leader")
		case stale:
			s.note(slog.LevelWarn, "no longer the IPAM leader: the view of the cluster has been stale too long for peers to count on this node")
		case settling:
			s.note(slog.LevelInfo, "no longer the IPAM leader: a peer led while this node was away")
		default:
			s.note(slog.LevelInfo, "no longer the IPAM leader", "leader", Leader(nodes))
		}
	}
	s.plan.Lead = c.leading && !c.frozen && !settling
}

// place re-decides the addresses that changed, or all of them.
func (c *Core) place(s *step, nodes []Node, settling bool) {
	if s.full {
		for ip := range c.addrs {
			s.touch(ip)
		}
		for ip := range s.owned(c) {
			s.touch(ip)
		}
		for ip := range c.owners {
			s.touch(ip)
		}
	}
	s.plan.Redecided = len(s.dirty)
	for ip := range s.dirty {
		owner, offered := "", false
		if a, ok := c.addrs[ip]; ok {
			addr := c.address(ip, a)
			owner, offered = Owner(nodes, &addr), addr.OfferedTo == c.self
		}
		if old, ok := c.owners[ip]; ok && old != owner {
			if s.was == nil {
				s.was = map[netip.Addr]string{}
			}
			s.was[ip] = old
		}
		if old := c.owners[ip]; c.debug && old != owner {
			// For the chaos runs' timelines (log.level debug): where
			// this node places each address it decides. Only then: a
			// cold start changes thousands of owners.
			s.note(slog.LevelDebug, "placed an address", "ip", ip, "owner", owner, "was", old)
		}
		c.setOwner(ip, owner)
		// Settling holds back new addresses until the view has every
		// peer's claims; an address a live peer offers to this node, and
		// no longer answers for, is safe to take at once.
		iface, want := c.want(s, ip, owner, settling && !offered)
		_, have := s.owned(c)[ip]
		if c.debug && owner == c.self && !want && !c.frozen {
			_, usable := c.interfaceFor(ip)
			s.note(slog.LevelDebug, "placed here but not answering", "ip", ip, "settling", settling && !offered,
				"handing_over", ip == c.handover, "interface_usable", usable)
		}
		switch {
		case want && (!have || s.owned(c)[ip] != iface):
			if offered && !have {
				c.received[ip] = s.now
			}
			s.own(c, ip, iface)
		case !want && have:
			s.disown(c, ip)
		}
	}
}

// address builds placement's input for ip.
func (c *Core) address(ip netip.Addr, a *address) Address {
	out := Address{IP: ip, Pool: a.pool}
	if ip == c.handover {
		out.OfferedTo = c.handoverTo
	}
	offerer := ""
	for name, p := range c.peers {
		// Two peers offering one address (views that differ) would make
		// the choice follow map order: the first by name wins.
		if p.live && p.member.Handover == ip && (offerer == "" || name < offerer) {
			offerer, out.OfferedTo = name, p.member.HandoverTo
		}
	}
	for _, k := range a.services {
		svc := c.services[k]
		if svc.svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			out.Sharers = append(out.Sharers, Sharer{Local: true, Endpoints: svc.endpoints})
		} else {
			out.Sharers = append(out.Sharers, Sharer{})
		}
	}
	return out
}

func (c *Core) setOwner(ip netip.Addr, owner string) {
	if old, ok := c.owners[ip]; ok {
		if old == owner {
			return
		}
		c.count[old]--
		if c.count[old] == 0 {
			delete(c.count, old)
		}
	}
	if owner == "" {
		delete(c.owners, ip)
		return
	}
	c.owners[ip] = owner
	c.count[owner]++
}

// want says whether this node answers for ip after this step, and where.
func (c *Core) want(s *step, ip netip.Addr, owner string, settling bool) (string, bool) {
	_, have := s.owned(c)[ip]
	if c.frozen {
		// Keep what it has, take nothing: a stale view cannot tell. But
		// never an address whose Service is gone, nor one a live peer
		// claims (it took over while this node was away), nor one it has
		// no usable, allowed interface for any more (carrier lost, config
		// edited).
		if !have || c.yielded[ip] || c.addrs[ip] == nil || c.claimedByLivePeer(ip) {
			return "", false
		}
		return c.interfaceFor(ip)
	}
	if owner != c.self || settling && !have || ip == c.handover {
		return "", false
	}
	return c.interfaceFor(ip)
}

// interfaceFor picks the interface this node answers for ip on: the pool's
// interface if it names one, else the first allowed interface whose subnet
// contains ip. Never an unusable or disallowed one: a multi-NIC host must
// answer on one interface with one MAC.
func (c *Core) interfaceFor(ip netip.Addr) (string, bool) {
	if c.cfg == nil {
		return "", false
	}
	pool, ok := c.cfg.PoolFor(ip)
	if !ok {
		return "", false
	}
	return interfaceFor(c.cfg, pool, ip, c.links)
}

func interfaceFor(cfg *config.Config, pool *config.Pool, ip netip.Addr, links []Link) (string, bool) {
	for _, l := range links {
		if !l.Usable {
			continue
		}
		if pool.Interface != "" {
			if l.Name == pool.Interface {
				return l.Name, true
			}
			continue
		}
		if len(cfg.Interfaces) > 0 && !slices.Contains(cfg.Interfaces, l.Name) {
			continue
		}
		for _, p := range l.Prefixes {
			if p.Contains(ip) {
				return l.Name, true
			}
		}
	}
	return "", false
}

// servablePools names the pools this node has a usable interface for, for
// every address: a subnet that holds only part of a pool would make the node
// eligible for addresses it cannot answer.
func servablePools(cfg *config.Config, links []Link) map[string]bool {
	out := map[string]bool{}
	if cfg == nil {
		return out
	}
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		covered := len(p.Addresses) > 0
		for _, r := range p.Addresses {
			_, first := interfaceFor(cfg, p, r.First, links)
			_, last := interfaceFor(cfg, p, r.Last, links)
			covered = covered && first && last
		}
		if covered {
			out[p.Name] = true
		}
	}
	return out
}

// rebalance hands one address over when this node holds more than its fair
// share: to the node rendezvous prefers, gracefully (this node stops and
// drops its claim; the other takes it once it sees that), one at a time and
// at most one per renew interval.
func (c *Core) rebalance(s *step, nodes []Node) {
	if c.handover.IsValid() || s.now.Before(c.nextShed) {
		return
	}
	fair := c.fairShare(nodes)
	if fair == 0 || c.count[c.self] <= fair {
		return
	}
	// Looking costs a score per owned address and node: at most once per
	// renew interval, found or not.
	c.nextShed = s.now.Add(c.t.Renew)
	var best netip.Addr
	var target string
	room := func(node string) bool {
		p := c.peers[node]
		return c.count[node]+1 <= fair && p != nil && c.t.offerable(p, s.now)
	}
	for ip := range s.owned(c) {
		a, ok := c.addrs[ip]
		if _, recent := c.received[ip]; !ok || recent {
			continue
		}
		// Only an address this node answered before this step, and that
		// no peer claims any more: one it just took over is still in
		// transit (its last owner may claim it yet), and passing it on at
		// once would move it twice.
		if _, before := c.owned[ip]; !before || c.claimedByLivePeer(ip) {
			continue
		}
		addr := c.address(ip, a)
		to := HandoverTarget(nodes, &addr, c.self, room)
		if to == "" {
			continue
		}
		if !best.IsValid() || ip.Less(best) {
			best, target = ip, to
		}
	}
	if !best.IsValid() {
		return
	}
	c.handover, c.handoverTo, c.handoverAt = best, target, s.now
	s.disown(c, best)
	s.note(slog.LevelInfo, HandoverLog, "ip", best, "to", target,
		"held", c.count[c.self], "fair_share", fair)
}

// endHandover ends the hand-over in flight once a live peer claims the
// address. If its target stops renewing (killed, paused, cut off: as far
// as this node can prove, see stoppedRenewing; not merely expired here),
// its Lease goes, or it is no longer eligible (NotReady, relabelled, its
// endpoints moved) before it took the address, the offer is withdrawn and this
// node answers for the address again, claiming it for this step's
// decisions (the ordinary rule keeps an address with its claimant). A
// target that renews but has not taken it within a lease duration (its
// view differs) sees the offer withdrawn and the address placed by the
// ordinary rule, which every node agrees on. An offer the heartbeat could
// not write (unsent) is withdrawn at once, and this node answers again
// even with a stale view (cut off from the API a moment before it offered):
// no peer saw the offer, so each still counts this node as the address's
// claimant, as for the addresses it kept. Either way nothing is offered
// for a while, so that an address is not offered, left unanswered and
// offered again in turn. It runs before the node list is built.
func (c *Core) endHandover(s *step, unsent []Offer) {
	ip := c.handover
	if !ip.IsValid() {
		return
	}
	to := c.handoverTo
	a := c.addrs[ip]
	if a == nil { // its Service is gone
		c.handover, c.handoverTo = netip.Addr{}, ""
		s.touch(ip)
		return
	}
	if c.takenOver(ip, a) {
		c.handover, c.handoverTo = netip.Addr{}, ""
		s.touch(ip)
		return
	}
	target := c.peers[to]
	// Not "expired here": a node cut off from the API sees every peer
	// expire; only what it can prove counts.
	gone := target == nil || c.stoppedRenewing(target, s.now) || target.live && !c.eligible(to, ip, a)
	notSent := slices.Contains(unsent, Offer{ip, to})
	if !gone && !notSent && s.now.Sub(c.handoverAt) < c.t.Lease {
		return
	}
	c.handover, c.handoverTo = netip.Addr{}, ""
	s.touch(ip)
	c.nextShed = s.now.Add(handoverBackoff)
	iface, usable := c.interfaceFor(ip)
	why := "not taken within a lease duration"
	switch {
	case notSent:
		why = "never written (no connection to the API server, or refused by it)"
	case gone:
		why = "its target stopped renewing or can no longer take it"
	}
	// Unsent: answered again only while peers still count this node's
	// claims (a late report may follow a write that hung until its peers
	// expired it and one took the address).
	current := s.now.Sub(c.lastWrite) < c.t.window()
	if usable && (notSent && current && c.mayKeep(ip, a) || !notSent && gone && !c.frozen) {
		s.own(c, ip, iface)
		s.reclaim = ip
		s.note(slog.LevelWarn, WithdrawLog, "ip", ip, "to", to, "reason", why, "then", "this node answers for it again")
		return
	}
	s.note(slog.LevelWarn, WithdrawLog, "ip", ip, "to", to, "reason", why, "then", "placed anew")
}

// stoppedRenewing reports whether this node can tell that peer p stopped
// renewing: unseen for silent(), and a renewal of its own, sent after p's
// next two were due, has come back since. Without the second part a node
// cut off from the API would read its own deafness as p's silence.
func (c *Core) stoppedRenewing(p *peer, now time.Time) bool {
	return !c.t.offerable(p, now) && !c.fresh.Before(p.seenAt.Add(c.t.silent()))
}

// mayKeep reports whether this node may go on answering for ip as far as
// it can tell, its view's freshness aside: Ready, not excluded, serving
// the pool, an endpoint of every Local Service sharing it.
func (c *Core) mayKeep(ip netip.Addr, a *address) bool {
	self, _ := c.nodeNamed(c.self)
	self.Live = true
	addr := c.address(ip, a)
	return Eligible(&self, &addr)
}

// eligible reports whether node may answer for ip in this node's view.
func (c *Core) eligible(node string, ip netip.Addr, a *address) bool {
	n, ok := c.nodeNamed(node)
	addr := c.address(ip, a)
	return ok && Eligible(&n, &addr)
}

// nodeNamed is the named node of nodeList.
func (c *Core) nodeNamed(name string) (Node, bool) {
	for _, n := range c.nodeList() {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// fairShare is ⌈(1+ε) · addresses / nodes⌉ over the live nodes that can
// serve some pool.
func (c *Core) fairShare(nodes []Node) int {
	n := 0
	for i := range nodes {
		if nd := &nodes[i]; nd.Live && nd.Ready && !nd.Excluded && len(nd.Pools) > 0 {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return int(math.Ceil((1 + fairSlack) * float64(len(c.owners)) / float64(n)))
}

// PeerCanTakeOver reports whether every address this node answers for has
// a live peer, not stale, that is eligible for it: then a graceful stop
// hands over at once. Otherwise the node keeps its Lease, so that a restart
// resumes answering at once.
func (c *Core) PeerCanTakeOver() bool {
	nodes := c.nodeList()
	self := len(nodes) - 1
	nodes[self].Live = false
	anyPeer := false
	for _, n := range nodes[:self] {
		anyPeer = anyPeer || n.Live && !n.Stale
	}
	if !anyPeer {
		return false
	}
	for ip := range c.owned {
		a, ok := c.addrs[ip]
		if !ok {
			continue
		}
		addr := c.address(ip, a)
		addr.OfferedTo = ""
		if Owner(nodes, &addr) == "" {
			return false
		}
	}
	return true
}

// finish commits the owned set and fills in the rest of the plan.
func (c *Core) finish(s *step, stale bool) {
	now := s.now
	if s.next != nil && !maps.Equal(s.next, c.owned) {
		s.plan.PublishMayWait = true
		for ip, iface := range s.next {
			if c.owned[ip] == iface {
				continue
			}
			if c.contested(ip) {
				s.plan.PublishMayWait = false
			}
			reason, why := c.takeoverReason(s, ip)
			_, moved := c.owned[ip]
			if moved {
				why = "its interface changed"
			}
			s.note(slog.LevelInfo, "answering for an address", "ip", ip, "interface", iface, "reason", why)
			var svcs []ipam.Key
			if a := c.addrs[ip]; a != nil {
				svcs = slices.Clone(a.services)
			}
			s.plan.Announced = append(s.plan.Announced, Announced{IP: ip, Interface: iface, Services: svcs, Reason: reason, Moved: moved})
		}
		for ip := range c.owned {
			if _, ok := s.next[ip]; !ok {
				s.note(slog.LevelInfo, "no longer answering for an address", "ip", ip, "reason", c.dropReason(ip))
			}
		}
		c.owned = s.next
		c.claims = make(map[netip.Addr]bool, len(c.owned))
		for ip := range c.owned {
			c.claims[ip] = true
		}
		s.plan.Desired, s.plan.DesiredChanged = c.owned, true
	} else if !c.started {
		s.plan.Desired, s.plan.DesiredChanged = map[netip.Addr]string{}, true
	}
	c.answerUntil = now.Add(c.t.window())
	s.plan.AnswerUntil = c.answerUntil

	pub := Member{Pools: c.publish.Pools, Claims: c.publish.Claims, Leader: c.leading, Stale: stale,
		Handover: c.handover, HandoverTo: c.handoverTo, MACs: c.macs}
	if s.full || !c.started {
		pub.Pools = slices.Sorted(maps.Keys(c.ownPools))
	}
	if s.plan.DesiredChanged {
		pub.Claims = slices.SortedFunc(maps.Keys(c.owned), func(a, b netip.Addr) int { return a.Compare(b) })
	}
	s.plan.PublishChanged = !c.started || !slices.Equal(pub.Pools, c.publish.Pools) || !slices.Equal(pub.Claims, c.publish.Claims) ||
		pub.Leader != c.publish.Leader || pub.Stale != c.publish.Stale ||
		pub.Handover != c.publish.Handover || pub.HandoverTo != c.publish.HandoverTo || !slices.Equal(pub.MACs, c.publish.MACs)
	c.publish = pub
	s.plan.Publish = pub
	s.plan.Healthy = !c.frozen
	s.plan.Answering = len(c.owned)
	s.plan.Wake = c.wake(now)
}

// wake is how long until the core must step again by itself: a peer
// expiring, the own view going stale, settling or a hand-over ending, and
// at least every renew interval and well within window, so that a step
// that is merely a little late never looks like a pause.
func (c *Core) wake(now time.Time) time.Duration {
	wake := min(c.t.Renew, c.t.window()/2)
	for _, p := range c.peers {
		if p.live {
			wake = min(wake, p.seenAt.Add(c.t.Lease).Sub(now))
		}
	}
	if !c.frozen {
		wake = min(wake, c.fresh.Add(c.t.freshFor()).Sub(now))
	}
	if now.Before(c.settleUntil) {
		wake = min(wake, c.settleUntil.Sub(now))
	}
	if c.handover.IsValid() {
		wake = min(wake, c.handoverAt.Add(c.t.Lease).Sub(now))
		// When the target turns silent; after that, the own renewal that
		// proves it (stoppedRenewing) wakes the node by coming back.
		if p := c.peers[c.handoverTo]; p != nil && p.seenAt.Add(c.t.silent()).After(now) {
			wake = min(wake, p.seenAt.Add(c.t.silent()).Sub(now))
		}
	}
	return max(wake, time.Millisecond)
}

// contested reports whether a peer claims ip or offers it to this node.
func (c *Core) contested(ip netip.Addr) bool {
	for _, p := range c.peers {
		if p.claims[ip] || (p.member.Handover == ip && p.member.HandoverTo == c.self) {
			return true
		}
	}
	return false
}

// takeoverReason says why this node takes ip over: what became of the
// node it had placed ip with, else of a peer that still claims it; as a
// code for the metrics and a sentence for the log.
func (c *Core) takeoverReason(s *step, ip netip.Addr) (TakeoverReason, string) {
	prev := s.was[ip]
	if prev == "" || prev == c.self {
		for name, p := range c.peers {
			if p.claims[ip] {
				prev = name
			}
		}
	}
	if prev == "" || prev == c.self {
		if !c.started { // only restored claims are taken in the first step
			return TakeoverRestart, "this node claimed it before it restarted"
		}
		if _, ok := c.paused[ip]; ok {
			return TakeoverResumed, "this node answered for it before it was paused"
		}
		return TakeoverNew, "new address, or nobody claims it"
	}
	p, known := c.peers[prev]
	f := c.nodes[prev]
	switch {
	case !known:
		return TakeoverPeerStopped, fmt.Sprintf("node %s's Lease was deleted (a graceful stop)", prev)
	case !p.live:
		return TakeoverPeerExpired, fmt.Sprintf("node %s stopped renewing its Lease", prev)
	case !f.ready:
		return TakeoverPeerNotReady, fmt.Sprintf("node %s is not Ready", prev)
	case f.excluded:
		return TakeoverPeerExcluded, fmt.Sprintf("node %s is excluded from load balancers", prev)
	case p.member.Handover == ip && p.member.HandoverTo == c.self:
		return TakeoverHandover, fmt.Sprintf("node %s handed it over to balance the load", prev)
	case c.addrs[ip] != nil && c.unselected[prev][c.addrs[ip].pool]:
		return TakeoverPeerUnselected, fmt.Sprintf("node %s no longer matches the nodeSelector of pool %s", prev, c.addrs[ip].pool)
	}
	return TakeoverPeerIneligible, fmt.Sprintf("node %s is no longer eligible (endpoints, pools or claims changed)", prev)
}

// dropReason says why this node stops answering for ip.
func (c *Core) dropReason(ip netip.Addr) string {
	switch {
	case !c.lapsedAt.IsZero():
		return "this node did not run for too long"
	case c.yielded[ip]:
		return "yielded to a peer while cut off from the API"
	case ip == c.handover:
		return "handed over to balance the load"
	case c.owners[ip] != "" && c.owners[ip] != c.self:
		if a := c.addrs[ip]; a != nil && c.unselected[c.self][a.pool] {
			return "this node no longer matches the nodeSelector of pool " + a.pool + "; node " + c.owners[ip] + " answers for it now"
		}
		return "node " + c.owners[ip] + " answers for it now"
	case c.addrs[ip] == nil:
		return "its Service is gone or no longer served"
	}
	return "this node cannot serve it (interface, pool or eligibility)"
}

func set[T comparable](items []T) map[T]bool {
	m := make(map[T]bool, len(items))
	for _, x := range items {
		m[x] = true
	}
	return m
}
