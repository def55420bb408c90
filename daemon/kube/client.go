// Package kube is l2lbd's glue to the Kubernetes API: the connection, the
// informers that make up the daemon's view of the cluster, the Service status
// and Event writers, and the member Lease heartbeat. It decides nothing.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/util/flowcontrol"
)

// Client reaches the three API groups l2lbd uses, with a scheme that knows
// only their types. client-go's typed clientset, its informer factory, Event
// recorder and leader election all pull in the scheme of every Kubernetes
// API group, whose registration alone touches about 20 MiB of the binary at
// start; the daemon's memory goal is 40 MiB in all.
type Client struct {
	Core         rest.Interface // core/v1: Services, Nodes, Events
	Coordination rest.Interface // coordination.k8s.io/v1: Leases
	LeaseWatch   rest.Interface // the same, on a connection of its own: for the Lease informer
	Discovery    rest.Interface // discovery.k8s.io/v1: EndpointSlices
}

// scheme knows the types of the three groups, and the meta/v1 options and
// Status every group shares.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, coordinationv1.AddToScheme, discoveryv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // static registration; cannot fail
		}
	}
	return s
}()

// NewClient returns a Client for cfg; it does not contact the API server.
// cfg.QPS and cfg.Burst are one token bucket shared by every group (the
// daemon's kubernetes.qps and kubernetes.burst); a QPS of zero or less means
// no client-side limit, not client-go's default of 5 per second.
func NewClient(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.RateLimiter == nil {
		if cfg.QPS > 0 {
			cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, max(cfg.Burst, 1))
		} else {
			cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
		}
	}
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client: %w", err)
	}
	// The Lease informer watches on a connection of its own: it is how this
	// node sees its renewals come back, and must not queue behind the
	// Service watch and thousands of status writes on one HTTP/2
	// connection (the IPAM leader's did, by over a second, in a cold
	// start, and froze). The heartbeat still writes on the main
	// connection, so a node whose main connection fails cannot stay
	// fresh. Explicit ALPN protocols (the ones client-go would offer
	// anyway) give the transport a cache key of its own: a distinct but
	// stable one, so the retries of Connect reuse it rather than add one.
	wcfg := rest.CopyConfig(cfg)
	wcfg.NextProtos = []string{"h2", "http/1.1"}
	if os.Getenv("DISABLE_HTTP2") != "" {
		// client-go then configures no HTTP/2, so h2 must not be offered.
		wcfg.NextProtos = []string{"http/1.1"}
	}
	watchClient, err := rest.HTTPClientFor(wcfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client: %w", err)
	}
	c := &Client{}
	for _, g := range []struct {
		into    *rest.Interface
		apiPath string
		gv      schema.GroupVersion
		http    *http.Client
	}{
		{&c.Core, "/api", corev1.SchemeGroupVersion, httpClient},
		{&c.Coordination, "/apis", coordinationv1.SchemeGroupVersion, httpClient},
		{&c.LeaseWatch, "/apis", coordinationv1.SchemeGroupVersion, watchClient},
		{&c.Discovery, "/apis", discoveryv1.SchemeGroupVersion, httpClient},
	} {
		gcfg := rest.CopyConfig(cfg)
		gcfg.APIPath, gcfg.GroupVersion = g.apiPath, &g.gv
		rc, err := rest.RESTClientForConfigAndClient(gcfg, g.http)
		if err != nil {
			return nil, fmt.Errorf("REST client for %s: %w", g.gv, err)
		}
		*g.into = rc
	}
	return c, nil
}

// Connect loads the kubeconfig at path and waits until the API server answers.
// A missing or unreadable kubeconfig and an unreachable API server are logged
// (once per distinct problem) and retried with backoff up to retryMax, never
// fatal: the daemon must not crash-loop while a node is being set up. It
// returns only when connected or when ctx is done.
//
// retryMax is the renew interval: a daemon restarted during an API outage
// answers nothing until it connects, so it tries as often as a running one
// renews its Lease, not a long backoff after the API server is back.
//
// qps and burst limit every request of the client (see NewClient). Steady
// state needs about one request per renewInterval; they matter when the IPAM
// leader writes thousands of Service statuses after a cold start, which should
// go as fast as the API server takes them.
func Connect(ctx context.Context, path, userAgent string, qps float64, burst int, retryMax time.Duration, log *slog.Logger) (*Client, error) {
	var backoff time.Duration
	var lastProblem string
	for {
		client, err := connect(ctx, path, userAgent, qps, burst)
		if err == nil {
			if lastProblem != "" {
				log.Info("connected to the Kubernetes API", "kubeconfig", path)
			}
			return client, nil
		}
		if msg := err.Error(); msg != lastProblem {
			log.Error("cannot reach the Kubernetes API; retrying", append([]any{"kubeconfig", path}, ErrAttrs(err)...)...)
			lastProblem = msg
		}
		backoff = connectBackoff(backoff, retryMax)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(jittered(backoff, rand.Float64())):
		}
	}
}

// connectBackoff is the wait before the next attempt to connect, after one
// of prev (0 for the first): doubling from 200 ms, at most limit.
func connectBackoff(prev, limit time.Duration) time.Duration {
	if prev == 0 {
		return min(200*time.Millisecond, limit)
	}
	return min(2*prev, limit)
}

// jittered shortens a wait by up to a fifth, by r in [0, 1): daemons
// restarted together during an outage (a package upgrade across the
// cluster) do not all retry at the same moments, and none waits longer
// than the renew interval.
func jittered(wait time.Duration, r float64) time.Duration {
	return wait - time.Duration(float64(wait)*r/5)
}

func connect(ctx context.Context, path, userAgent string, qps float64, burst int) (*Client, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("kubeconfig %s does not exist (see the kubeconfig recipe in the examples)", path)
		}
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg.UserAgent = userAgent
	if cfg.BearerTokenFile != "" {
		// client-go re-reads a tokenFile only when its copy is 50 s old,
		// also after the API server rejected it. Its resettable token
		// source re-reads at the next request after a 401 too, so a node
		// whose token expired is back as soon as a new one is in the file.
		src := transport.NewCachedFileTokenSource(cfg.BearerTokenFile)
		if _, err := src.Token(); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		cfg.BearerToken, cfg.BearerTokenFile = "", ""
		cfg.WrapTransport = transport.ResettableTokenSourceWrapTransport(src)
	}
	cfg.QPS, cfg.Burst, cfg.RateLimiter = float32(qps), burst, nil
	if qps > 0 && cfg.QPS == 0 {
		cfg.QPS = math.SmallestNonzeroFloat32 // a tiny limit is still a limit
	}
	// Protobuf, not JSON: after a cold start every daemon decodes thousands
	// of Service updates, and the API server encodes them for each watcher,
	// on the same machines as the workloads.
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := client.Core.Get().AbsPath("/version").Do(vctx).Raw(); err != nil {
		return nil, fmt.Errorf("API server %s: %w", cfg.Host, err)
	}
	return client, nil
}
