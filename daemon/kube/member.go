package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations of a member Lease: what its node can serve and claims.
const (
	AnnotationPools   = "l2lb.dev/pools"
	AnnotationClaims  = "l2lb.dev/claims"
	AnnotationDigest  = "l2lb.dev/config-digest"
	AnnotationVersion = "l2lb.dev/version"
	// AnnotationLeader is "true" on the Lease of the node that claims the
	// IPAM leader role (writing Service status).
	AnnotationLeader = "l2lb.dev/ipam-leader"
	// AnnotationStale is "true" while the node's own view of the cluster
	// has been stale for a lease duration: it must not lead IPAM.
	AnnotationStale = "l2lb.dev/stale"
	// AnnotationHandover is "<ip> <node>" while the node hands an address
	// it no longer answers for over to that node, to balance the load.
	AnnotationHandover = "l2lb.dev/handover"
	// AnnotationMACs are the MACs of the links the node answers its
	// pools on, comma separated: a peer cut off from the API yields an
	// address only to a host that announces it from one of these.
	AnnotationMACs = "l2lb.dev/macs"
)

// MemberLeasePrefix starts the name of every member Lease: l2lbd-<node>.
const MemberLeasePrefix = "l2lbd-"

// Member is what a node publishes in its member Lease.
type Member struct {
	Pools   []string
	Claims  []netip.Addr
	Digest  string
	Version string
	// Leader: the node claims the IPAM leader role.
	Leader bool
	// Stale: the node's view has been stale for a lease duration.
	Stale bool
	// Handover, if valid, is offered to node HandoverTo.
	Handover   netip.Addr
	HandoverTo string
	// MACs of the links the node answers its pools on, as net.HardwareAddr.String writes
	// them.
	MACs []string
}

// ParseMember reads a member Lease. ok is false for Leases that are not
// member Leases (others', or one whose holder is not the node it is named
// after); malformed entries are skipped.
func ParseMember(l *coordinationv1.Lease) (node string, m Member, ok bool) {
	node, isMember := strings.CutPrefix(l.Name, MemberLeasePrefix)
	if !isMember || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != node {
		return "", Member{}, false
	}
	a := l.Annotations
	for _, p := range strings.Split(a[AnnotationPools], ",") {
		if p = strings.TrimSpace(p); p != "" {
			m.Pools = append(m.Pools, p)
		}
	}
	for _, s := range strings.Split(a[AnnotationClaims], ",") {
		if ip, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			m.Claims = append(m.Claims, ip)
		}
	}
	for _, s := range strings.Split(a[AnnotationMACs], ",") {
		if mac, err := net.ParseMAC(strings.TrimSpace(s)); err == nil {
			m.MACs = append(m.MACs, mac.String())
		}
	}
	m.Digest, m.Version = a[AnnotationDigest], a[AnnotationVersion]
	m.Leader = a[AnnotationLeader] == "true"
	m.Stale = a[AnnotationStale] == "true"
	if ip, to, ok := strings.Cut(a[AnnotationHandover], " "); ok {
		if addr, err := netip.ParseAddr(ip); err == nil && to != "" {
			m.Handover, m.HandoverTo = addr, to
		}
	}
	return node, m, true
}

func (m Member) annotations() map[string]string {
	claims := make([]string, len(m.Claims))
	for i, ip := range m.Claims {
		claims[i] = ip.String()
	}
	slices.Sort(claims)
	pools := slices.Sorted(slices.Values(m.Pools))
	a := map[string]string{
		AnnotationPools:   strings.Join(pools, ","),
		AnnotationClaims:  strings.Join(claims, ","),
		AnnotationDigest:  m.Digest,
		AnnotationVersion: m.Version,
	}
	if m.Leader {
		a[AnnotationLeader] = "true"
	}
	if m.Stale {
		a[AnnotationStale] = "true"
	}
	if m.Handover.IsValid() {
		a[AnnotationHandover] = m.Handover.String() + " " + m.HandoverTo
	}
	if len(m.MACs) > 0 {
		a[AnnotationMACs] = strings.Join(slices.Sorted(slices.Values(m.MACs)), ",")
	}
	return a
}

