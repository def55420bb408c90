package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// prober points the lab's client prober at one address at a time and reads
// what it heard since: runs of answers, with kernel timestamps.
type prober struct {
	*lab.Prober
	mu    sync.Mutex
	ip    netip.Addr
	since time.Time
}

func startProber(b testing.TB, l *lab.Lab, period time.Duration) *prober {
	return &prober{Prober: l.Net.StartProber(b, period)}
}

// watch starts asking for ip, forgetting what was heard before.
func (p *prober) watch(ip netip.Addr) {
	p.mu.Lock()
	p.ip, p.since = ip, time.Now()
	p.mu.Unlock()
	p.Watch(ip)
}

func (p *prober) heard() (lab.ProbeLog, time.Time) {
	p.mu.Lock()
	ip, since := p.ip, p.since
	p.mu.Unlock()
	return p.Log(ip), since
}

// replies returns the runs of answers since watch; a run that started
// before counts from then.
func (p *prober) replies() []lab.Run {
	log, since := p.heard()
	var out []lab.Run
	for _, r := range log.Replies {
		if r.Last.Before(since) {
			continue
		}
		if r.First.Before(since) {
			r.First = since
		}
		out = append(out, r)
	}
	return out
}

// announcements returns the gratuitous ARPs for the address since watch.
func (p *prober) announcements() []lab.Announcement {
	log, since := p.heard()
	return slices.DeleteFunc(log.Announcements, func(a lab.Announcement) bool { return a.At.Before(since) })
}

// firstReplyAfter waits for a reply from a MAC other than not and returns
// the run it starts.
func (p *prober) firstReplyAfter(b testing.TB, not string, timeout time.Duration) lab.Run {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, r := range p.replies() {
			if r.MAC != not {
				return r
			}
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("no reply from a MAC other than %q within %v", not, timeout)
	return lab.Run{}
}

// reportMS reports the median and p99 of d in milliseconds, as name-p50-ms
// and name-p99-ms (p50-ms and p99-ms without a name).
func reportMS(b *testing.B, d []time.Duration, name string) {
	if name != "" {
		name += "-"
	}
	b.ReportMetric(float64(lab.Percentile(d, 0.50).Microseconds())/1000, name+"p50-ms")
	b.ReportMetric(float64(lab.Percentile(d, 0.99).Microseconds())/1000, name+"p99-ms")
}

// BenchmarkCreateToARP: from creating a Service (asking for a known
// address) to the first ARP reply the client gets for it, over 20 Services.
func BenchmarkCreateToARP(b *testing.B) {
	for b.Loop() {
		l := lab.Start(b, lab.Options{Nodes: 3})
		startDaemons(b, l, "pools:\n  - name: lan\n    addresses: [198.51.100.200-198.51.100.250]\n", "")
		p := startProber(b, l, time.Millisecond)
		// Warm up: a first Service answered means every daemon is placing.
		warm := netip.MustParseAddr("198.51.100.250")
		p.watch(warm)
		l.CreateLBService(ctxBg, "default", "warmup", lab.WithAnnotation("l2lb.dev/ips", warm.String()))
		p.firstReplyAfter(b, "", 20*time.Second)
		var lat []time.Duration
		for i := range 20 {
			ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(200 + i)})
			p.watch(ip)
			start := time.Now()
			l.CreateLBService(ctxBg, "default", fmt.Sprintf("s%d", i), lab.WithAnnotation("l2lb.dev/ips", ip.String()))
			lat = append(lat, p.firstReplyAfter(b, "", 20*time.Second).First.Sub(start))
		}
		reportMS(b, lat, "create-to-arp")
	}
}

// failoverRuns kills (sig) the owner of one address runs times and measures
// the time from the signal to the client's neighbour entry pointing at the
// new owner (the gratuitous ARP), and from the signal to the first reply of
// the new owner to the prober. It also counts instants at which two MACs
// answered: replies of the old MAC after the first of the new one.
func failoverRuns(b *testing.B, extra string, sig syscall.Signal, runs int) (neigh, firstReply []time.Duration, overlaps int) {
	l := lab.Start(b, lab.Options{Nodes: 3})
	ds := startDaemons(b, l, "pools:\n  - name: lan\n    addresses: [198.51.100.200-198.51.100.250]\n", extra)
	ip := netip.MustParseAddr("198.51.100.200")
	l.CreateLBService(ctxBg, "default", "web", lab.WithAnnotation("l2lb.dev/ips", ip.String()))
	waitIngress(b, l, "default", "web", 1)
	standIn(b, l, ip)
	p := startProber(b, l, 2*time.Millisecond)
	for range runs {
		o := owner(b, l, ip)
		old := populateNeigh(b, l, ip)
		time.Sleep(1500 * time.Millisecond) // let the crash fall anywhere in a renew interval
		p.watch(ip)
		d := daemonOn(ds, o)
		start := time.Now()
		d.proc.Signal(sig)
		_, took := neighMovesFrom(b, l, ip, old, start, 15*time.Second)
		neigh = append(neigh, took)
		first := p.firstReplyAfter(b, old, 15*time.Second)
		firstReply = append(firstReply, first.First.Sub(start))
		time.Sleep(50 * time.Millisecond)
		for _, r := range p.replies() {
			if r.MAC == old && r.Last.After(first.First) {
				overlaps += r.N // at most: the run may have begun before
			}
		}
		d.proc.Wait(5 * time.Second)
		d.start(b) // back as a standby
		time.Sleep(2 * time.Second)
	}
	return neigh, firstReply, overlaps
}

