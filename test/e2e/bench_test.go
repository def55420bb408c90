package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/l2lb/l2lb/test/lab"
)

// The benchmarks here bring up a whole lab each; run them one at a time with
// -benchtime=1x (each reports its own percentiles over many samples), e.g.
//
//	go test -run '^$' -bench BenchmarkCreateToStatus -benchtime=1x ./test/e2e

// BenchmarkCreateToStatus: time from creating a Service to its status
// holding an address, seen through a watch, over 100 Services, 3 daemons.
func BenchmarkCreateToStatus(b *testing.B) {
	for b.Loop() {
		l := lab.Start(b, lab.Options{Nodes: 3})
		startDaemons(b, l, "pools:\n  - name: big\n    addresses: [\"2001:db8:100::1:0/112\"]\n", "")
		v6 := lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)
		// Not l.Client: its request timeout would end the watch.
		cfg, err := clientcmd.BuildConfigFromFlags("", l.AdminKubeconfig)
		if err != nil {
			b.Fatal(err)
		}
		w, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Services("default").Watch(ctxBg, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		// Warm up: the leader is elected and synced once one Service is served.
		l.CreateLBService(ctxBg, "default", "warmup", v6)
		waitStatus(b, w, "warmup")
		var lat []time.Duration
		for i := range 100 {
			name := fmt.Sprintf("s%03d", i)
			start := time.Now()
			l.CreateLBService(ctxBg, "default", name, v6)
			waitStatus(b, w, name)
			lat = append(lat, time.Since(start))
		}
		w.Stop()
		reportPercentiles(b, lat)
	}
}

func waitStatus(b *testing.B, w watch.Interface, name string) {
	b.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("watch closed")
			}
			if svc, ok := ev.Object.(*corev1.Service); ok && svc.Name == name && len(svc.Status.LoadBalancer.Ingress) > 0 {
				return
			}
		case <-timeout:
			b.Fatalf("%s got no status within 20s", name)
		}
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkColdStart5000: 5,000 Services exist before any daemon runs; time
// until every one has an address (IPv6, for want of documentation IPv4 space), and each daemon's RSS afterwards.
func BenchmarkColdStart5000(b *testing.B) {
	const n = 5000
	for b.Loop() {
		l := lab.Start(b, lab.Options{Nodes: 3})
		var wg sync.WaitGroup
		for w := range 20 {
			wg.Go(func() {
				for i := w; i < n; i += 20 {
					l.CreateLBService(ctxBg, "default", fmt.Sprintf("svc-%04d", i),
						lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol), noNodePorts)
				}
			})
		}
		wg.Wait()
		start := time.Now()
		ds := startDaemons(b, l, "pools:\n  - name: big\n    addresses: [\"2001:db8:100::1:0/112\"]\n", "")
		deadline := time.Now().Add(5 * time.Minute)
		for {
			done := 0
			list, err := l.Client.CoreV1().Services("default").List(ctxBg, metav1.ListOptions{ResourceVersion: "0"})
			if err == nil {
				for _, s := range list.Items {
					if len(s.Status.LoadBalancer.Ingress) > 0 {
						done++
					}
				}
			}
			if done == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d allocated after 5 minutes", done, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-to-allocate-all")
		time.Sleep(5 * time.Second) // settle: informer resync and GC
		var rss, anon float64
		for _, d := range ds {
			rss = max(rss, rssMiB(b, d.proc.PID))
			anon = max(anon, statusMiB(b, d.proc.PID, "RssAnon"))
		}
		b.ReportMetric(rss, "max-RSS-MiB")
		b.ReportMetric(anon, "max-RssAnon-MiB")
	}
}

// rssMiB reads a process's resident set size.
func rssMiB(b *testing.B, pid int) float64 { return statusMiB(b, pid, "VmRSS") }

// statusMiB reads a kB field of /proc/<pid>/status (VmRSS, RssAnon, RssFile).
func statusMiB(b *testing.B, pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no %s for pid %d", field, pid)
	return 0
}

// noNodePorts keeps thousands of Services from exhausting the NodePort range.
func noNodePorts(s *corev1.Service) {
	no := false
	s.Spec.AllocateLoadBalancerNodePorts = &no
}