// Heartbeat keeps this node's member Lease renewed every renew interval,
// carrying the latest Member given to Set. That is its only steady-state
// write; a change of Member is written at once, except one that only adds
// claims the caller says may wait (addresses no peer claims or offered):
// that waits until a quarter of the renew interval after the previous
// write. A burst of new addresses (a cold start with thousands of
// Services) would otherwise rewrite the growing Lease back to back,
// loading the API server and every peer's watch with it. A claim that may
// not wait makes the next write immediate, even if later Sets may wait.
//
// The claims and the leader role in a Member hold only until the time given
// to ValidUntil: a renewal after that, say by a process resuming from a
// pause before its decision loop has run, says the node is alive and claims
// nothing.
type Heartbeat struct {
	client    *Client
	namespace string
	node      string
	renew     time.Duration
	duration  time.Duration
	log       *slog.Logger
	// onWrite hears of every successful renewal: the renewTime the API
	// server stored and when the write was sent, by this node's clock.
	onWrite func(renew, sent time.Time)
	// onUnsent hears of a hand-over offer no write carried to the API
	// server (see Run); no write carries it afterwards.
	onUnsent func(ip netip.Addr, to string)
	// onFailed hears of every write that failed: when it was sent, and
	// whether it had no answer from the API server or a server error
	// (mayBeOutOfReach).
	onFailed func(sent time.Time, unanswered bool)

	member     atomic.Pointer[Member]
	urgent     atomic.Bool  // a Set since the last write may not wait
	base       time.Time    // monotonic origin of validUntil
	validUntil atomic.Int64 // nanoseconds after base; 0: no deadline yet
	// Set by Finish before Run is stopped: until when the last write may
	// take (nanoseconds after base; 0: its own timeout), and whether to
	// skip it (the Lease is about to be deleted).
	finishBy  atomic.Int64
	skipFlush atomic.Bool
	kick      chan struct{}
	// Owned by Run: the Lease and Member last written, and when.
	lease         *coordinationv1.Lease
	written       map[string]string
	writtenMember Member
	lastWrite     time.Time
	// The hand-over offer of the Member being written: whether a write
	// since it was set may have reached the API server, and the offer
	// given up because none could.
	offer        offer
	offerMaySent bool
	unsent       offer
	due          bool // a renewal was skipped while an offer was given up
}

// offer is a hand-over offer: ip to node to.
type offer struct {
	ip netip.Addr
	to string
}

func (m Member) offer() offer { return offer{m.Handover, m.HandoverTo} }

// HeartbeatHooks are what a heartbeat tells its owner, from Run's
// goroutine; either may be nil.
type HeartbeatHooks struct {
	// Written follows every successful write.
	Written func(renew, sent time.Time)
	// Unsent follows the write that gave a hand-over offer of ip to node
	// to up (see Run).
	Unsent func(ip netip.Addr, to string)
	// Failed follows every write that failed: when it was sent, and
	// whether it had no answer from the API server or a server error.
	Failed func(sent time.Time, unanswered bool)
}

// NewHeartbeat returns a heartbeat for node's Lease; it writes nothing until
// Run and the first Set.
func NewHeartbeat(client *Client, namespace, node string, renew, duration time.Duration, hooks HeartbeatHooks, log *slog.Logger) *Heartbeat {
	return &Heartbeat{client: client, namespace: namespace, node: node, renew: renew, duration: duration,
		onWrite: hooks.Written, onUnsent: hooks.Unsent, onFailed: hooks.Failed, log: log, base: time.Now(), kick: make(chan struct{}, 1)}
}

