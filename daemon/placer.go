package daemon

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/ipam"
	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/daemon/placement"
	"github.com/l2lb/l2lb/netio"
)

// excludeLabel keeps a node from answering for any LoadBalancer address.
const excludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// A step costs time in proportion to the addresses the node owns (the
// desired set for netio, the claims to publish). During a burst of changes
// (thousands of Services allocated after a cold start) a step per change
// would cost that for each; a step at most every gap takes what arrived
// meanwhile together. In a burst (a change came within minStepGap of the
// previous step's end, or while it ran) the gap is stepShare times that
// step's cost, between minStepGap and maxStepGap, so that decisions take
// about a tenth of a core (more only when one step costs more than
// maxStepGap/stepShare); otherwise it is minStepGap, and a change
// after a quiet moment, or a timer the core set (a peer expiring), is
// decided at once.
const (
	minStepGap = 10 * time.Millisecond
	maxStepGap = 100 * time.Millisecond
	stepShare  = 10
)

// stepGap is the least time before the next step after one that cost cost.
// Never more than a quarter of window, how long a decision is good for: the
// next must come well within it.
func stepGap(cost, window time.Duration, burst bool) time.Duration {
	if !burst {
		return minStepGap
	}
	return max(minStepGap, min(maxStepGap, window/4, stepShare*cost))
}

// Event reasons on Services.
const (
	reasonAnnouncing = "Announcing"
	reasonConflict   = "IPConflict"
)

// dataPlane is the part of netio's Announcer the placer drives.
type dataPlane interface {
	SetDesired(map[netip.Addr]string)
	AnswerUntil(time.Time)
	Links() ([]netio.Link, bool)
}

var _ dataPlane = (*netio.Announcer)(nil)

// placer runs on every node. It observes (the view's changes, its own
// renewals, the links, conflicts, the config), lets the pure decision core
// (placement.Core) decide, and applies the plan: netio's desired set and
// answer deadline, the member Lease, the IPAM role, logs and Events.
type placer struct {
	node      string
	version   string
	config    func() *config.Config
	view      *kube.View
	changes   *kube.Changes
	heartbeat *kube.Heartbeat
	netio     dataPlane
	recorder  *kube.Recorder
	log       *slog.Logger
	core      *placement.Core
	// decided, if set, hears after every decision how many addresses this
	// node answers for and whether its view is frozen (readiness, watchdog
	// and status for systemd).
	decided func(answering int, frozen bool)
	// lead, if set, hears after every decision whether this node is to
	// write Service status (it leads IPAM and its view is fresh).
	lead func(bool)
	// stats counts what the plans say, for the metrics.
	stats *placeStats

	// Filled from other goroutines; the loop drains them.
	wake         chan struct{}
	conflicts    *conflictSet
	writes       *writeLog
	linksChanged *atomic.Bool

	// Owned by run's goroutine.
	cfg      *config.Config
	links    []placement.Link
	members  map[string]memberSeen // member Leases the core knows, by node
	services map[string]bool       // Services the core knows, by namespace/name
	nodes    map[string]bool       // Node objects the core knows
	digest   string                // of the config last published
	handover bool                  // the last plan: a live peer could take over
}

// conflictSet holds the conflicts netio reports until the loop takes them,
// once per (address, MAC, interface): a peer taking over thousands of
// addresses announces each several times, faster than the loop steps, and
// a frozen node yields only on hearing it. Bounded all the same.
type conflictSet struct {
	mu      sync.Mutex
	pending map[placement.Conflict]bool
}

const maxPendingConflicts = 1 << 16

func (s *conflictSet) add(c placement.Conflict) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[c] || len(s.pending) >= maxPendingConflicts {
		return false
	}
	s.pending[c] = true
	return true
}

func (s *conflictSet) take() []placement.Conflict {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	out := slices.Collect(maps.Keys(s.pending))
	s.pending = map[placement.Conflict]bool{}
	return out
}

// writeLog holds what the heartbeat reports (renewals, failed writes,
// offers it gave up) until the loop takes them.
type writeLog struct {
	mu     sync.Mutex
	writes []placement.Write
	failed []placement.FailedWrite
	unsent []placement.Offer
}

