package kube

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// View is the daemon's read-only view of the cluster, kept by informers:
// Services, EndpointSlices and Nodes cluster-wide, Leases in the
// coordination namespace only (all the RBAC allows).
//
// client-go's reflectors back off up to a minute after a long API outage;
// Refresh replaces the informers with new ones that list at once, swapped in
// only once they have synced, so the view never goes empty.
type View struct {
	client    *Client
	leaseNS   string
	cur       atomic.Pointer[informerSet]
	refreshes chan struct{}

	subsMu sync.Mutex
	subs   []*Changes
}

// Kind is a kind of object the view holds.
type Kind uint8

// The kinds a subscriber can ask to hear about.
const (
	KindServices Kind = 1 << iota // Services, and EndpointSlices by their Service
	KindNodes
	KindLeases
)

// Changes collects what changed in the view for one subscriber, by key, so
// that the subscriber re-reads only those objects. C receives a signal
// (coalesced) whenever something was added.
type Changes struct {
	C     <-chan struct{}
	c     chan struct{}
	kinds Kind
	keys  bool // false: signal only, remember nothing

	mu    sync.Mutex
	delta Delta
}

// Delta is what changed since the last Take.
type Delta struct {
	// All: the informers were replaced (or this is the first Take); read
	// everything.
	All bool
	// Services by namespace/name; an EndpointSlice change names its Service.
	Services map[string]bool
	Nodes    map[string]bool // by name
	Leases   map[string]bool // by name, in the coordination namespace
}

// Take returns what changed since the previous Take and forgets it.
func (c *Changes) Take() Delta {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.delta
	c.delta = Delta{}
	return d
}

func (c *Changes) add(kind Kind, key string, all bool) {
	if c.kinds&kind == 0 && !all {
		return
	}
	if !c.keys {
		c.signal()
		return
	}
	c.mu.Lock()
	d := &c.delta
	switch {
	case all:
		d.All = true
	case kind == KindServices:
		d.Services = addKey(d.Services, key)
	case kind == KindNodes:
		d.Nodes = addKey(d.Nodes, key)
	case kind == KindLeases:
		d.Leases = addKey(d.Leases, key)
	}
	c.mu.Unlock()
	c.signal()
}

func (c *Changes) signal() {
	select {
	case c.c <- struct{}{}:
	default:
	}
}

func addKey(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[k] = true
	return m
}

// informerSet is one generation of informers.
type informerSet struct {
	services, nodes, slices, leases cache.SharedIndexInformer
	stop                            context.CancelFunc
	running                         sync.WaitGroup
}

// byService indexes EndpointSlices by namespace/service.
const byService = "service"

// NewView prepares informers on client; Run starts them.
func NewView(client *Client, leaseNamespace string) *View {
	v := &View{client: client, leaseNS: leaseNamespace, refreshes: make(chan struct{}, 1)}
	v.cur.Store(v.newSet())
	return v
}

func (v *View) newSet() *informerSet {
	c := v.client
	s := &informerSet{
		services: newInformer(c.Core, "services", "", &corev1.Service{}, nil),
		nodes:    newInformer(c.Core, "nodes", "", &corev1.Node{}, nil),
		slices: newInformer(c.Discovery, "endpointslices", "", &discoveryv1.EndpointSlice{}, cache.Indexers{
			byService: func(obj any) ([]string, error) {
				s := obj.(*discoveryv1.EndpointSlice)
				if name, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
					return []string{s.Namespace + "/" + name}, nil
				}
				return nil, nil
			},
		}),
		leases: newInformer(c.LeaseWatch, "leases", v.leaseNS, &coordinationv1.Lease{}, nil),
	}
	handle := func(inf cache.SharedIndexInformer, kind Kind, keys func(obj any) []string) {
		changed := func(obj any) {
			for _, k := range keys(obj) {
				v.changed(kind, k)
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    changed,
			UpdateFunc: func(old, cur any) { changed(old); changed(cur) },
			DeleteFunc: changed,
		}); err != nil {
			panic(fmt.Sprintf("informer handler: %v", err)) // only fails once stopped
		}
	}
	handle(s.services, KindServices, objectKey)
	handle(s.nodes, KindNodes, objectName)
	handle(s.leases, KindLeases, objectName)
	handle(s.slices, KindServices, sliceService)
	return s
}

