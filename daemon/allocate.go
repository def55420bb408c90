package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/ipam"
	"github.com/l2lb/l2lb/daemon/kube"
)

// Event reasons on Services.
const (
	reasonAllocated   = "IPAllocated"
	reasonFailed      = "AllocationFailed"
	reasonReallocated = "IPReallocated"
	reasonReleased    = "IPReleased"
)

// allocator is the IPAM leader's loop: it applies ipam's decisions to the
// Service status and explains them with Events.
type allocator struct {
	client   *kube.Client
	view     *kube.View
	changes  <-chan struct{} // the view's, subscribed for the allocator
	config   func() *config.Config
	recorder *kube.Recorder
	log      *slog.Logger
	// reported is the last failure reported per Service, so a Service that
	// stays unallocatable gets one Event, not one per resync.
	reported map[ipam.Key]string
	// use is the latest decision's pool use, for metrics.
	use atomic.Pointer[poolUse]
	// pending holds the statuses this leader wrote that its informer has not
	// shown yet. Until it does, the write counts as the Service's status:
	// deciding from the stale object would hand its address to another.
	pending map[ipam.Key]pendingWrite
}

type pendingWrite struct {
	ips []netip.Addr
	at  time.Time
}

// pendingTimeout forgets a write the informer never showed (the Service
// changed again, or was deleted and re-created meanwhile).
const pendingTimeout = 30 * time.Second

// ipamRole runs the allocator while this node is the IPAM leader with a
// fresh view. set is called from the placer's goroutine only.
type ipamRole struct {
	ctx           context.Context // the daemon's
	alloc         *allocator
	configChanged <-chan struct{}
	leading       func(bool) // hears when the allocator starts and stops (status, metrics)

	stop context.CancelFunc // of the current run; nil when not leading
	done chan struct{}      // closed when the latest run has returned
}

func newIPAMRole(ctx context.Context, alloc *allocator, configChanged <-chan struct{}, leading func(bool)) *ipamRole {
	done := make(chan struct{})
	close(done)
	return &ipamRole{ctx: ctx, alloc: alloc, configChanged: configChanged, leading: leading, done: done}
}

func (r *ipamRole) set(lead bool) {
	switch {
	case lead && r.stop == nil:
		ctx, stop := context.WithCancel(r.ctx)
		prev, done := r.done, make(chan struct{})
		r.stop, r.done = stop, done
		go func() {
			defer close(done)
			// One run at a time: the previous one may still be cancelling
			// its writes.
			<-prev
			if ctx.Err() != nil {
				return // stopped again meanwhile
			}
			r.leading(true)
			defer r.leading(false)
			r.alloc.run(ctx, r.configChanged)
		}()
	case !lead && r.stop != nil:
		r.stop()
		r.stop = nil
	}
}

// wait stops leading and waits until the allocator has returned.
func (r *ipamRole) wait() {
	r.set(false)
	<-r.done
}

// run reconciles on every change of the view or the config until ctx is done
// (leadership lost or shutdown).
func (a *allocator) run(ctx context.Context, configChanged <-chan struct{}) {
	// Kept across runs: a freeze pauses the allocator, and must not make it
	// report every failure again or forget its writes in flight.
	if a.reported == nil {
		a.reported = map[ipam.Key]string{}
		a.pending = map[ipam.Key]pendingWrite{}
	}
	if !a.view.WaitSynced(ctx) {
		return
	}
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.changes:
		case <-configChanged:
		case <-retry.C:
		}
		if failed := a.reconcile(ctx); failed > 0 {
			// Writes that failed (conflicts, API trouble) are retried after
			// the informer caught up, if no change wakes us first.
			retry.Reset(time.Second)
		}
	}
}

// StatusWriters bounds the status writes in flight. After a cold start the
// leader writes thousands at once, and they should go as fast as the API
// server takes them: a write spends most of its time waiting for the server
// (admission, etcd, the watchers), so throughput grows with the writes in
// flight until the server runs out of CPU. In BenchmarkColdStart5000, where
// two cores run the API server, etcd and three daemons, 16 writers took 41 s,
// 32 took 27 s and 64 took 21 to 34 s (median 25), the machine's CPU then
// being the limit.
// The server protects itself beyond that (API Priority and Fairness queues,
// then answers 429, which client-go retries); this stays well below the few
// hundred requests in flight it grants the daemons' priority level.
const StatusWriters = 64

// statusWrite is one Service whose status must change.
type statusWrite struct {
	svc  *corev1.Service
	key  ipam.Key
	have []netip.Addr
	want []netip.Addr
	err  error
}

