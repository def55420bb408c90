package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/test/lab"
)

var (
	arpingReplyRE = regexp.MustCompile(`reply from \S+ \[([0-9A-Fa-f:]+)\]`)
	ndiscTargetRE = regexp.MustCompile(`Target link-layer address: ([0-9A-Fa-f:]+)`)
)

// answering asks for ip from the client namespace and returns every distinct
// MAC that answers: none, one, or (split brain) several.
func answering(t testing.TB, l *lab.Lab, ip netip.Addr) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxBg, 5*time.Second)
	defer cancel()
	var out []byte
	var re *regexp.Regexp
	if ip.Is4() {
		out, _ = l.Net.Client.Exec(ctx, "arping", "-c", "2", "-w", "2", "-I", l.Net.Client.Link, ip.String())
		re = arpingReplyRE
	} else {
		out, _ = l.Net.Client.Exec(ctx, "ndisc6", "-m", "-r", "2", "-w", "700", ip.String(), l.Net.Client.Link)
		re = ndiscTargetRE
	}
	var macs []string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		mac := strings.ToLower(m[1])
		if !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	slices.Sort(macs)
	return macs
}

// nodeByMAC names the node whose MAC mac is.
func nodeByMAC(l *lab.Lab, mac string) *lab.Node {
	for _, n := range l.Nodes {
		if strings.EqualFold(n.MAC.String(), mac) {
			return n
		}
	}
	return nil
}

// owner waits until exactly one node answers for ip and returns it.
func owner(t testing.TB, l *lab.Lab, ip netip.Addr) *lab.Node {
	t.Helper()
	var macs []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		macs = answering(t, l, ip)
		if len(macs) == 1 {
			if n := nodeByMAC(l, macs[0]); n != nil {
				return n
			}
			t.Fatalf("%s answered by unknown MAC %s", ip, macs[0])
		}
		if len(macs) > 1 {
			t.Fatalf("%s answered by several MACs: %v", ip, macs)
		}
	}
	t.Fatalf("nobody answers for %s within 20s", ip)
	return nil
}

// standIn runs the kube-proxy stand-in on every node for ips.
func standIn(t testing.TB, l *lab.Lab, ips ...netip.Addr) {
	for _, n := range l.Nodes {
		n.BindOnLo(t, ips...)
	}
}

// placementLab starts a lab with the kube-proxy stand-in on every node and
// l2lbd everywhere.
func placementLab(t *testing.T, nodes int, extra string) (*lab.Lab, []*daemon) {
	l := lab.Start(t, lab.Options{Nodes: nodes})
	for _, n := range l.Nodes {
		l.ServeHTTP(n)
	}
	ds := startDaemons(t, l, defaultPools, extra)
	// Addresses placed before every node has joined all go to the nodes
	// present (and stay, by design); tests want the full cluster.
	lab.WaitFor(t, 20*time.Second, "every node's member Lease", func(ctx context.Context) bool {
		for _, n := range l.Nodes {
			if _, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctx, "l2lbd-"+n.Name, metav1.GetOptions{}); err != nil {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // each has seen its own first renewal come back
	return l, ds
}

func daemonOn(ds []*daemon, n *lab.Node) *daemon {
	for _, d := range ds {
		if d.node == n {
			return d
		}
	}
	return nil
}

// neighMAC waits until the client's neighbour entry for ip holds a MAC other
// than not, without the client asking (gratuitous ARP / unsolicited NA), and
// returns it with the time it took.
func neighMovesFrom(t testing.TB, l *lab.Lab, ip netip.Addr, not string, start time.Time, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		mac, _, err := l.Net.Client.Neigh(ctxBg, ip)
		if err == nil && mac != nil && !strings.EqualFold(mac.String(), not) {
			return strings.ToLower(mac.String()), time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("client's neighbour entry for %s still %s after %v", ip, not, timeout)
	return "", 0
}

// populateNeigh makes the client's kernel resolve ip (ping) so that a
// neighbour entry exists for announcements to update.
func populateNeigh(t testing.TB, l *lab.Lab, ip netip.Addr) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxBg, 5*time.Second)
	defer cancel()
	if out, err := l.Net.Client.Exec(ctx, "ping", "-c", "1", "-W", "2", ip.String()); err != nil {
		t.Fatalf("ping %s: %v: %s", ip, err, out)
	}
	mac, state, err := l.Net.Client.Neigh(ctx, ip)
	if err != nil || mac == nil {
		t.Fatalf("no neighbour entry for %s after ping: %v %s", ip, err, state)
	}
	return strings.ToLower(mac.String())
}

// metricsOn is the metrics address of a node's daemon, on its own loopback.
const metricsOn = "metrics: {address: \"127.0.0.1:9473\"}\n"

// scrapeSeries returns the value of one series in node's metrics.
func scrapeSeries(t testing.TB, node *lab.Node, series string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxBg, 10*time.Second)
	defer cancel()
	out, err := node.Exec(ctx, "curl", "-sS", "--noproxy", "*", "http://127.0.0.1:9473/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v: %s", node.Name, err, out)
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics of %s: %q: %v", node.Name, line, err)
			}
			return f
		}
	}
	t.Fatalf("metrics of %s lack %s:\n%s", node.Name, series, out)
	return 0
}

