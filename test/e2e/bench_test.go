package e2e

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	l2lb "github.com/l2lb/l2lb/daemon"
	"github.com/l2lb/l2lb/daemon/kube"
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
		startDaemons(b, l, bigV6Pools, "")
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
		reportMS(b, lat, "")
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

// BenchmarkColdStart5000: 5,000 Services exist before any daemon runs; time
// until every one has an address (IPv6, for want of documentation IPv4
// space), and each daemon's RSS afterwards. Progress is watched, not polled:
// listing 5,000 Services every 100 ms would cost the API server more CPU than
// the daemons' writes do, on the same two cores. It also reports how many
// requests the API server refused with 429 (its own overload protection) and
// the CPU time the daemons and the API server with etcd used meanwhile: when
// they add up to the machine's cores times the elapsed time, CPU is the
// limit, not a rate limit.
//
// The reference, measured in the same run before the daemons start: a bare
// client writing the same 5,000 status patches, as many in flight as the
// IPAM leader keeps, with nothing else running. It is what this machine's
// API server and etcd can do; what l2lbd takes beyond it is l2lbd's cost
// (its watches, Leases, Events and announcements, on the same two cores).
func BenchmarkColdStart5000(b *testing.B) {
	const n = 5000
	for b.Loop() {
		l := lab.Start(b, lab.Options{Nodes: 3})
		createV6Services(l, n)
		reference, referenceCPU := statusWritesAlone(b, l, n)
		b.ReportMetric(reference.Seconds(), "s-reference")
		b.ReportMetric(referenceCPU, "reference-apiserver+etcd-cpu-s")
		// Not l.Client: its request timeout would end the watch.
		cfg, err := clientcmd.BuildConfigFromFlags("", l.AdminKubeconfig)
		if err != nil {
			b.Fatal(err)
		}
		cfg.ContentType = "application/vnd.kubernetes.protobuf" // as controllers watch
		watcher := kubernetes.NewForConfigOrDie(cfg)
		services := watcher.CoreV1().Services("default")
		allocated := map[string]bool{}
		// listWatch lists what is allocated so far and watches from there.
		listWatch := func() watch.Interface {
			list, err := services.List(ctxBg, metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range list.Items {
				if len(s.Status.LoadBalancer.Ingress) > 0 {
					allocated[s.Name] = true
				}
			}
			w, err := services.Watch(ctxBg, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
			if err != nil {
				b.Fatal(err)
			}
			return w
		}
		w := listWatch()
		renewals := watchRenewals(b, watcher)
		rejected := apiserverRejected(b, l)
		writes0 := apiWrites(b, l)
		server0 := serverCPU(b)
		start := time.Now()
		ds := startDaemons(b, l, bigV6Pools, "")
		var first, last, stall time.Duration
		perSecond := map[int]int{}
		timeout := time.After(5 * time.Minute)
		for len(allocated) < n {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					w = listWatch() // the API server ended the watch
					continue
				}
				if s, ok := ev.Object.(*corev1.Service); ok && len(s.Status.LoadBalancer.Ingress) > 0 && !allocated[s.Name] {
					allocated[s.Name] = true
					at := time.Since(start)
					if first == 0 {
						first = at
					} else {
						stall = max(stall, at-last)
					}
					last = at
					perSecond[int(at.Seconds())]++
				}
			case <-timeout:
				b.Fatalf("only %d of %d allocated after 5 minutes", len(allocated), n)
			}
		}
		w.Stop()
		all := time.Since(start)
		b.ReportMetric(all.Seconds(), "s-to-allocate-all")
		b.ReportMetric(all.Seconds()/reference.Seconds(), "x-reference")
		b.ReportMetric(first.Seconds(), "s-to-first")
		b.ReportMetric(stall.Seconds(), "s-longest-stall")
		b.ReportMetric(apiserverRejected(b, l)-rejected, "apiserver-429s")
		late, worst := renewals()
		b.ReportMetric(worst.Seconds(), "s-slowest-renewal")
		b.ReportMetric(float64(late), "renewals-over-1s")
		rate := make([]string, 0, len(perSecond))
		for sec := range int(all.Seconds()) + 1 {
			rate = append(rate, strconv.Itoa(perSecond[sec]))
		}
		b.Logf("addresses allocated in each second: %s", strings.Join(rate, " "))
		for _, d := range ds {
			for line := range strings.Lines(d.proc.Output()) {
				if strings.Contains(line, "stale") || strings.Contains(line, "IPAM leader") || strings.Contains(line, "informers") || strings.Contains(line, "level=WARN") {
					b.Logf("%s: %s", d.node.Name, strings.TrimSpace(line))
				}
			}
		}
		// What the API server was asked to write meanwhile: the status
		// patches are the work, the rest is what the daemons add to it.
		var writes []string
		for k, v := range apiWrites(b, l) {
			if d := v - writes0[k]; d > 0 {
				writes = append(writes, fmt.Sprintf("%s=%.0f", k, d))
			}
		}
		slices.Sort(writes)
		b.Logf("API writes until all were allocated: %s", strings.Join(writes, " "))
		// The lab shares two cores between the API server, etcd and the
		// daemons: where the time went says what limits the figure.
		var daemons float64
		for _, d := range ds {
			daemons += cpuSeconds(b, d.proc.PID)
		}
		b.ReportMetric(daemons, "daemons-cpu-s")
		b.ReportMetric(serverCPU(b)-server0, "apiserver+etcd-cpu-s")
		time.Sleep(5 * time.Second) // settle: informer resync and GC
		rss, anon := maxMemory(b, ds)
		b.ReportMetric(rss, "max-RSS-MiB")
		b.ReportMetric(anon, "max-RssAnon-MiB")
	}
}

