package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/ipam"
	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/daemon/placement"
	"github.com/l2lb/l2lb/netio"
)

// excludeLabel keeps a node from answering for any LoadBalancer address.
const excludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Event reasons on Services.
const (
	reasonAnnouncing = "Announcing"
	reasonConflict   = "IPConflict"
)

// desiredSetter is the part of netio's Announcer the placer drives.
type desiredSetter interface {
	SetDesired(map[netip.Addr]string)
}

var _ desiredSetter = (*netio.Announcer)(nil)

// placer runs on every node: from its view of the cluster it decides, with
// package placement, which addresses this node answers for, tells netio, and
// publishes the claims in the member Lease.
type placer struct {
	node      string
	version   string
	config    func() *config.Config
	view      *kube.View
	changes   <-chan struct{} // the view's, subscribed for the placer
	heartbeat *kube.Heartbeat
	announcer desiredSetter
	recorder  *kube.Recorder
	log       *slog.Logger
	links     func() ([]hostLink, error)
	conflicts chan netio.Conflict
	// decided, if set, hears after every decision how many addresses this
	// node answers for (readiness, watchdog and status for systemd).
	decided func(answering int)
	// lead, if set, hears after every decision whether this node is to
	// write Service status (it leads IPAM and its view is fresh).
	lead func(bool)

	// Owned by run's goroutine.
	seen    map[string]seenLease      // peers' renewals, by this node's clock
	owned   map[netip.Addr]string     // address -> interface answered on
	owners  map[netip.Addr]string     // the last decision, for log reasons
	yielded map[netip.Addr]bool       // given up to a peer while frozen
	warned  map[conflictKey]time.Time // conflicts reported, for deduplication
	frozen  bool
	// frozenSince: when the view last turned stale (or the daemon started).
	frozenSince time.Time
	leading     bool // this node claims the IPAM leader role
	// fresh is the latest local time at which this node wrote a renewal of
	// its own Lease that has since come back through the informers: the
	// view is known to be at least that recent.
	fresh     time.Time
	refreshed time.Time // when the informers were last replaced (or started)
	// settleUntil: after turning fresh (at start, or after an outage) this
	// node takes nothing new until then, one renew interval later, so that
	// it has seen the Leases of the peers that started or came back with
	// it. Otherwise the first of them to turn fresh would take addresses
	// that a peer already claims or is about to win by score, and hand
	// them over again moments later.
	settleUntil time.Time
}

type seenLease struct {
	renew time.Time // the Lease's renewTime as last seen
	at    time.Time // when this node saw it change
}

type conflictKey struct {
	ip  netip.Addr
	mac string
}

func newPlacer(p placer) *placer {
	p.seen = map[string]seenLease{}
	p.owned = map[netip.Addr]string{}
	p.owners = map[netip.Addr]string{}
	p.yielded = map[netip.Addr]bool{}
	p.warned = map[conflictKey]time.Time{}
	p.frozen = true
	if p.conflicts == nil {
		p.conflicts = make(chan netio.Conflict, 64)
	}
	return &p
}

// onConflict is netio's callback; it must not block.
func (p *placer) onConflict(c netio.Conflict) {
	select {
	case p.conflicts <- c:
	default:
	}
}

// run decides until ctx is done; the caller then stops netio and releases the
// Lease.
func (p *placer) run(ctx context.Context, configChanged <-chan struct{}) {
	if !p.view.WaitSynced(ctx) {
		return
	}
	p.restoreClaims()
	p.refreshed = time.Now()
	p.frozenSince = p.refreshed
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.changes:
		case <-configChanged:
		case <-timer.C:
		case c := <-p.conflicts:
			p.conflict(c)
		}
		next := p.reconcile(time.Now())
		if p.decided != nil {
			p.decided(len(p.owned))
		}
		timer.Reset(next)
	}
}