// TestAnswerAndFailover: one node answers each address (ARP and NDP) and
// serves curl; SIGKILL of the owner moves the address by announcement, and
// the new owner counts the takeover by its reason; a SIGTERM moves it
// faster.
func TestAnswerAndFailover(t *testing.T) {
	l, ds := placementLab(t, 3, metricsOn)
	l.CreateLBService(ctxBg, "default", "web", lab.WithDualStack())
	ips := waitIngress(t, l, "default", "web", 2)
	standIn(t, l, ips...)
	v4, v6 := ips[0], ips[1]

	for _, ip := range ips {
		o := owner(t, l, ip)
		body, err := l.Net.Client.Curl(ctxBg, ip, 80)
		if err != nil || body != o.Name {
			t.Errorf("curl %s: got %q (%v), want the owner %s", ip, body, err, o.Name)
		}
	}

	// Crash: the kernel's neighbour entry follows the new owner's
	// announcement without the client asking.
	o := owner(t, l, v4)
	old := populateNeigh(t, l, v4)
	start := time.Now()
	daemonOn(ds, o).proc.Signal(syscall.SIGKILL)
	mac, took := neighMovesFrom(t, l, v4, old, start, 10*time.Second)
	t.Logf("crash failover of %s: %s -> %s in %v", v4, o.Name, nodeByMAC(l, mac).Name, took)
	if took > 5*time.Second {
		t.Errorf("crash failover took %v", took)
	}
	if macs := answering(t, l, v4); len(macs) != 1 || macs[0] != mac {
		t.Errorf("after failover %s is answered by %v, want only %s", v4, macs, mac)
	}
	heir := nodeByMAC(l, mac)
	if got := scrapeSeries(t, heir, `l2lbd_takeovers_total{reason="peer_expired"}`); got < 1 {
		t.Errorf("%s counts %v takeovers from an expired peer, want at least 1", heir.Name, got)
	}
	if got := scrapeSeries(t, heir, "l2lbd_decision_duration_seconds_count"); got < 1 {
		t.Errorf("%s timed %v decisions", heir.Name, got)
	}

	// Graceful: SIGTERM hands over through the deleted Lease.
	o6 := owner(t, l, v6)
	ctx, cancel := context.WithTimeout(ctxBg, 5*time.Second)
	defer cancel()
	l.Net.Client.NDPResolve(ctx, v6)
	l.Net.Client.Exec(ctx, "ping", "-6", "-c", "1", "-W", "2", v6.String())
	old6, _, _ := l.Net.Client.Neigh(ctxBg, v6)
	if old6 == nil || !strings.EqualFold(old6.String(), o6.MAC.String()) {
		t.Fatalf("client's entry for %s is %v, want owner %s's MAC", v6, old6, o6.Name)
	}
	start = time.Now()
	daemonOn(ds, o6).proc.Signal(syscall.SIGTERM)
	mac6, took6 := neighMovesFrom(t, l, v6, strings.ToLower(old6.String()), start, 10*time.Second)
	t.Logf("graceful failover of %s: %s -> %s in %v", v6, o6.Name, nodeByMAC(l, mac6).Name, took6)
	if took6 > 2*time.Second {
		t.Errorf("graceful failover took %v", took6)
	}
	if err := daemonOn(ds, o6).proc.Wait(5 * time.Second); err != nil {
		t.Errorf("SIGTERM exit: %v", err)
	}
}

