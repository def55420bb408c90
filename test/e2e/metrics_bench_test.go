package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// BenchmarkMetricsRSS: the daemons' memory with the metrics endpoint on and
// scraped, 3 nodes, 1,000 Services: RSS and RssAnon of the largest daemon
// after a minute of scrapes every 5 s. L2LB_BENCH_L2LBD names another
// binary to run instead of this tree's (the one before a change, for a
// before/after).
//
//	go test -run '^$' -bench BenchmarkMetricsRSS -benchtime=1x ./test/e2e
func BenchmarkMetricsRSS(b *testing.B) {
	const n = 1000
	bin := l2lbd
	if p := os.Getenv("L2LB_BENCH_L2LBD"); p != "" {
		bin = p
	}
	for b.Loop() {
		l := lab.Start(b, lab.Options{Nodes: 3})
		var ds []*daemon
		for _, node := range l.Nodes {
			d := &daemon{node: node, config: writeConfig(b, node, bigV6Pools, "metrics: {address: \"127.0.0.1:9473\"}\n")}
			d.proc = node.Start(b, bin, "run", "--config", d.config)
			ds = append(ds, d)
		}
		l.CreateLBServices(ctxBg, "default", n, 10, func(i int) string { return fmt.Sprintf("s%04d", i) },
			lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
		waitClaims(b, l, n)
		var sample string
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(5 * time.Second) {
			for _, d := range ds {
				ctx, cancel := context.WithTimeout(ctxBg, 5*time.Second)
				out, err := d.node.Exec(ctx, "curl", "-sS", "--noproxy", "*", "http://127.0.0.1:9473/metrics")
				cancel()
				if err != nil || !strings.Contains(string(out), "l2lbd_ready") {
					b.Fatalf("scrape %s: %v: %.200s", d.node.Name, err, out)
				}
				sample = string(out)
			}
		}
		rss, anon := maxMemory(b, ds)
		b.ReportMetric(rss, "RSS-MiB")
		b.ReportMetric(anon, "RssAnon-MiB")
		b.Logf("binary %s; a scrape is %d lines, %d of them go_ or process_", bin, strings.Count(sample, "\n"),
			strings.Count(sample, "\ngo_")+strings.Count(sample, "\nprocess_"))
	}
}
