package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// View is the daemon's read-only view of the cluster, kept by informers.
type View struct {
	factory  informers.SharedInformerFactory
	services cache.SharedIndexInformer
	changed  chan struct{}
}

// NewView prepares informers on client; Run starts them.
func NewView(client kubernetes.Interface) *View {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(strip))
	v := &View{factory: f, services: f.Core().V1().Services().Informer(), changed: make(chan struct{}, 1)}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { v.poke() },
		UpdateFunc: func(any, any) { v.poke() },
		DeleteFunc: func(any) { v.poke() },
	}
	if _, err := v.services.AddEventHandler(notify); err != nil {
		panic(fmt.Sprintf("informer handler: %v", err)) // only fails once stopped
	}
	return v
}

// Changed delivers a signal (coalesced) whenever anything in the view changes.
func (v *View) Changed() <-chan struct{} { return v.changed }

func (v *View) poke() {
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

// Run starts the informers and waits for their first sync (bounded by
// syncTimeout, then keeps waiting in the background); it returns when ctx is
// done.
func (v *View) Run(ctx context.Context) error {
	v.factory.Start(ctx.Done())
	<-ctx.Done()
	v.factory.Shutdown()
	return nil
}

// WaitSynced waits until every informer has listed once, or ctx is done.
func (v *View) WaitSynced(ctx context.Context) bool {
	for _, ok := range v.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return false
		}
	}
	return true
}

// Synced reports whether every informer has listed once.
func (v *View) Synced() bool { return v.services.HasSynced() }

// Services returns every Service in the cluster (stripped; read-only).
func (v *View) Services() []*corev1.Service {
	out, _ := corelisters.NewServiceLister(v.services.GetIndexer()).List(labels.Everything())
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
	if svc, ok := obj.(*corev1.Service); ok {
		svc.Labels = nil
		svc.Spec.Selector = nil
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			svc.Annotations = nil
			svc.Spec = corev1.ServiceSpec{Type: svc.Spec.Type}
			svc.Status = corev1.ServiceStatus{}
		}
	}
	return obj, nil
}

// resyncGrace bounds how long a write waits for the API server.
const writeTimeout = 10 * time.Second