// placeStats counts what the plans say. The loop writes it; scrapes read
// it.
type placeStats struct {
	takeovers [placement.TakeoverReasonCount]atomic.Uint64 // by reason
	handovers atomic.Uint64
	offered   netip.Addr // the hand-over in flight, owned by the loop
	offeredTo string
	// duration is the time the core took per decision.
	duration prometheus.Histogram
}

func newPlaceStats() *placeStats {
	return &placeStats{duration: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "l2lbd_decision_duration_seconds",
		Help: "Time the placement core took per decision.",
		// From a renewal's few microseconds to a full re-decision of
		// thousands of addresses.
		Buckets: prometheus.ExponentialBuckets(50e-6, 4, 9),
	})}
}

// count takes a plan's takeovers and any new hand-over offer.
func (st *placeStats) count(plan placement.Plan) {
	for _, a := range plan.Announced {
		if !a.Moved && a.Reason < placement.TakeoverReasonCount {
			st.takeovers[a.Reason].Add(1)
		}
	}
	h, to := plan.Publish.Handover, plan.Publish.HandoverTo
	if h.IsValid() && (h != st.offered || to != st.offeredTo) {
		st.handovers.Add(1)
	}
	st.offered, st.offeredTo = h, to
}

func newPlacer(p placer) *placer {
	if p.stats == nil {
		p.stats = newPlaceStats()
	}
	p.writes = &writeLog{}
	p.linksChanged = new(atomic.Bool)
	p.wake = make(chan struct{}, 1)
	p.conflicts = &conflictSet{pending: map[placement.Conflict]bool{}}
	p.members = map[string]memberSeen{}
	p.services = map[string]bool{}
	p.nodes = map[string]bool{}
	return &p
}

