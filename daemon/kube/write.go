package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// writeTimeout bounds how long a write waits for the API server.
const writeTimeout = 10 * time.Second

// SetIngress makes svc's status.loadBalancer.ingress exactly ips. It patches
// the status subresource with svc's resourceVersion as a precondition, so a
// decision made on a stale view fails instead of overwriting a newer one; the
// informer then delivers the newer object and the caller decides again.
func SetIngress(ctx context.Context, client *Client, svc *corev1.Service, ips []netip.Addr) error {
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
	err = client.Core.Patch(types.MergePatchType).Namespace(svc.Namespace).Resource("services").Name(svc.Name).
		SubResource("status").Body(data).Do(ctx).Error()
	if err != nil {
		return fmt.Errorf("set status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// Recorder writes Events about Services in the background, so that no
// decision waits for the API server. A repeat of an Event (same Service,
// type, reason and message) within repeatWindow raises the first one's count
// instead of adding another, as kubectl describe shows it. Events are paced
// (eventRate): they explain what the status and the logs already say, and
// must not take the API server from status writes and Lease renewals when
// thousands of Services change at once (a cold start would write two per
// Service). Events beyond the queue, and while the API server is away, are
// dropped, not kept without bound.
type Recorder struct {
	client *Client
	source corev1.EventSource
	log    *slog.Logger
	queue  chan *corev1.Event
	pace   *rate.Limiter
	// Owned by Run.
	recent map[repeatKey]*corev1.Event
	seq    uint32
}

type repeatKey struct {
	uid                        types.UID
	eventType, reason, message string
}

const (
	repeatWindow   = 10 * time.Minute
	maxRecent      = 4096
	eventQueue     = 100
	eventRate      = 5 // Events written per second, after a burst of eventBurst
	eventBurst     = 20
	maxMessageSize = 1024 // events.k8s.io's limit; kubectl shows no more
)

// NewRecorder returns a Recorder reporting as component l2lbd on node; Run
// writes what it records.
func NewRecorder(client *Client, node string, log *slog.Logger) *Recorder {
	return &Recorder{
		client: client,
		source: corev1.EventSource{Component: "l2lbd", Host: node},
		log:    log,
		queue:  make(chan *corev1.Event, eventQueue),
		pace:   rate.NewLimiter(eventRate, eventBurst),
		recent: map[repeatKey]*corev1.Event{},
	}
}

// Eventf records an Event of eventType (corev1.EventTypeNormal or Warning)
// about svc. It never blocks.
func (r *Recorder) Eventf(svc *corev1.Service, eventType, reason, format string, args ...any) {
	r.Event(svc, eventType, reason, fmt.Sprintf(format, args...))
}

// Event records an Event with a fixed message; see Eventf.
func (r *Recorder) Event(svc *corev1.Service, eventType, reason, message string) {
	if len(message) > maxMessageSize {
		cut := maxMessageSize - len("...")
		for cut > 0 && !utf8.RuneStart(message[cut]) {
			cut-- // never split a character
		}
		message = message[:cut] + "..."
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name,
			UID: svc.UID, ResourceVersion: svc.ResourceVersion,
		},
		Reason: reason, Message: message, Type: eventType, Source: r.source,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "l2lb.dev/l2lbd", ReportingInstance: "l2lbd-" + r.source.Host,
	}
	select {
	case r.queue <- ev:
	default:
		r.log.Debug("Event dropped: too many waiting for the API server", "service", svc.Namespace+"/"+svc.Name, "reason", reason)
	}
}

// Run writes recorded Events until ctx is done; a failed write is logged and
// the Event dropped.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			if r.pace.Wait(ctx) != nil {
				return
			}
			if err := r.write(ctx, ev); err != nil && ctx.Err() == nil {
				r.log.Warn("cannot write Event", append([]any{"service", ev.Namespace + "/" + ev.InvolvedObject.Name, "reason", ev.Reason}, ErrAttrs(err)...)...)
			}
		}
	}
}

func (r *Recorder) write(ctx context.Context, ev *corev1.Event) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	key := repeatKey{ev.InvolvedObject.UID, ev.Type, ev.Reason, ev.Message}
	if prev, ok := r.recent[key]; ok && ev.LastTimestamp.Sub(prev.LastTimestamp.Time) < repeatWindow {
		patch, err := json.Marshal(map[string]any{"count": prev.Count + 1, "lastTimestamp": ev.LastTimestamp})
		if err != nil {
			return err
		}
		err = r.client.Core.Patch(types.MergePatchType).Namespace(prev.Namespace).Resource("events").Name(prev.Name).
			Body(patch).Do(ctx).Error()
		if err == nil {
			prev.Count++
			prev.LastTimestamp = ev.LastTimestamp
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		// Expired meanwhile (the API server keeps Events an hour): create anew.
	}
	r.seq++
	ev.Name = fmt.Sprintf("%s.%x%04x", ev.InvolvedObject.Name, ev.FirstTimestamp.UnixNano(), r.seq&0xffff)
	err := r.client.Core.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Error()
	if err != nil {
		return err
	}
	if len(r.recent) >= maxRecent {
		clear(r.recent)
	}
	r.recent[key] = ev
	return nil
}