// restoreClaims starts from the claims of this node's Lease as left by a
// previous run, minus every address (or the IPAM role) another node claims
// meanwhile: a quick
// restart keeps answering, and a node that restarts after a peer took over
// does not take its addresses back (a second handover).
func (p *placer) restoreClaims() {
	claimedElsewhere := map[netip.Addr]bool{}
	var mine []netip.Addr
	var led, ledElsewhere bool
	for _, l := range p.view.Leases() {
		node, m, ok := kube.ParseMember(l)
		switch {
		case !ok:
		case node == p.node:
			mine, led = m.Claims, m.Leader
		default:
			for _, ip := range m.Claims {
				claimedElsewhere[ip] = true
			}
			ledElsewhere = ledElsewhere || m.Leader
		}
	}
	// The IPAM role likewise, so that a restart does not hand it over.
	p.leading = led && !ledElsewhere
	cfg := p.config()
	links, _ := p.links()
	for _, ip := range mine {
		pool, ok := cfg.PoolFor(ip)
		if !ok || claimedElsewhere[ip] {
			continue
		}
		if iface, ok := interfaceFor(cfg, pool, ip, links); ok {
			p.owned[ip] = iface
		}
	}
	if len(p.owned) > 0 {
		p.log.Info("answering again for the addresses claimed before the restart", "ips", len(p.owned))
		p.announcer.SetDesired(maps.Clone(p.owned))
	}
}

// conflict handles another MAC announcing an address this node answers for.
func (p *placer) conflict(c netio.Conflict) {
	if p.frozen {
		// Cut off from the API, this node cannot know better than a peer
		// that took the address over: yield.
		if !p.yielded[c.IP] {
			p.log.Warn("yielding an address to the peer that announced it (this node is cut off from the API)",
				"ip", c.IP, "mac", c.MAC, "interface", c.Interface)
			p.yielded[c.IP] = true
		}
		return
	}
	k := conflictKey{c.IP, c.MAC.String()}
	if t, ok := p.warned[k]; ok && time.Since(t) < time.Minute {
		return
	}
	p.warned[k] = time.Now()
	p.log.Warn("another host announces an address this node answers for", "ip", c.IP, "mac", c.MAC, "interface", c.Interface)
	for _, svc := range p.servicesOf(c.IP) {
		p.recorder.Eventf(svc, corev1.EventTypeWarning, reasonConflict, "Another host (%s) announces %s on %s of node %s", c.MAC, c.IP, c.Interface, p.node)
	}
}

// reconcile decides once and returns how long until it must decide again
// even if nothing changes (a peer's Lease expiring, the own view going stale).
func (p *placer) reconcile(now time.Time) time.Duration {
	cfg := p.config()
	co := cfg.Coordination
	renewDeadline := co.LeaseDuration * 2 / 3
	p.observeOwnLease()
	// Healthy when both directions to the API work: this node's renewals
	// are written, and come back through its informers. A node cut off, an
	// API server down, or informers that have not caught up after an outage
	// all make the view stale, and a stale node takes nothing over.
	healthy := p.view.Synced() && !p.fresh.IsZero() && now.Sub(p.fresh) <= renewDeadline
	if healthy && p.frozen {
		// Peers were unobservable too; give each a full lease duration to
		// show it is alive before taking anything over.
		for k, s := range p.seen {
			s.at = now
			p.seen[k] = s
		}
		p.log.Info("view of the cluster is fresh; placing addresses")
		clear(p.yielded)
		p.settleUntil = now.Add(co.RenewInterval)
	} else if !healthy && !p.frozen {
		p.frozenSince = now
		p.log.Warn("view of the cluster is stale (own Lease renewals not seen back); keeping current addresses, taking none over",
			"fresh_at", p.fresh.Format(time.RFC3339Nano))
	}
	p.frozen = !healthy
	// Writes work but the informers lag (reflectors back off after an API
	// outage): replace them rather than wait.
	if !healthy && now.Sub(p.heartbeat.LastWritten()) < co.RenewInterval*2 && now.Sub(p.fresh) > renewDeadline && now.Sub(p.refreshed) > co.LeaseDuration {
		p.log.Info("own Lease renewals are not coming back through the informers; restarting them")
		p.view.Refresh()
		p.refreshed = now
	}

	links, err := p.links()
	if err != nil {
		p.log.Warn("cannot list interfaces", "err", err)
	}
	pools := servablePools(cfg, links)
	nodes, wake := p.nodes(cfg, now, pools)
	addrs, svcs := p.addresses(cfg)
	owners := placement.Place(nodes, addrs)
	settling := now.Before(p.settleUntil)
	// Stale for the IPAM role: frozen for a lease duration, or frozen with
	// its own Lease unwritten for that long since its last write, so that
	// peers may have expired it and chosen another leader already. (A
	// restarted node that peers expired finds their claim in restoreClaims.)
	lastWrite := p.heartbeat.LastWritten()
	lapsed := !lastWrite.IsZero() && now.Sub(lastWrite) > co.LeaseDuration
	stale := p.frozen && (now.Sub(p.frozenSince) >= co.LeaseDuration || lapsed)
	p.decideLeader(nodes, settling, stale)

	desired := map[netip.Addr]string{}
	if p.frozen {
		for ip, iface := range p.owned {
			if !p.yielded[ip] {
				desired[ip] = iface
			}
		}
	} else {
		for _, a := range addrs {
			if _, have := p.owned[a.IP]; owners[a.IP] != p.node || settling && !have {
				continue
			}
			pool, _ := cfg.Pool(a.Pool)
			if iface, ok := interfaceFor(cfg, pool, a.IP, links); ok {
				desired[a.IP] = iface
			}
		}
	}
	p.apply(desired, owners, nodes, svcs)
	p.heartbeat.Set(kube.Member{
		Pools:   pools,
		Claims:  slices.Collect(maps.Keys(desired)),
		Digest:  cfg.Digest(),
		Version: p.version,
		Leader:  p.leading,
		Stale:   stale,
	})
	p.owners = owners

	if healthy {
		wake = min(wake, p.fresh.Add(renewDeadline).Sub(now))
	}
	if settling {
		wake = min(wake, p.settleUntil.Sub(now))
	}
	return max(min(wake, co.RenewInterval), time.Millisecond)
}