// Set publishes m: immediately if it changed, unless it only adds claims
// and mayWait, then within a quarter of the renew interval.
func (h *Heartbeat) Set(m Member, mayWait bool) {
	if !mayWait {
		h.urgent.Store(true)
	}
	h.member.Store(&m)
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// ValidUntil sets until when the claims of the Member are valid.
func (h *Heartbeat) ValidUntil(t time.Time) {
	h.validUntil.Store(max(int64(t.Sub(h.base)), 1))
}

// current is the Member to write now: without claims or the leader role
// once they are no longer valid. offer is the owner's, even when m leaves
// it out.
func (h *Heartbeat) current() (m Member, o offer, ok bool) {
	raw := h.member.Load()
	if raw == nil {
		return Member{}, offer{}, false
	}
	return h.validAt(*raw, time.Now()), raw.offer(), true
}

// validAt is m as it may be written at t: without claims, the leader role
// or a hand-over once ValidUntil has passed.
func (h *Heartbeat) validAt(m Member, t time.Time) Member {
	if until := h.validUntil.Load(); until != 0 && int64(t.Sub(h.base)) > until {
		m.Claims, m.Leader, m.Handover, m.HandoverTo = nil, false, netip.Addr{}, ""
	}
	return m
}

// Run renews until ctx is done. Failures are logged once per kind and retried
// at the next tick; they never stop it.
//
// A hand-over offer whose first writes all failed before reaching the API
// server (no connection, or refused by it) is given up: no peer can have
// seen it, so the offering node may answer for the address again, which
// Unsent tells it. From then on no write carries that offer, not even one
// Set before the owner heard: a write in flight must not land an offer its
// node has taken back.
func (h *Heartbeat) Run(ctx context.Context) error {
	tick := time.NewTicker(h.renew)
	defer tick.Stop()
	var lastErr string
	var gathering <-chan time.Time // armed while added claims wait
	for {
		select {
		case <-ctx.Done():
			h.flush()
			return nil
		case <-tick.C:
		case <-gathering:
		case <-h.kick:
			m, _, ok := h.current()
			if ok && maps.Equal(m.annotations(), h.written) && !h.due {
				continue // nothing new to say before the next tick
			}
			if wait := time.Until(h.lastWrite.Add(h.renew / 4)); ok && wait > 0 && !h.urgent.Load() && onlyAddsClaims(h.writtenMember, m) {
				if gathering == nil {
					gathering = time.After(wait)
				}
				continue
			}
		}
		// Taken before the Member is read: a Set that may not wait,
		// arriving after this, makes the next write immediate.
		urgent := h.urgent.Swap(false)
		// The owner's offer o, even while m leaves it out: an offer given
		// up stays given up across a lapse of the claims, and one set
		// before a write that may have been stored (with it or without)
		// is never given up.
		m, o, ok := h.current()
		if !ok {
			if urgent {
				h.urgent.Store(true)
			}
			continue // nothing to publish yet
		}
		if o != h.unsent {
			h.unsent = offer{} // taken back (or another one)
		} else if o.ip.IsValid() {
			if urgent {
				h.urgent.Store(true)
			}
			h.due = true // the owner's next Set renews, even if unchanged
			continue     // given up: the owner's next Set takes it back
		}
		if o != h.offer {
			h.offer, h.offerMaySent = o, false
		}
		gathering = nil
		h.due = false
		// While the offer may not have been stored, one attempt per
		// write: client-go's own retries (after a 5xx with Retry-After)
		// would hide an earlier attempt that was stored behind the last
		// one's error.
		sent := time.Now()
		maySent, err := h.write(ctx, m, sent, !o.ip.IsValid() || h.offerMaySent)
		if o.ip.IsValid() && !h.offerMaySent {
			if maySent {
				h.offerMaySent = true
			} else {
				h.unsent = o
				h.log.Warn("cannot write a hand-over offer; taking it back", append([]any{"ip", o.ip, "to", o.to}, ErrAttrs(err)...)...)
				if h.onUnsent != nil {
					h.onUnsent(o.ip, o.to)
				}
			}
		}
		if err != nil {
			if h.onFailed != nil {
				h.onFailed(sent, mayBeOutOfReach(err))
			}
			if urgent {
				h.urgent.Store(true)
			}
			if err.Error() != lastErr {
				h.log.Warn("cannot renew member Lease", ErrAttrs(err)...)
				lastErr = err.Error()
			}
			continue
		}
		if lastErr != "" {
			h.log.Info("member Lease renewed again")
			lastErr = ""
		}
	}
}

// write renews the Lease with m as of sent (now), creating it if needed,
// letting client-go retry the request if retry. maySent: the write may
// have reached the API server and taken effect (it did if err is nil).
func (h *Heartbeat) write(ctx context.Context, m Member, sent time.Time, retry bool) (maySent bool, err error) {
	// A loaded API server may take longer than the fastest lease duration
	// allowed; a late renewal still counts once it is seen back.
	ctx, cancel := context.WithTimeout(ctx, max(h.duration, time.Second))
	defer cancel()
	leases := h.client.Coordination
	name := MemberLeasePrefix + h.node
	now := metav1.NewMicroTime(sent)
	// Checked again as late as possible: the process may have been
	// stopped since Run read the Member.
	m = h.validAt(m, sent)
	ann := m.annotations()
	if h.lease == nil {
		l := &coordinationv1.Lease{}
		err := leases.Get().Namespace(h.namespace).Resource("leases").Name(name).Do(ctx).Into(l)
		switch {
		case apierrors.IsNotFound(err):
			l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.namespace}}
		case err != nil:
			return false, fmt.Errorf("get member Lease: %w", err)
		}
		h.lease = l
	}
	l := h.lease.DeepCopy()
	l.Annotations = ann
	l.Spec.HolderIdentity = &h.node
	secs := int32((h.duration + time.Second - 1) / time.Second)
	l.Spec.LeaseDurationSeconds = &secs
	l.Spec.RenewTime = &now
	if l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &now
	}
	req := leases.Put().Name(name)
	if l.ResourceVersion == "" {
		req = leases.Post()
	}
	if !retry {
		req = req.MaxRetries(0)
	}
	out := &coordinationv1.Lease{}
	if err := req.Namespace(h.namespace).Resource("leases").Body(l).Do(ctx).Into(out); err != nil {
		if !apierrors.IsTooManyRequests(err) {
			h.lease = nil // re-read before the next attempt (conflict, deleted)
		}
		return !notWritten(err), fmt.Errorf("write member Lease: %w", err)
	}
	h.lease, h.written, h.writtenMember, h.lastWrite = out, ann, m, sent
	if out.Spec.RenewTime != nil && h.onWrite != nil {
		h.onWrite(out.Spec.RenewTime.Time, sent)
	}
	return true, nil
}

