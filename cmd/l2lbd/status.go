package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/l2lb/l2lb/cmd/l2lbd/internal/status"
	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/kube"
)

// statusTimeout bounds the whole command beyond the lease duration it may
// watch the Leases for: it must answer, not hang on an unreachable API
// server.
const statusTimeout = 30 * time.Second

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	var path, kubeconfig, output string
	code, ok := flags("status [--config PATH] [--kubeconfig PATH] [-o table|json]",
		"Shows the cluster as l2lb sees it: nodes, pools, every address and who announces it,\n"+
			"the IPAM leader, Services without an address and why, recent conflicts. It only reads.\n"+
			"Exit status 0 when all is well, 1 when something needs attention, 2 on errors.",
		args, stdout, stderr, func(fs *flag.FlagSet) {
			configFlag(&path)(fs)
			fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to read the cluster with (default: the one the config names)")
			fs.StringVar(&output, "o", "table", "output format: table or json")
		})
	if !ok {
		return code
	}
	if output != "table" && output != "json" {
		fmt.Fprintf(stderr, "l2lbd status: -o %q: want table or json\n", output)
		return 2
	}
	hostname, _ := os.Hostname()
	cfg, _, err := config.Load(path, hostname)
	if err != nil {
		for _, p := range config.Problems(err) {
			fmt.Fprintln(stderr, p)
		}
		if len(config.Problems(err)) == 0 {
			fmt.Fprintf(stderr, "l2lbd status: %v\n", err)
		}
		return 2
	}
	if kubeconfig == "" {
		kubeconfig = cfg.Kubeconfig
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Coordination.LeaseDuration+statusTimeout)
	defer cancel()
	client, err := readClient(kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "l2lbd status: %v\n", err)
		return 2
	}
	snap, warnings, err := gather(ctx, client, cfg)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "l2lbd status: %s\n", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "l2lbd status: %v\n", err)
		return 2
	}
	r := status.Build(snap)
	if output == "json" {
		err = r.JSON(stdout)
	} else {
		err = r.Table(stdout, snap.Now)
	}
	if err != nil {
		fmt.Fprintf(stderr, "l2lbd status: %v\n", err)
		return 2
	}
	if len(r.Attention) > 0 {
		return 1
	}
	return 0
}

// readClient builds a client from kubeconfig without contacting the API
// server; protobuf, as 5,000 Services decode several times faster than JSON.
func readClient(kubeconfig string) (*kube.Client, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	rc.UserAgent = "l2lbd-status/" + versionString()
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	rc.QPS = 0 // a handful of requests: no client-side limit
	return kube.NewClient(rc)
}

// gather reads the snapshot. The lists run while the member Leases are
// watched for renewals, so the command takes about one renew interval
// (a lease duration when a node does not renew).
// Events are optional: a credential that may not list them (the nodes'
// own) gets a warning, not an error.
func gather(ctx context.Context, client *kube.Client, cfg *config.Config) (status.Snapshot, []string, error) {
	snap := status.Snapshot{Config: cfg}
	var warnings []string
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	// "0": served from the API server's cache, which is what its watchers
	// see too, and far cheaper than a quorum read of 5,000 objects.
	cached := &metav1.ListOptions{ResourceVersion: "0"}
	var wg sync.WaitGroup
	wg.Go(func() {
		var list corev1.NodeList
		if err := client.Core.Get().Resource("nodes").VersionedParams(cached, metav1.ParameterCodec).Do(ctx).Into(&list); err != nil {
			fail(fmt.Errorf("list Nodes: %w", err))
			return
		}
		for i := range list.Items {
			snap.Nodes = append(snap.Nodes, &list.Items[i])
		}
	})
	wg.Go(func() {
		var list corev1.ServiceList
		if err := client.Core.Get().Resource("services").VersionedParams(cached, metav1.ParameterCodec).Do(ctx).Into(&list); err != nil {
			fail(fmt.Errorf("list Services: %w", err))
			return
		}
		for i := range list.Items {
			snap.Services = append(snap.Services, &list.Items[i])
		}
	})
	for _, reason := range []string{status.ReasonAnnouncing, status.ReasonConflict} {
		wg.Go(func() {
			opts := &metav1.ListOptions{ResourceVersion: "0", FieldSelector: "involvedObject.kind=Service,reason=" + reason}
			var list corev1.EventList
			err := client.Core.Get().Resource("events").VersionedParams(opts, metav1.ParameterCodec).Do(ctx).Into(&list)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				what := "cannot list " + reason + " Events"
				if apierrors.IsForbidden(err) {
					what += " (the credential may not list Events; use an operator's kubeconfig for interfaces, times and conflicts)"
				}
				warnings = append(warnings, fmt.Sprintf("%s: %v", what, err))
				return
			}
			for i := range list.Items {
				snap.Events = append(snap.Events, &list.Items[i])
			}
		})
	}
	leases, err := watchLeases(ctx, client, cfg.Coordination.Namespace, cfg.Coordination.LeaseDuration)
	if err != nil {
		fail(err)
	}
	snap.Leases = leases
	wg.Wait()
	snap.Now = time.Now()
	return snap, warnings, errors.Join(errs...)
}

// watchLeases lists the member Leases until status.Watch has judged every
// node's liveness: about one renew interval when every node renews, at most
// a lease duration when one does not.
func watchLeases(ctx context.Context, client *kube.Client, namespace string, leaseDuration time.Duration) ([]status.Lease, error) {
	const every = 200 * time.Millisecond
	w := status.NewWatch(leaseDuration)
	for {
		sent := time.Now()
		var list coordinationv1.LeaseList
		if err := client.Coordination.Get().Namespace(namespace).Resource("leases").Do(ctx).Into(&list); err != nil {
			return nil, fmt.Errorf("list Leases in %s: %w", namespace, err)
		}
		var members []status.Listed
		for i := range list.Items {
			l := &list.Items[i]
			if node, m, ok := kube.ParseMember(l); ok {
				ls := status.Listed{Node: node, Member: m}
				if l.Spec.RenewTime != nil {
					ls.Renew = l.Spec.RenewTime.Time
				}
				members = append(members, ls)
			}
		}
		w.Observe(sent, time.Now(), members)
		if w.Done() {
			return w.Leases(), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(w.Wait(time.Now(), every)):
		}
	}
}