// BenchmarkFailover: crash (SIGKILL) failover at default and at the fastest
// timings, and graceful (SIGTERM) failover, 10 runs each.
func BenchmarkFailover(b *testing.B) {
	cases := []struct {
		name  string
		extra string
		sig   syscall.Signal
	}{
		{"crash-default", "", syscall.SIGKILL},
		{"crash-fastest", "coordination: {renewInterval: 100ms, leaseDuration: 200ms}\n", syscall.SIGKILL},
		{"graceful", "", syscall.SIGTERM},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				neigh, first, overlaps := failoverRuns(b, c.extra, c.sig, 10)
				reportMS(b, neigh, "neigh")
				reportMS(b, first, "first-reply")
				b.ReportMetric(float64(overlaps), "two-MAC-replies")
			}
		})
	}
}

// BenchmarkSteadyState: 3 nodes and 1,000 Services, and 10 nodes and 2,000
// Services, once everything is placed: API writes per node per second (from
// the API server's own counters), and the largest RSS and CPU of the
// daemons, over consecutive 30 s windows of idling; median and p99 (the
// worst window).
func BenchmarkSteadyState(b *testing.B) {
	for _, c := range []struct{ nodes, services, windows int }{{3, 1000, 10}, {10, 2000, 5}} {
		b.Run(fmt.Sprintf("nodes=%d/services=%d", c.nodes, c.services), func(b *testing.B) {
			steadyState(b, c.nodes, c.services, c.windows)
		})
	}
}

func steadyState(b *testing.B, nodes, n, windows int) {
	const window = 30 * time.Second
	for b.Loop() {
		l := lab.Start(b, lab.Options{Nodes: nodes})
		ds := startDaemons(b, l, bigV6Pools, "")
		l.CreateLBServices(ctxBg, "default", n, 10, func(i int) string { return fmt.Sprintf("s%04d", i) },
			lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
		waitClaims(b, l, n)
		// The Events of the creation burst drain at the client's rate limit;
		// steady state starts once a 5 s window has no write but renewals.
		for settle := time.Now().Add(3 * time.Minute); time.Now().Before(settle); {
			before := apiWrites(b, l)
			time.Sleep(5 * time.Second)
			other := 0.0
			for k, v := range apiWrites(b, l) {
				if !strings.HasPrefix(k, "PUT:leases:") {
					other += v - before[k]
				}
			}
			if other == 0 {
				break
			}
		}

		var perNode, rss, anon, cpu, switches []float64
		minGap := window
		for range windows {
			w, g, r, a, c, sw := idleWindow(b, l, ds, window)
			perNode, rss, anon, cpu = append(perNode, w), append(rss, r), append(anon, a), append(cpu, c)
			switches = append(switches, sw)
			minGap = min(minGap, g)
		}
		b.ReportMetric(float64(minGap.Microseconds())/1000, "min-renew-gap-ms")
		for _, m := range []struct {
			name string
			v    []float64
		}{{"writes/s/node", perNode}, {"RSS-MiB", rss}, {"RssAnon-MiB", anon}, {"CPU-%", cpu}, {"ctxsw/s", switches}} {
			slices.Sort(m.v)
			b.ReportMetric(m.v[len(m.v)/2], m.name+"-p50")
			b.ReportMetric(m.v[len(m.v)-1], m.name+"-p99")
		}
		// Extra writes come from changes of a Lease's content: say why.
		for _, d := range ds {
			for line := range strings.Lines(d.proc.Output()) {
				if strings.Contains(line, "stale") || strings.Contains(line, "IPAM leader") {
					b.Logf("%s: %s", d.node.Name, strings.TrimSpace(line))
				}
			}
		}
	}
}

// idleWindow measures one window: l2lbd's API writes per node per second,
// the shortest time between two writes of one member Lease, and the largest
// RSS, RssAnon, CPU share and context switches per second of the daemons at
// its end.
func idleWindow(b *testing.B, l *lab.Lab, ds []*daemon, window time.Duration) (writesPerNode float64, minGap time.Duration, rss, anon, cpu, switches float64) {
	// The API server renews a Lease of its own (apiserver-<id>, every
	// 10 s) in the same namespace; a watch tells whose Lease each write
	// changed, so that only l2lbd's are counted.
	leases := watchLeaseWrites(b, l)
	// A scrape of /metrics takes a while; the counters are read somewhere
	// in it, so the window runs from the middle of one to the middle of the
	// next.
	scrape := func() (map[string]float64, time.Time) {
		start := time.Now()
		w := apiWrites(b, l)
		return w, start.Add(time.Since(start) / 2)
	}
	w0, t0 := scrape()
	cpu0, sw0 := cpuTicks(b, ds), contextSwitches(b, ds)
	time.Sleep(window)
	w1, t1 := scrape()
	cpu1, sw1 := cpuTicks(b, ds), contextSwitches(b, ds)
	byLease := leases()
	elapsed := t1.Sub(t0)
	var writes []string
	total := 0.0
	for k, v := range w1 {
		if d := v - w0[k]; d > 0 {
			writes = append(writes, fmt.Sprintf("%s=%.0f", k, d))
			total += d
		}
	}
	slices.Sort(writes)
	others := 0
	counts := map[string]int{}
	minGap = window
	for name, times := range byLease {
		counts[name] = len(times)
		if !strings.HasPrefix(name, "l2lbd-") {
			others += len(times)
			continue
		}
		// A window's count can be one more than its length in renew
		// intervals (a write at each edge); the gaps cannot.
		for i := 1; i < len(times); i++ {
			minGap = min(minGap, times[i].Sub(times[i-1]))
		}
	}
	b.Logf("writes in %v: %s; Lease writes by name: %v; shortest gap between two writes of a member Lease %v",
		elapsed.Round(time.Millisecond), strings.Join(writes, " "), counts, minGap)
	writesPerNode = (total - float64(others)) / elapsed.Seconds() / float64(len(ds))
	for i, d := range ds {
		rss = max(rss, rssMiB(b, d.proc.PID))
		anon = max(anon, statusMiB(b, d.proc.PID, "RssAnon"))
		cpu = max(cpu, float64(cpu1[i]-cpu0[i])/100/elapsed.Seconds()*100)
		switches = max(switches, float64(sw1[i]-sw0[i])/elapsed.Seconds())
	}
	return writesPerNode, minGap, rss, anon, cpu, switches
}

// watchLeaseWrites records the renewTime of every change to each Lease of
// kube-system from now until the returned function is called. The lab's
// client times requests out after 15 s, so the watch is resumed from the
// last version seen.
func watchLeaseWrites(b testing.TB, l *lab.Lab) func() map[string][]time.Time {
	leases := l.Client.CoordinationV1().Leases(lab.LeaseNamespace)
	list, err := leases.List(ctxBg, metav1.ListOptions{})
	if err != nil {
		b.Fatalf("list Leases: %v", err)
	}
	ctx, cancel := context.WithCancel(ctxBg)
	renewals := map[string][]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// From the list's resourceVersion on: changes only, no initial ADDED.
		rv := list.ResourceVersion
		for ctx.Err() == nil {
			w, err := leases.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
			if err != nil {
				b.Errorf("watch Leases: %v", err)
				return
			}
			for ev := range w.ResultChan() {
				if lease, ok := ev.Object.(*coordinationv1.Lease); ok {
					var at time.Time
					if lease.Spec.RenewTime != nil {
						at = lease.Spec.RenewTime.Time
					}
					renewals[lease.Name] = append(renewals[lease.Name], at)
					rv = lease.ResourceVersion
				}
			}
		}
	}()
	return func() map[string][]time.Time {
		cancel()
		<-done
		return renewals
	}
}

