// Package kube is l2lbd's glue to the Kubernetes API: the connection, the
// informers that make up the daemon's view of the cluster, the Service status
// and Event writers, and the Lease-based coordination. It decides nothing.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Connect loads the kubeconfig at path and waits until the API server answers.
// A missing or unreadable kubeconfig and an unreachable API server are logged
// (once per distinct problem) and retried with backoff up to maxBackoff, never
// fatal: the daemon must not crash-loop while a node is being set up. It
// returns only when connected or when ctx is done.
func Connect(ctx context.Context, path, userAgent string, log *slog.Logger) (*kubernetes.Clientset, error) {
	const maxBackoff = 10 * time.Second
	backoff := 200 * time.Millisecond
	var lastProblem string
	for {
		client, err := connect(ctx, path, userAgent)
		if err == nil {
			if lastProblem != "" {
				log.Info("connected to the Kubernetes API", "kubeconfig", path)
			}
			return client, nil
		}
		if msg := err.Error(); msg != lastProblem {
			log.Error("cannot reach the Kubernetes API; retrying", "kubeconfig", path, "err", err)
			lastProblem = msg
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func connect(ctx context.Context, path, userAgent string) (*kubernetes.Clientset, error) {
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
	// Status writes for thousands of Services after a cold start must not
	// crawl at client-go's default of 5 per second; steady state writes one
	// Lease renewal per second.
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := client.Discovery().RESTClient().Get().AbsPath("/version").Do(vctx).Raw(); err != nil {
		return nil, fmt.Errorf("API server %s: %w", cfg.Host, err)
	}
	return client, nil
}