// reconcile makes every Service's status match ipam's decision and returns
// how many writes failed.
func (a *allocator) reconcile(ctx context.Context) int {
	if !a.view.Synced() {
		return 0 // never allocate from a partial view: it would hand out taken addresses
	}
	cfg := a.config()
	if len(cfg.Pools) == 0 {
		// Placement never makes a node without pools the leader, but a
		// reload to no pools reaches the allocator before the next
		// decision drops the role; until then every address would look
		// foreign and be taken away.
		return 0
	}
	var snapshot []ipam.Service
	var writes []statusWrite
	byKey := map[ipam.Key]*corev1.Service{}
	now := time.Now()
	for _, svc := range a.view.Services() {
		key := ipam.Key{Namespace: svc.Namespace, Name: svc.Name}
		if p, ok := a.pending[key]; ok && (slices.Equal(p.ips, ipam.IngressIPs(svc)) || now.Sub(p.at) > pendingTimeout) {
			delete(a.pending, key) // the informer caught up
		}
		if ipam.Serves(cfg, svc) {
			s := ipam.FromService(svc)
			if p, ok := a.pending[key]; ok {
				s.Current = p.ips
			}
			snapshot = append(snapshot, s)
			byKey[key] = svc
			continue
		}
		// An unclassed Service l2lb no longer serves (serveUnclassed turned
		// off) gives its addresses back. A Service of another class is
		// another implementation's, whatever its status says.
		if _, writing := a.pending[key]; writing {
			continue
		}
		if ours := ipam.IngressIPs(svc); svc.Spec.LoadBalancerClass == nil && len(ours) > 0 && allInPools(cfg, ours) {
			writes = append(writes, statusWrite{svc: svc, key: key, have: ours})
		}
	}
	res := ipam.Allocate(cfg.Pools, snapshot)
	a.use.Store(useOf(cfg, res))
	for _, s := range snapshot {
		if want := res.Assigned[s.Key]; !slices.Equal(want, s.Current) {
			writes = append(writes, statusWrite{svc: byKey[s.Key], key: s.Key, have: s.Current, want: want})
		}
	}

	// Failures first: they are decided already, and after a cold start the
	// Events of thousands of allocations would crowd them out of the
	// recorder's queue.
	for _, s := range snapshot {
		if why, ok := res.Failed[s.Key]; ok {
			if a.reported[s.Key] != why.Message {
				a.reported[s.Key] = why.Message
				a.log.Warn("cannot allocate", "service", s.Key, "reason", why.Code, "why", why.Message)
				a.recorder.Event(byKey[s.Key], corev1.EventTypeWarning, reasonFailed, why.Message)
			}
		} else {
			delete(a.reported, s.Key)
		}
	}

	sem := make(chan struct{}, StatusWriters)
	var wg sync.WaitGroup
	for i := range writes {
		w := &writes[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			w.err = ctx.Err() // leadership lost: write nothing more
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			w.err = kube.SetIngress(ctx, a.client, w.svc, w.want)
		})
	}
	wg.Wait()

	failed := 0
	for _, w := range writes {
		if w.err == nil {
			a.pending[w.key] = pendingWrite{ips: w.want, at: now}
		}
		switch {
		case w.err != nil:
			if ctx.Err() == nil { // else cancelled, not failed: say nothing
				a.log.Warn("cannot write Service status", append([]any{"service", w.key}, kube.ErrAttrs(w.err)...)...)
			}
			failed++
		case byKey[w.key] == nil:
			a.log.Info("released addresses of a Service l2lb no longer serves", "service", w.key, "ips", joinIPs(w.have))
			a.recorder.Eventf(w.svc, corev1.EventTypeNormal, reasonReleased, "Released %s: l2lb no longer serves this Service", joinIPs(w.have))
		default:
			a.announceChange(w.svc, w.key, w.want, res.Moved[w.key])
		}
	}
	for k := range a.reported {
		if _, ok := byKey[k]; !ok {
			delete(a.reported, k) // deleted or no longer served
		}
	}
	for k := range a.pending {
		if _, ok := byKey[k]; !ok && now.Sub(a.pending[k].at) > pendingTimeout {
			delete(a.pending, k)
		}
	}
	return failed
}

// announceChange explains a status change with one Event and one log line.
func (a *allocator) announceChange(svc *corev1.Service, key ipam.Key, want []netip.Addr, moved []ipam.Move) {
	if len(moved) > 0 {
		var parts []string
		for _, m := range moved {
			to := "nothing (no address available)"
			if m.New.IsValid() {
				to = m.New.String()
			}
			parts = append(parts, fmt.Sprintf("%s -> %s", m.Old, to))
		}
		msg := fmt.Sprintf("Re-allocated %s: the old address is no longer allowed (pools edited, or another Service holds it)", strings.Join(parts, ", "))
		a.log.Warn("re-allocated a Service's address", "service", key, "moves", strings.Join(parts, ", "))
		a.recorder.Event(svc, corev1.EventTypeWarning, reasonReallocated, msg)
		return
	}
	if len(want) > 0 {
		a.log.Info("allocated", "service", key, "ips", joinIPs(want))
		a.recorder.Eventf(svc, corev1.EventTypeNormal, reasonAllocated, "Assigned %s", joinIPs(want))
	}
}

// poolUse is what one decision gives out: addresses per pool, and the
// Services that get none they need.
type poolUse struct {
	used    map[string]int
	pending int
}

func useOf(cfg *config.Config, res ipam.Result) *poolUse {
	u := &poolUse{used: map[string]int{}, pending: len(res.Failed)}
	seen := map[netip.Addr]bool{} // shared addresses count once
	for _, ips := range res.Assigned {
		for _, ip := range ips {
			if p, ok := cfg.PoolFor(ip); ok && !seen[ip] {
				seen[ip] = true
				u.used[p.Name]++
			}
		}
	}
	return u
}

func allInPools(cfg *config.Config, ips []netip.Addr) bool {
	for _, ip := range ips {
		if _, ok := cfg.PoolFor(ip); !ok {
			return false
		}
	}
	return true
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
