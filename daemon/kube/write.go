package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

func metaFor(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

// SetIngress makes svc's status.loadBalancer.ingress exactly ips. It patches
// the status subresource with svc's resourceVersion as a precondition, so a
// decision made on a stale view fails instead of overwriting a newer one; the
// informer then delivers the newer object and the caller decides again.
func SetIngress(ctx context.Context, client kubernetes.Interface, svc *corev1.Service, ips []netip.Addr) error {
	ingress := make([]corev1.LoadBalancerIngress, 0, len(ips))
	for _, ip := range ips {
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: ptr(corev1.LoadBalancerIPModeVIP)})
	}
	patch := map[string]any{
		"metadata": map[string]any{"resourceVersion": svc.ResourceVersion},
		"status":   map[string]any{"loadBalancer": map[string]any{"ingress": ingress}},
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("status patch: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err = client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, data, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("set status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// NewRecorder returns an Event recorder reporting as component l2lbd on
// node, and a function that flushes and stops it.
func NewRecorder(client kubernetes.Interface, node string) (record.EventRecorder, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "l2lbd", Host: node}), b.Shutdown
}