func newInformer(rc rest.Interface, resource, namespace string, obj runtime.Object, indexers cache.Indexers) cache.SharedIndexInformer {
	lw := cache.NewListWatchFromClient(rc, resource, namespace, fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, obj, 0, indexers)
	if err := inf.SetTransform(strip); err != nil {
		panic(fmt.Sprintf("informer transform: %v", err)) // only fails once started
	}
	return inf
}

func (s *informerSet) all() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{s.services, s.nodes, s.slices, s.leases}
}

func (s *informerSet) start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	for _, inf := range s.all() {
		s.running.Go(func() { inf.RunWithContext(ctx) })
	}
}

// stopWait bounds how long a shutdown waits for the informers to return.
// client-go's watch-list retry sleeps out its backoff (up to a minute after
// a long API outage) without looking at the stop signal: neither replacing
// the informers nor stopping the daemon may wait on that. A straggler
// holds its copy of the cache until its backoff ends, and may send a change
// signal, which readers take as a hint: they read the current set.
const stopWait = time.Second

// shutdown stops the informers and waits at most wait for them.
func (s *informerSet) shutdown(wait time.Duration) {
	s.stop()
	done := make(chan struct{})
	go func() {
		s.running.Wait()
		close(done)
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func (s *informerSet) synced() bool {
	for _, inf := range s.all() {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

func (s *informerSet) waitSynced(ctx context.Context) bool {
	var fns []cache.InformerSynced
	for _, inf := range s.all() {
		fns = append(fns, inf.HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), fns...)
}

// Subscribe returns the changes of the given kinds as they happen, for one
// reader; its first Take says All.
func (v *View) Subscribe(kinds Kind) *Changes {
	ch := make(chan struct{}, 1)
	c := &Changes{C: ch, c: ch, kinds: kinds, keys: true, delta: Delta{All: true}}
	ch <- struct{}{}
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	v.subs = append(v.subs, c)
	return c
}

// Notify returns a channel that receives a signal (coalesced) whenever an
// object of the given kinds changes, for a reader that re-reads everything.
func (v *View) Notify(kinds Kind) <-chan struct{} {
	ch := make(chan struct{}, 1)
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	v.subs = append(v.subs, &Changes{C: ch, c: ch, kinds: kinds})
	return ch
}

func (v *View) changed(kind Kind, key string) {
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	for _, c := range v.subs {
		c.add(kind, key, false)
	}
}

// replaced tells every subscriber to read everything again.
func (v *View) replaced() {
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	for _, c := range v.subs {
		c.add(0, "", true)
	}
}

// objectKey is namespace/name, or name for cluster-scoped objects.
func objectKey(obj any) []string {
	k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return nil
	}
	return []string{k}
}

func objectName(obj any) []string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, ok := obj.(metav1.Object); ok {
		return []string{m.GetName()}
	}
	return nil
}

func sliceService(obj any) []string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		if name, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
			return []string{s.Namespace + "/" + name}
		}
	}
	return nil
}

// Refresh asks Run to replace the informers (see View); requests coalesce.
func (v *View) Refresh() {
	select {
	case v.refreshes <- struct{}{}:
	default:
	}
}

// Run runs the informers until ctx is done.
func (v *View) Run(ctx context.Context) error {
	v.cur.Load().start(ctx)
	defer func() { v.cur.Load().shutdown(stopWait) }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-v.refreshes:
		}
		next := v.newSet()
		next.start(ctx)
		syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
		ok := next.waitSynced(syncCtx)
		cancel()
		if !ok {
			next.shutdown(stopWait)
			continue
		}
		v.cur.Swap(next).shutdown(stopWait)
		v.replaced()
	}
}

// WaitSynced waits until every informer has listed once, or ctx is done.
func (v *View) WaitSynced(ctx context.Context) bool { return v.cur.Load().waitSynced(ctx) }

// Synced reports whether every informer has listed once.
func (v *View) Synced() bool { return v.cur.Load().synced() }

// The readers below return the cached objects (stripped, shared: read-only).

