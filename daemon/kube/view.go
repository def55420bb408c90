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
	subs   []chan struct{}
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
		leases: newInformer(c.Coordination, "leases", v.leaseNS, &coordinationv1.Lease{}, nil),
	}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { v.poke() },
		UpdateFunc: func(any, any) { v.poke() },
		DeleteFunc: func(any) { v.poke() },
	}
	for _, inf := range s.all() {
		if _, err := inf.AddEventHandler(notify); err != nil {
			panic(fmt.Sprintf("informer handler: %v", err)) // only fails once stopped
		}
	}
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

func (s *informerSet) shutdown() {
	s.stop()
	s.running.Wait()
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

// Subscribe returns a channel that receives a signal (coalesced) whenever
// anything in the view changes. Each reader needs its own: a signal taken by
// one is not seen by another.
func (v *View) Subscribe() <-chan struct{} {
	c := make(chan struct{}, 1)
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	v.subs = append(v.subs, c)
	return c
}

func (v *View) poke() {
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	for _, c := range v.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
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
	defer func() { v.cur.Load().shutdown() }()
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
			next.shutdown()
			continue
		}
		v.cur.Swap(next).shutdown()
		v.poke()
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
		// Only readiness and the exclusion label matter.
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