// notWritten reports whether a write that failed with err certainly took
// no effect: it never left this node (no connection to the API server), or
// the API server refused it. A timeout, a reset or a server error may
// follow a write that was stored.
func notWritten(err error) bool {
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return apierrors.IsConflict(err) || apierrors.IsNotFound(err) || apierrors.IsForbidden(err) ||
		apierrors.IsUnauthorized(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) ||
		apierrors.IsTooManyRequests(err)
}

// mayBeOutOfReach reports whether a write that failed with err says the
// API server may be out of reach (and the informers' reflectors backing
// off): no answer (no connection, a timeout, a reset) or a server error. An
// answer in the 4xx range says it is there and serving: a conflict, or a
// 429 from a loaded one, whose watches keep working.
func mayBeOutOfReach(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		return code == 0 || code >= 500
	}
	return true
}

// flush writes what was Set and not yet written (claims held back, or a
// change that came with the stop) when Run is stopped: a lone node keeps
// its Lease across a restart, and its successor restores the claims from
// it.
func (h *Heartbeat) flush() {
	m, _, ok := h.current()
	if o := m.offer(); o.ip.IsValid() && o == h.unsent {
		// Given up, and not yet taken back: no peer saw it, so the
		// address is still this node's, for a successor to restore,
		// while peers count its claims (as the core's rule for taking it
		// back says; the heartbeat writes nothing meanwhile).
		m.Handover, m.HandoverTo = netip.Addr{}, ""
		if time.Since(h.lastWrite) < h.duration-h.renew {
			m.Claims = append(slices.Clone(m.Claims), o.ip)
		}
	}
	if h.skipFlush.Load() || !ok || h.written == nil || maps.Equal(m.annotations(), h.written) {
		return
	}
	deadline := time.Now().Add(max(h.duration, time.Second))
	if by := h.finishBy.Load(); by != 0 {
		deadline = h.base.Add(time.Duration(by))
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if _, err := h.write(ctx, m, time.Now(), true); err != nil {
		h.log.Warn("cannot write the last claims to the member Lease", ErrAttrs(err)...)
	}
}

// onlyAddsClaims reports whether next differs from written only by claims
// that written did not have.
func onlyAddsClaims(written, next Member) bool {
	if len(next.Claims) <= len(written.Claims) || !slices.Equal(written.Pools, next.Pools) ||
		written.Digest != next.Digest || written.Version != next.Version || written.Leader != next.Leader ||
		written.Stale != next.Stale || written.Handover != next.Handover || written.HandoverTo != next.HandoverTo ||
		!slices.Equal(written.MACs, next.MACs) {
		return false
	}
	claimed := make(map[netip.Addr]bool, len(next.Claims))
	for _, ip := range next.Claims {
		claimed[ip] = true
	}
	for _, ip := range written.Claims {
		if !claimed[ip] {
			return false
		}
	}
	return true
}

// Finish prepares the stop: the last write of the claims, when Run is
// stopped, ends by the deadline, and is skipped when the caller deletes
// the Lease next (Release). Call it before cancelling Run's context.
func (h *Heartbeat) Finish(by time.Time, release bool) {
	h.finishBy.Store(max(int64(by.Sub(h.base)), 1))
	h.skipFlush.Store(release)
}

// Release deletes the member Lease, so that peers take this node's addresses
// over at once instead of waiting for it to expire.
func (h *Heartbeat) Release(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.duration)
	defer cancel()
	err := h.client.Coordination.Delete().Namespace(h.namespace).Resource("leases").Name(MemberLeasePrefix + h.node).Do(ctx).Error()
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete member Lease: %w", err)
	}
	return nil
}
