package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// ManyPools returns a valid file with n pools, each with an IPv4 range and an
// IPv6 CIDR, for benchmarks.
func manyPools(n int) []byte {
	var b strings.Builder
	b.WriteString("nodeName: bench\npools:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: pool-%d\n    addresses:\n      - 10.%d.%d.0-10.%d.%d.127\n      - \"2001:db8:%x::/120\"\n    namespaces: [ns-%d]\n",
			i, i/256, i%256, i/256, i%256, i, i)
	}
	return []byte(b.String())
}

// BenchmarkParse1000Pools: parse and validate a file with 1,000 pools.
func BenchmarkParse1000Pools(b *testing.B) {
	data := manyPools(1000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("f.yaml", data, "h"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReload measures the time from a file write to the new
// configuration being in force, with the default debounce. Run it with
// -benchtime=100x for the 100 edits of BENCHMARKS.md.
func BenchmarkReload(b *testing.B) {
	path := filepath.Join(b.TempDir(), "l2lbd.yaml")
	if err := os.WriteFile(path, poolConf(0), 0o644); err != nil {
		b.Fatal(err)
	}
	c, data, err := Load(path, "h")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan time.Time, 1)
	w := NewWatcher(path, c, data, WatchOptions{Hostname: "h", OnReload: func(Reload) { done <- time.Now() }})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	w.Reload()
	<-done

	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if err := os.WriteFile(path, poolConf(i+1), 0o644); err != nil {
			b.Fatal(err)
		}
		select {
		case end := <-done:
			lat = append(lat, end.Sub(start))
		case <-time.After(5 * time.Second):
			b.Fatal("no reload within 5s")
		}
		if w.Current().NodeName != fmt.Sprintf("v%d", i+1) {
			b.Fatalf("config in force is %s", w.Current().NodeName)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