// Services returns every Service.
func (v *View) Services() []*corev1.Service { return list[*corev1.Service](v.cur.Load().services) }

// Nodes returns every Node.
func (v *View) Nodes() []*corev1.Node { return list[*corev1.Node](v.cur.Load().nodes) }

// EndpointSlices returns the EndpointSlices of a Service.
func (v *View) EndpointSlices(namespace, service string) []*discoveryv1.EndpointSlice {
	objs, _ := v.cur.Load().slices.GetIndexer().ByIndex(byService, namespace+"/"+service)
	return typed[*discoveryv1.EndpointSlice](objs)
}

// Service returns the Service with the given namespace/name key.
func (v *View) Service(key string) (*corev1.Service, bool) {
	return get[*corev1.Service](v.cur.Load().services, key)
}

// Node returns the Node with the given name.
func (v *View) Node(name string) (*corev1.Node, bool) {
	return get[*corev1.Node](v.cur.Load().nodes, name)
}

// Lease returns the Lease with the given name in the coordination namespace.
func (v *View) Lease(name string) (*coordinationv1.Lease, bool) {
	return get[*coordinationv1.Lease](v.cur.Load().leases, v.leaseNS+"/"+name)
}

func get[T any](inf cache.SharedIndexInformer, key string) (T, bool) {
	obj, ok, err := inf.GetStore().GetByKey(key)
	t, isT := obj.(T)
	return t, ok && err == nil && isT
}

// Leases returns the Leases of the coordination namespace.
func (v *View) Leases() []*coordinationv1.Lease {
	return list[*coordinationv1.Lease](v.cur.Load().leases)
}

func list[T any](inf cache.SharedIndexInformer) []T { return typed[T](inf.GetStore().List()) }

func typed[T any](objs []any) []T {
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// strip drops what l2lbd never reads, to keep the daemon's memory low with
// thousands of objects: managed fields, last-applied annotations and, for
// Services that are not LoadBalancers, everything but their identity.
func strip(obj any) (any, error) {
	if acc, ok := obj.(metav1.ObjectMetaAccessor); ok {
		m := acc.GetObjectMeta()
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	switch o := obj.(type) {
	case *corev1.Service:
		o.Labels = nil
		o.OwnerReferences = nil
		if o.Spec.Type != corev1.ServiceTypeLoadBalancer {
			o.Annotations = nil
			o.Spec = corev1.ServiceSpec{Type: o.Spec.Type}
			o.Status = corev1.ServiceStatus{}
			break
		}
		// Keep what selection, allocation and placement read.
		ports := make([]corev1.ServicePort, len(o.Spec.Ports))
		for i, p := range o.Spec.Ports {
			ports[i] = corev1.ServicePort{Protocol: p.Protocol, Port: p.Port}
		}
		o.Spec = corev1.ServiceSpec{
			Type:                  o.Spec.Type,
			Ports:                 ports,
			LoadBalancerClass:     o.Spec.LoadBalancerClass,
			LoadBalancerIP:        o.Spec.LoadBalancerIP,
			IPFamilies:            o.Spec.IPFamilies,
			IPFamilyPolicy:        o.Spec.IPFamilyPolicy,
			ExternalTrafficPolicy: o.Spec.ExternalTrafficPolicy,
		}
		for k := range o.Annotations {
			if !strings.Contains(k, "l2lb.dev/") && !strings.Contains(k, "kubesphere.io/") {
				delete(o.Annotations, k)
			}
		}
	case *corev1.Node:
		// Only readiness and the labels (exclusion, pool nodeSelectors) matter.
		o.Annotations = nil
		o.Spec = corev1.NodeSpec{}
		var ready []corev1.NodeCondition
		for _, c := range o.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ready = append(ready, c)
			}
		}
		o.Status = corev1.NodeStatus{Conditions: ready}
	case *discoveryv1.EndpointSlice:
		o.Annotations = nil
		o.Ports = nil
		for i := range o.Endpoints {
			o.Endpoints[i].Addresses = nil
			o.Endpoints[i].TargetRef = nil
			o.Endpoints[i].Hints = nil
		}
	}
	return obj, nil
}