// TestEligibility: Local policy follows endpoints; the exclude label and
// NotReady move an address away.
func TestEligibility(t *testing.T) {
	l, _ := placementLab(t, 3, "")
	svc := l.CreateLBService(ctxBg, "default", "local", lab.WithLocalTrafficPolicy())
	ip := waitIngress(t, l, "default", "local", 1)[0]
	standIn(t, l, ip)
	for _, want := range []string{"node-1", "node-2", "node-0"} {
		l.SetEndpoints(ctxBg, svc, want)
		waitOwner(t, l, ip, want)
	}

	l.CreateLBService(ctxBg, "default", "cluster")
	ip2 := waitIngress(t, l, "default", "cluster", 1)[0]
	standIn(t, l, ip2)
	first := owner(t, l, ip2)
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:""}}}`, "node.kubernetes.io/exclude-from-external-load-balancers")
	if _, err := l.Client.CoreV1().Nodes().Patch(ctxBg, first.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	second := waitOwnerNot(t, l, ip2, first.Name)
	l.SetNodeReady(second.Name, false)
	third := waitOwnerNot(t, l, ip2, second.Name)
	if third.Name == first.Name {
		t.Errorf("%s went back to the excluded node %s", ip2, first.Name)
	}
}

func waitOwner(t testing.TB, l *lab.Lab, ip netip.Addr, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if macs := answering(t, l, ip); len(macs) == 1 && nodeByMAC(l, macs[0]).Name == want {
			return
		}
	}
	t.Fatalf("%s not answered by %s alone within 20s (now %v)", ip, want, answering(t, l, ip))
}

func waitOwnerNot(t testing.TB, l *lab.Lab, ip netip.Addr, not string) *lab.Node {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if macs := answering(t, l, ip); len(macs) == 1 && nodeByMAC(l, macs[0]).Name != not {
			return nodeByMAC(l, macs[0])
		}
	}
	t.Fatalf("%s still answered by %s (or several) after 20s: %v", ip, not, answering(t, l, ip))
	return nil
}

// claims reads every member Lease's claims: address -> node.
func claims(t testing.TB, l *lab.Lab) map[netip.Addr]string {
	t.Helper()
	list, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).List(ctxBg, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]string{}
	for _, lease := range list.Items {
		node, m, ok := kube.ParseMember(&lease)
		if !ok {
			continue
		}
		for _, ip := range m.Claims {
			if other, dup := out[ip]; dup {
				t.Fatalf("%s claimed by %s and %s", ip, other, node)
			}
			out[ip] = node
		}
	}
	return out
}

// waitClaims waits until n addresses are claimed and returns the claims.
func waitClaims(t testing.TB, l *lab.Lab, n int) map[netip.Addr]string {
	t.Helper()
	var got map[netip.Addr]string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if got = claims(t, l); len(got) == n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d addresses claimed, want %d: %v", len(got), n, got)
	return nil
}

// TestSpreadAndStability: many Services spread over the nodes, none holding
// more than its fair share; adding a fourth node (fair share still 3) and
// restarting a former owner and a standby move nothing.
func TestSpreadAndStability(t *testing.T) {
	l, ds := placementLab(t, 3, "")
	const n = 8 // the IPv4 addresses of pool lan
	for i := range n {
		l.CreateLBService(ctxBg, "default", fmt.Sprintf("s%d", i))
	}
	// Rendezvous may give one node more than its fair share, ⌈1.1 · 8 / 3⌉
	// = 3: it hands the excess over, and then nothing moves.
	waitClaims(t, l, n)
	before := waitSpread(t, l, n, 3, 30*time.Second)
	perNode := map[string]int{}
	for _, node := range before {
		perNode[node]++
	}
	if len(perNode) < 2 {
		t.Errorf("%d addresses all on one node: %v", n, perNode)
	}
	t.Logf("spread of %d addresses: %v", n, perNode)

	// A fourth node joins.
	n3 := l.AddNode(t)
	l.ServeHTTP(n3)
	d3 := &daemon{node: n3, config: writeConfig(t, n3, defaultPools, "")}
	d3.start(t)
	lab.WaitFor(t, 20*time.Second, "node-3's member Lease", func(ctx context.Context) bool {
		_, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctx, "l2lbd-"+n3.Name, metav1.GetOptions{})
		return err == nil
	})
	time.Sleep(3 * time.Second) // several renew intervals: any move would have happened
	if after := claims(t, l); !mapsEqual(after, before) {
		t.Errorf("adding a node moved addresses:\nbefore %v\nafter  %v", before, after)
	}

	// A former owner and a standby (the new node) restart: nothing moves.
	var formerOwner *daemon
	for _, d := range ds {
		if perNode[d.node.Name] > 0 {
			formerOwner = d
			break
		}
	}
	for _, d := range []*daemon{formerOwner, d3} {
		d.proc.Signal(syscall.SIGKILL)
		d.proc.Wait(5 * time.Second)
		d.start(t)
	}
	time.Sleep(2 * time.Second)
	if after := claims(t, l); !mapsEqual(after, before) {
		t.Errorf("restarting a former owner and a standby moved addresses:\nbefore %v\nafter  %v", before, after)
	}
}

func mapsEqual(a, b map[netip.Addr]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAPIOutage: with the API server stopped for 60 s every address keeps
// being answered by its owner, and the outage moves nothing when it returns.
func TestAPIOutage(t *testing.T) {
	// Without rebalancing: the Service created after the outage may make
	// a node hold more than its fair share, and the move that follows is
	// balance, not the outage.
	l, _ := placementLab(t, 3, "placement: {rebalance: false}\n")
	for i := range 4 {
		l.CreateLBService(ctxBg, "default", fmt.Sprintf("s%d", i))
	}
	before := waitClaims(t, l, 4)
	macs := map[netip.Addr]string{}
	for ip := range before {
		macs[ip] = strings.ToLower(owner(t, l, ip).MAC.String())
	}

	l.StopAPI()
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		for ip, mac := range macs {
			if got := answering(t, l, ip); len(got) != 1 || got[0] != mac {
				t.Fatalf("during the outage %s is answered by %v, want %s", ip, got, mac)
			}
		}
		time.Sleep(2 * time.Second)
	}
	l.StartAPI()

	l.CreateLBService(ctxBg, "default", "after-outage")
	waitClaims(t, l, 5)
	after := claims(t, l)
	for ip, node := range before {
		if after[ip] != node {
			t.Errorf("%s moved from %s to %s after the outage", ip, node, after[ip])
		}
	}
	for ip, mac := range macs {
		if got := answering(t, l, ip); len(got) != 1 || got[0] != mac {
			t.Errorf("after the outage %s is answered by %v, want %s", ip, got, mac)
		}
	}
}

// TestCutOffNode: a node cut off from the API server loses its addresses to
// a peer, and stops answering once it sees the peer's announcement.
func TestCutOffNode(t *testing.T) {
	l, _ := placementLab(t, 3, "")
	l.CreateLBService(ctxBg, "default", "web")
	ip := waitIngress(t, l, "default", "web", 1)[0]
	standIn(t, l, ip)
	o := owner(t, l, ip)
	old := populateNeigh(t, l, ip)
	start := time.Now()
	l.CutOff(o)
	mac, took := neighMovesFrom(t, l, ip, old, start, 15*time.Second)
	t.Logf("cut-off failover %s -> %s in %v", o.Name, nodeByMAC(l, mac).Name, took)
	// The cut-off node yields: only the new owner answers.
	waitOwner(t, l, ip, nodeByMAC(l, mac).Name)
	if body, err := l.Net.Client.Curl(ctxBg, ip, 80); err != nil || body != nodeByMAC(l, mac).Name {
		t.Errorf("curl after cut-off: %q %v", body, err)
	}

	// Back online, the node takes nothing back.
	l.Restore(o)
	time.Sleep(4 * time.Second)
	if got := owner(t, l, ip); got.Name != nodeByMAC(l, mac).Name {
		t.Errorf("after restore %s went back to %s", ip, got.Name)
	}
}

// TestSimultaneousStart: daemons that start together, at the fastest
// timings, with a Service created at once, agree on one owner from the
// first reply on: a prober asking every 2 ms never hears two MACs.
func TestSimultaneousStart(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 3})
	p := startProber(t, l, 2*time.Millisecond)
	ip := netip.MustParseAddr("198.51.100.200")
	p.watch(ip)
	start := time.Now()
	startDaemons(t, l, defaultPools, "coordination: {renewInterval: 100ms, leaseDuration: 200ms}\n")
	l.CreateLBService(ctxBg, "default", "web", lab.WithAnnotation("l2lb.dev/ips", ip.String()))
	first := p.firstReplyAfter(t, "", 20*time.Second)
	time.Sleep(3 * time.Second)
	var macs []string
	replies := 0
	for _, r := range p.replies() {
		replies += r.N
		if !slices.Contains(macs, r.MAC) {
			macs = append(macs, r.MAC)
		}
	}
	t.Logf("first reply %v after the daemons started; %d replies from %v", first.First.Sub(start).Round(time.Millisecond), replies, macs)
	if len(macs) != 1 {
		t.Errorf("%s answered by %v after a simultaneous start, want one MAC", ip, macs)
	}
}