// decideLeader settles this node's IPAM role (placement.Claim) and tells
// the allocator whether to run: only with a fresh view, and not while
// settling, when a peer that led meanwhile may not have seen this node's
// claim yet.
func (p *placer) decideLeader(nodes []placement.Node, settling, stale bool) {
	claim := placement.Claim(placement.Self{Name: p.node, Claims: p.leading, Frozen: p.frozen, Stale: stale, Settling: settling}, nodes)
	if claim != p.leading {
		p.leading = claim
		switch {
		case claim:
			p.log.Info("became the IPAM leader")
		case stale:
			p.log.Warn("no longer the IPAM leader: the view of the cluster has been stale too long for peers to count on this node")
		case settling:
			p.log.Info("no longer the IPAM leader: a peer led while this node was away")
		default:
			p.log.Info("no longer the IPAM leader", "leader", placement.Leader(nodes))
		}
	}
	if p.lead != nil {
		p.lead(p.leading && !p.frozen && !settling)
	}
}

// observeOwnLease advances fresh when the informers show a renewal of this
// node's Lease that the heartbeat wrote.
func (p *placer) observeOwnLease() {
	for _, l := range p.view.Leases() {
		if node, _, ok := kube.ParseMember(l); !ok || node != p.node || l.Spec.RenewTime == nil {
			continue
		}
		if at, ok := p.heartbeat.WrittenAt(l.Spec.RenewTime.Time); ok && at.After(p.fresh) {
			p.fresh = at
		}
	}
}

// nodes builds every node's placement input and the time until the next
// peer would expire.
func (p *placer) nodes(cfg *config.Config, now time.Time, ownPools []string) ([]placement.Node, time.Duration) {
	objs := map[string]*corev1.Node{}
	for _, n := range p.view.Nodes() {
		objs[n.Name] = n
	}
	node := func(name string) placement.Node {
		n := placement.Node{Name: name}
		if o, ok := objs[name]; ok {
			_, n.Excluded = o.Labels[excludeLabel]
			for _, c := range o.Status.Conditions {
				n.Ready = n.Ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
			}
		}
		return n
	}

	wake := cfg.Coordination.LeaseDuration
	seen := map[string]seenLease{}
	var out []placement.Node
	for _, l := range p.view.Leases() {
		name, m, ok := kube.ParseMember(l)
		if !ok || name == p.node {
			continue
		}
		var renew time.Time
		if l.Spec.RenewTime != nil {
			renew = l.Spec.RenewTime.Time
		}
		s, known := p.seen[name]
		if !known || !s.renew.Equal(renew) {
			s = seenLease{renew: renew, at: now}
		}
		seen[name] = s
		n := node(name)
		left := s.at.Add(cfg.Coordination.LeaseDuration).Sub(now)
		n.Live = left > 0
		if n.Live {
			wake = min(wake, left)
		}
		n.Pools = set(m.Pools)
		n.Claims = set(m.Claims)
		n.Leads, n.Stale = m.Leader, m.Stale
		out = append(out, n)
	}
	p.seen = seen

	self := node(p.node)
	self.Live = !p.frozen
	self.Pools = set(ownPools)
	self.Claims = set(slices.Collect(maps.Keys(p.owned)))
	self.Leads = p.leading
	return append(out, self), wake
}