// apiWrites reads apiserver_request_total for writes, by verb and resource.
func apiWrites(b testing.TB, l *lab.Lab) map[string]float64 {
	raw, err := l.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctxBg)
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		verb, resource := label(line, "verb"), label(line, "resource")
		if sub := label(line, "subresource"); sub != "" {
			resource += "/" + sub
		}
		if verb != "POST" && verb != "PUT" && verb != "PATCH" && verb != "DELETE" {
			continue
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		out[verb+":"+resource+":"+label(line, "code")] += v
	}
	return out
}

func label(line, name string) string {
	i := strings.Index(line, name+"=\"")
	if i < 0 {
		return ""
	}
	rest := line[i+len(name)+2:]
	return rest[:strings.Index(rest, "\"")]
}

// cpuTicks reads each daemon's user+system CPU time in clock ticks.
// contextSwitches is each daemon's context switches so far, voluntary and
// not, over all its threads: how often it wakes, which the machine's speed
// moves less than its CPU time.
func contextSwitches(b testing.TB, ds []*daemon) []int {
	var out []int
	for _, d := range ds {
		statuses, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", d.proc.PID))
		if err != nil || len(statuses) == 0 {
			b.Fatalf("threads of l2lbd %d: %v", d.proc.PID, err)
		}
		n := 0
		for _, st := range statuses {
			data, err := os.ReadFile(st)
			if err != nil {
				continue // a thread that ended meanwhile
			}
			for line := range strings.Lines(string(data)) {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					c, _ := strconv.Atoi(strings.TrimSpace(v))
					n += c
				}
			}
		}
		out = append(out, n)
	}
	return out
}

func cpuTicks(b testing.TB, ds []*daemon) []int {
	var out []int
	for _, d := range ds {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.proc.PID))
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(string(data[strings.LastIndex(string(data), ")")+2:]))
		u, _ := strconv.Atoi(f[11])
		s, _ := strconv.Atoi(f[12])
		out = append(out, u+s)
	}
	return out
}