// watchRenewals watches the member Leases and measures how long each
// renewal took from its renewTime (set by the daemon when it sends it) to
// arriving here, through the API server and a watch as the daemons' own
// informers see it. A daemon takes its view for stale when its renewals do
// not come back within two thirds of a lease duration. The returned func
// stops the watch and returns how many took over a second, and the slowest.
func watchRenewals(b *testing.B, client kubernetes.Interface) func() (int, time.Duration) {
	w, err := client.CoordinationV1().Leases(lab.LeaseNamespace).Watch(ctxBg, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var late int
	var worst time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if lease, ok := ev.Object.(*coordinationv1.Lease); ok && ev.Type == watch.Modified && lease.Spec.RenewTime != nil {
				took := time.Since(lease.Spec.RenewTime.Time)
				worst = max(worst, took)
				if took > time.Second {
					late++
				}
			}
		}
	}()
	return func() (int, time.Duration) {
		w.Stop()
		<-done
		return late, worst
	}
}

// statusWritesAlone times a bare client setting the status of the n
// LoadBalancer Services of namespace default as the IPAM leader does (kube.SetIngress,
// l2lb.StatusWriters in flight, addresses outside the daemons' pool), then
// clears them again, untimed, for the daemons to allocate. It returns the
// time the writes took and the CPU the API server and etcd spent on them.
func statusWritesAlone(b *testing.B, l *lab.Lab, n int) (time.Duration, float64) {
	client, err := kube.Connect(ctxBg, l.AdminKubeconfig, "reference", 0, 0, time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	writeAll := func(ips func(i int) []netip.Addr) (time.Duration, float64) {
		list, err := l.Client.CoreV1().Services("default").List(ctxBg, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		// Not the API server's own Service, "kubernetes".
		svcs := slices.DeleteFunc(list.Items, func(s corev1.Service) bool { return s.Spec.Type != corev1.ServiceTypeLoadBalancer })
		if len(svcs) != n {
			b.Fatalf("%d Services of type LoadBalancer, want %d", len(svcs), n)
		}
		cpu0, start := serverCPU(b), time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, l2lb.StatusWriters)
		for w := range l2lb.StatusWriters {
			wg.Go(func() {
				for i := w; i < n; i += l2lb.StatusWriters {
					if err := kube.SetIngress(ctxBg, client, &svcs[i], ips(i)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		return time.Since(start), serverCPU(b) - cpu0
	}
	took, cpu := writeAll(func(i int) []netip.Addr {
		a := netip.MustParseAddr("2001:db8:100::2:0").As16()
		a[14], a[15] = byte(i>>8), byte(i)
		return []netip.Addr{netip.AddrFrom16(a)}
	})
	writeAll(func(int) []netip.Addr { return nil })
	return took, cpu
}

// apiserverRejected returns how many requests the API server has answered
// with 429 Too Many Requests since it started, from its own metrics.
func apiserverRejected(b *testing.B, l *lab.Lab) float64 {
	data, err := l.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctxBg)
	if err != nil {
		b.Fatalf("API server metrics: %v", err)
	}
	var sum float64
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "apiserver_request_total{") && strings.Contains(line, `code="429"`) {
			if i := strings.LastIndexByte(line, ' '); i > 0 {
				v, err := strconv.ParseFloat(line[i+1:], 64)
				if err != nil {
					b.Fatalf("API server metrics: %q: %v", line, err)
				}
				sum += v
			}
		}
	}
	return sum
}

// rssMiB reads a process's resident set size.
// bigV6Pools is the config of the benchmarks with 5,000 Services: one pool
// of 65,536 IPv6 addresses (no documentation IPv4 range is that large).
const bigV6Pools = "pools:\n  - name: big\n    addresses: [\"2001:db8:100::1:0/112\"]\n"

// createV6Services creates n single-stack IPv6 LoadBalancer Services,
// svc-0000 and on, in namespace default.
func createV6Services(l *lab.Lab, n int) {
	l.CreateLBServices(ctxBg, "default", n, 20, func(i int) string { return fmt.Sprintf("svc-%04d", i) },
		lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol), noNodePorts)
}

// maxMemory is the largest RSS and RssAnon of the daemons, in MiB.
func maxMemory(b *testing.B, ds []*daemon) (rss, anon float64) {
	for _, d := range ds {
		rss = max(rss, rssMiB(b, d.proc.PID))
		anon = max(anon, statusMiB(b, d.proc.PID, "RssAnon"))
	}
	return rss, anon
}

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

// cpuSeconds returns the user and system CPU time a process has used.
func cpuSeconds(b *testing.B, pid int) float64 {
	sec, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return sec
}

// serverCPU returns the CPU time used by every kube-apiserver and etcd on
// the machine: the lab's, as only one lab runs at a time.
func serverCPU(b *testing.B) float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if c := strings.TrimSpace(string(comm)); err == nil && (c == "kube-apiserver" || c == "etcd") {
			sec, _ := procCPU(pid) // 0 if it exited meanwhile
			sum += sec
		}
	}
	return sum
}

func procCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces: state is
	// the first, utime and stime the 12th and 13th.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.Atoi(f[11])
	stime, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	return float64(utime+stime) / 100, nil // in USER_HZ
}