// addresses collects the addresses of the Services l2lb serves, each with its
// pool and sharers. Addresses outside every pool (or outside the pools the
// Service's namespace may use) are never announced, whoever wrote them.
func (p *placer) addresses(cfg *config.Config) ([]placement.Address, map[netip.Addr][]*corev1.Service) {
	byIP := map[netip.Addr]*placement.Address{}
	svcs := map[netip.Addr][]*corev1.Service{}
	for _, svc := range p.view.Services() {
		if !ipam.Serves(cfg, svc) {
			continue
		}
		for _, ip := range ipam.IngressIPs(svc) {
			pool, ok := cfg.PoolFor(ip)
			if !ok || !pool.AllowsNamespace(svc.Namespace) {
				continue
			}
			a, ok := byIP[ip]
			if !ok {
				a = &placement.Address{IP: ip, Pool: pool.Name}
				byIP[ip] = a
			}
			a.Sharers = append(a.Sharers, p.sharer(svc))
			svcs[ip] = append(svcs[ip], svc)
		}
	}
	out := make([]placement.Address, 0, len(byIP))
	for _, a := range byIP {
		out = append(out, *a)
	}
	return out, svcs
}

func (p *placer) sharer(svc *corev1.Service) placement.Sharer {
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		return placement.Sharer{}
	}
	s := placement.Sharer{Local: true, Endpoints: map[string]bool{}}
	for _, slice := range p.view.EndpointSlices(svc.Namespace, svc.Name) {
		for _, ep := range slice.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				s.Endpoints[*ep.NodeName] = true
			}
		}
	}
	return s
}

func (p *placer) servicesOf(ip netip.Addr) []*corev1.Service {
	_, svcs := p.addresses(p.config())
	return svcs[ip]
}

// apply hands the new set to netio and explains every change once.
func (p *placer) apply(desired, owners map[netip.Addr]string, nodes []placement.Node, svcs map[netip.Addr][]*corev1.Service) {
	if maps.Equal(desired, p.owned) {
		return
	}
	for ip, iface := range desired {
		if p.owned[ip] == iface {
			continue
		}
		p.log.Info("answering for an address", "ip", ip, "interface", iface, "reason", takeoverReason(p.owners[ip], p.node, nodes))
		for _, svc := range svcs[ip] {
			p.recorder.Eventf(svc, corev1.EventTypeNormal, reasonAnnouncing, "%s announced by node %s on %s", ip, p.node, iface)
		}
	}
	for ip := range p.owned {
		if _, ok := desired[ip]; ok {
			continue
		}
		why := "its Service is gone or no longer served"
		switch {
		case p.yielded[ip]:
			why = "yielded to a peer while cut off from the API"
		case owners[ip] != "":
			why = "node " + owners[ip] + " answers for it now"
		}
		p.log.Info("no longer answering for an address", "ip", ip, "reason", why)
	}
	p.owned = desired
	p.announcer.SetDesired(maps.Clone(desired))
}

// takeoverReason says why this node takes an address over from prev.
func takeoverReason(prev, self string, nodes []placement.Node) string {
	if prev == "" || prev == self {
		return "new address, or this node just started"
	}
	for _, n := range nodes {
		if n.Name != prev {
			continue
		}
		switch {
		case !n.Live:
			return fmt.Sprintf("node %s stopped renewing its Lease", prev)
		case !n.Ready:
			return fmt.Sprintf("node %s is not Ready", prev)
		case n.Excluded:
			return fmt.Sprintf("node %s is excluded from load balancers", prev)
		}
		return fmt.Sprintf("node %s is no longer eligible (endpoints, pools or claims changed)", prev)
	}
	return fmt.Sprintf("node %s left (its Lease was deleted)", prev)
}

func set[T comparable](items []T) map[T]bool {
	m := make(map[T]bool, len(items))
	for _, x := range items {
		m[x] = true
	}
	return m
}