func (p *placer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// memberSeen is a member Lease's annotations as last parsed, and what they
// said: a renewal that changes nothing else is not parsed again.
type memberSeen struct {
	Annotations map[string]string
	member      placement.Member
}

// member reads node's member Lease, reusing the last parse while its
// annotations are unchanged (a node's claims can be thousands).
func (p *placer) member(node string, l *coordinationv1.Lease) (placement.Member, bool) {
	if prev, ok := p.members[node]; ok && maps.Equal(prev.Annotations, l.Annotations) &&
		l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == node {
		return prev.member, true
	}
	_, m, ok := kube.ParseMember(l)
	if !ok {
		return placement.Member{}, false
	}
	pm := placement.Member{Pools: m.Pools, Claims: m.Claims, Leader: m.Leader, Stale: m.Stale,
		Handover: m.Handover, HandoverTo: m.HandoverTo, MACs: m.MACs}
	p.members[node] = memberSeen{Annotations: l.Annotations, member: pm}
	return pm, true
}

// onWrite is the heartbeat's callback.
func (p *placer) onWrite(renew, sent time.Time) {
	w := p.writes
	w.mu.Lock()
	w.writes = append(w.writes, placement.Write{Renew: renew, Sent: sent})
	if len(w.writes) > 16 {
		w.writes = w.writes[1:]
	}
	w.mu.Unlock()
	p.poke()
}

// onFailed is the heartbeat's callback for a write that failed.
func (p *placer) onFailed(sent time.Time, unanswered bool) {
	w := p.writes
	w.mu.Lock()
	w.failed = append(w.failed, placement.FailedWrite{Sent: sent, Unanswered: unanswered})
	w.mu.Unlock()
	p.poke()
}

// onUnsent is the heartbeat's callback for an offer it gave up.
func (p *placer) onUnsent(ip netip.Addr, to string) {
	w := p.writes
	w.mu.Lock()
	w.unsent = append(w.unsent, placement.Offer{IP: ip, To: to})
	w.mu.Unlock()
	p.poke()
}

// onConflict is netio's callback; it must not block.
func (p *placer) onConflict(c netio.Conflict) {
	if p.conflicts.add(placement.Conflict{IP: c.IP, MAC: c.MAC.String(), Sender: c.Sender.String(), Interface: c.Interface}) {
		p.poke()
	}
}

// onLinks is netio's callback when interfaces change.
func (p *placer) onLinks() {
	p.linksChanged.Store(true)
	p.poke()
}

// run decides until ctx is done; the caller then stops netio and releases the
// Lease.
func (p *placer) run(ctx context.Context, configChanged <-chan struct{}) {
	if !p.view.WaitSynced(ctx) || !p.waitLinks(ctx) {
		return
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last, ended time.Time
	var cost time.Duration
	for {
		timed := false
		select {
		case <-ctx.Done():
			return
		case <-p.changes.C:
		case <-configChanged:
		case <-p.wake:
		case <-timer.C:
			timed = true
		}
		// A burst: this change came right after the previous step ended
		// (or while it ran).
		burst := !timed && time.Since(ended) < minStepGap
		if wait := time.Until(last.Add(stepGap(cost, p.core.Window(), burst))); wait > 0 && !timed {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		o := p.observe(last)
		began := time.Now()
		plan := p.core.Step(o)
		p.stats.duration.Observe(time.Since(began).Seconds())
		p.apply(plan)
		ended = time.Now()
		cost = ended.Sub(last)
		timer.Reset(plan.Wake)
	}
}

// waitLinks waits, bounded, until netio has listed the interfaces: the
// first decision restores claims onto them.
func (p *placer) waitLinks(ctx context.Context) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := p.netio.Links(); ok || time.Now().After(deadline) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// observe gathers what changed since the previous step.
func (p *placer) observe(now time.Time) placement.Observation {
	o := placement.Observation{Now: now, Synced: p.view.Synced()}
	if cfg := p.config(); cfg != p.cfg {
		// A reload that changed nothing but comments costs no decision.
		if p.cfg == nil || cfg.Digest() != p.cfg.Digest() {
			o.Config = cfg
		}
		p.cfg = cfg
	}
	if p.linksChanged.Swap(false) || p.links == nil {
		if links := p.currentLinks(); !slices.EqualFunc(links, p.links, sameLink) || p.links == nil {
			p.links, o.Links, o.NewLinks = links, links, true
		}
	}
	d := p.changes.Take()
	if d.All {
		d.Services, d.Nodes, d.Leases = map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, s := range p.view.Services() {
			d.Services[s.Namespace+"/"+s.Name] = true
		}
		for _, n := range p.view.Nodes() {
			d.Nodes[n.Name] = true
		}
		for _, l := range p.view.Leases() {
			d.Leases[l.Name] = true
		}
		// And what the core knows: objects deleted while the informers
		// were replaced are gone from the new ones' lists.
		for node := range p.members {
			d.Leases[kube.MemberLeasePrefix+node] = true
		}
		for key := range p.services {
			d.Services[key] = true
		}
		for name := range p.nodes {
			d.Nodes[name] = true
		}
	}
	for key := range d.Services {
		u := p.service(key)
		if u.Service == nil {
			delete(p.services, key)
		} else {
			p.services[key] = true
		}
		o.Services = append(o.Services, u)
	}
	for name := range d.Nodes {
		u := p.nodeUpdate(name)
		if u.Deleted {
			delete(p.nodes, name)
		} else {
			p.nodes[name] = true
		}
		o.Nodes = append(o.Nodes, u)
	}
	for name := range d.Leases {
		node, isMember := strings.CutPrefix(name, kube.MemberLeasePrefix)
		if !isMember {
			continue
		}
		_, known := p.members[node]
		l, ok := p.view.Lease(name)
		var m placement.Member
		if ok {
			m, ok = p.member(node, l)
		}
		switch {
		case ok:
			u := placement.LeaseUpdate{Node: node, Member: m}
			if l.Spec.RenewTime != nil {
				u.Renew = l.Spec.RenewTime.Time
			}
			o.Leases = append(o.Leases, u)
		case known:
			o.LeasesGone = append(o.LeasesGone, node)
			delete(p.members, node)
		}
	}
	p.writes.mu.Lock()
	o.Writes, p.writes.writes = p.writes.writes, nil
	o.Failed, p.writes.failed = p.writes.failed, nil
	o.Unsent, p.writes.unsent = p.writes.unsent, nil
	p.writes.mu.Unlock()
	o.Conflicts = p.conflicts.take()
	return o
}

func (p *placer) currentLinks() []placement.Link {
	links, _ := p.netio.Links()
	out := make([]placement.Link, 0, len(links))
	for _, l := range links {
		pl := placement.Link{Name: l.Name, Usable: l.Usable, MAC: l.MAC}
		if l.Usable {
			// An unusable link's addresses never matter (kube-ipvs0
			// holds every ClusterIP): their churn must not cost a
			// decision.
			pl.Prefixes = l.Prefixes
		}
		out = append(out, pl)
	}
	return out
}

func sameLink(a, b placement.Link) bool {
	return a.Name == b.Name && a.Usable == b.Usable && a.MAC == b.MAC && slices.Equal(a.Prefixes, b.Prefixes)
}

// service reads one Service and the nodes with a ready endpoint of it.
func (p *placer) service(key string) placement.ServiceUpdate {
	ns, name, _ := strings.Cut(key, "/")
	u := placement.ServiceUpdate{Key: ipam.Key{Namespace: ns, Name: name}}
	svc, ok := p.view.Service(key)
	if !ok {
		return u
	}
	u.Service = svc
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		u.Endpoints = readyNodes(p.view.EndpointSlices(ns, name))
	}
	return u
}

func readyNodes(slices []*discoveryv1.EndpointSlice) map[string]bool {
	out := map[string]bool{}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				out[*ep.NodeName] = true
			}
		}
	}
	return out
}

func (p *placer) nodeUpdate(name string) placement.NodeUpdate {
	n, ok := p.view.Node(name)
	if !ok {
		return placement.NodeUpdate{Name: name, Deleted: true}
	}
	u := placement.NodeUpdate{Name: name, Labels: n.Labels}
	_, u.Excluded = n.Labels[excludeLabel]
	for _, c := range n.Status.Conditions {
		u.Ready = u.Ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	}
	return u
}

// apply carries out a plan.
func (p *placer) apply(plan placement.Plan) {
	p.stats.count(plan)
	// The new set and claims before the new deadline: an old set or old
	// claims (from before a pause) must never be answered or written under
	// a deadline extended by this step.
	if plan.DesiredChanged {
		p.netio.SetDesired(plan.Desired)
	}
	if digest := p.cfg.Digest(); plan.PublishChanged || digest != p.digest {
		m := plan.Publish
		p.heartbeat.Set(kube.Member{Pools: m.Pools, Claims: m.Claims, Leader: m.Leader, Stale: m.Stale,
			Handover: m.Handover, HandoverTo: m.HandoverTo, MACs: m.MACs, Digest: digest, Version: p.version}, plan.PublishMayWait)
		p.digest = digest
	}
	p.netio.AnswerUntil(plan.AnswerUntil)
	p.heartbeat.ValidUntil(plan.AnswerUntil)
	if plan.RefreshView {
		p.view.Refresh()
	}
	for _, n := range plan.Notes {
		p.log.Log(context.Background(), n.Level, n.Msg, n.Attrs...)
	}
	for _, a := range plan.Announced {
		for _, k := range a.Services {
			if svc, ok := p.view.Service(k.String()); ok {
				p.recorder.Eventf(svc, corev1.EventTypeNormal, reasonAnnouncing, "%s announced by node %s on %s", a.IP, p.node, a.Interface)
			}
		}
	}
	for _, c := range plan.Conflicts {
		p.log.Warn(placement.ConflictLog, "ip", c.IP, "mac", c.MAC, "interface", c.Interface)
		for _, k := range c.Services {
			if svc, ok := p.view.Service(k.String()); ok {
				p.recorder.Eventf(svc, corev1.EventTypeWarning, reasonConflict, "Another host (%s) announces %s on %s of node %s", c.MAC, c.IP, c.Interface, p.node)
			}
		}
	}
	if p.lead != nil {
		p.lead(plan.Lead)
	}
	if p.decided != nil {
		p.decided(plan.Answering, !plan.Healthy)
	}
}

// peerCanTakeOver reports, once run has returned, whether live peers could
// take this node's addresses over.
func (p *placer) peerCanTakeOver() bool { return p.core.PeerCanTakeOver() }
