package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hostState is what a lab may leave behind: namespaces, links and this test
// process's children.
type hostState struct {
	netns, links []string
	children     []string
}

// snapshot takes the host state, leaving out objects of other labs (other
// test processes run labs too, one at a time).
func snapshot(t *testing.T, id string) hostState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	netns, err := listNetns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	links, err := listLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := func(name string) bool {
		return (nameRE.MatchString(name) || bridgeRE.MatchString(name)) && (id == "" || !strings.Contains(name, id))
	}
	netns = slices.DeleteFunc(netns, other)
	links = slices.DeleteFunc(links, other)
	slices.Sort(netns)
	slices.Sort(links)
	return hostState{netns: netns, links: links, children: children(t)}
}

// children lists the processes whose parent is this test process.
func children(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == fmt.Sprint(os.Getpid()) {
			kids = append(kids, e.Name()+" "+s[:i+1])
		}
	}
	slices.Sort(kids)
	return kids
}

// processesMentioning lists processes whose command line contains s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if strings.Contains(string(data), s) {
			found = append(found, e.Name()+" "+strings.ReplaceAll(string(data), "\x00", " "))
		}
	}
	return found
}

func diffState(t *testing.T, before, after hostState) {
	t.Helper()
	if !slices.Equal(before.netns, after.netns) {
		t.Errorf("namespaces after teardown:\n got %v\nwant %v", after.netns, before.netns)
	}
	if !slices.Equal(before.links, after.links) {
		t.Errorf("links after teardown:\n got %v\nwant %v", after.links, before.links)
	}
	if !slices.Equal(before.children, after.children) {
		t.Errorf("child processes after teardown:\n got %v\nwant %v", after.children, before.children)
	}
}

func TestNetwork(t *testing.T) {
	before := snapshot(t, "")
	var id string
	t.Run("up", func(t *testing.T) {
		n := Network(t, 3)
		t.Logf("network of 3 nodes up in %v (after the lock)", time.Since(n.run.locked))
		id = n.run.id
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		if want := "l2b" + id; n.Bridge != want {
			t.Errorf("Bridge = %q, want %q", n.Bridge, want)
		}
		for i, node := range n.Nodes {
			if want := fmt.Sprintf("198.51.100.%d", 11+i); node.IPv4.String() != want {
				t.Errorf("node %d IPv4 = %v, want %v", i, node.IPv4, want)
			}
			if want := fmt.Sprintf("2001:db8:100::%d", 11+i); node.IPv6.String() != want {
				t.Errorf("node %d IPv6 = %v, want %v", i, node.IPv6, want)
			}
			if len(node.Name) > 15 {
				t.Errorf("name %q longer than an interface name may be", node.Name)
			}
			mac, err := n.Client.ARPResolve(ctx, node.IPv4)
			if err != nil || mac.String() != node.MAC.String() {
				t.Errorf("ARPResolve(%v) = %v, %v; want %v", node.IPv4, mac, err, node.MAC)
			}
			mac, err = n.Client.NDPResolve(ctx, node.IPv6)
			if err != nil || mac.String() != node.MAC.String() {
				t.Errorf("NDPResolve(%v) = %v, %v; want %v", node.IPv6, mac, err, node.MAC)
			}
			// ping makes the kernel resolve; the neighbour cache then has it.
			if out, err := n.Client.Exec(ctx, "ping", "-c1", "-W2", node.IPv6.String()); err != nil {
				t.Errorf("ping %v: %v\n%s", node.IPv6, err, out)
			}
			mac, state, err := n.Client.Neigh(ctx, node.IPv6)
			if err != nil || mac.String() != node.MAC.String() || state != "REACHABLE" {
				t.Errorf("Neigh(%v) = %v, %q, %v; want %v REACHABLE", node.IPv6, mac, state, err, node.MAC)
			}
			out, err := node.Exec(ctx, "sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore", "net.ipv4.conf.all.arp_announce", "net.ipv6.conf.eth0.accept_dad")
			if got := strings.Fields(string(out)); err != nil || !slices.Equal(got, []string{"1", "2", "0"}) {
				t.Errorf("node sysctls arp_ignore, arp_announce, accept_dad = %v, %v; want [1 2 0]", got, err)
			}
		}

		// An address on lo of a node is not answered for (strictARP).
		lo := netipMust("198.51.100.240/32")
		if err := n.Nodes[0].AddAddr(ctx, "lo", lo); err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
		if mac, err := n.Client.ARPResolve(short, lo.Addr()); err == nil {
			t.Errorf("ARPResolve(%v on lo) = %v, want no reply", lo.Addr(), mac)
		}
		cancelShort()
		if err := n.Nodes[0].DelAddr(ctx, "lo", lo); err != nil {
			t.Error(err)
		}

		// A node added later is on the segment too.
		extra := n.AddNode(t)
		if mac, err := n.Client.ARPResolve(ctx, extra.IPv4); err != nil || mac.String() != extra.MAC.String() {
			t.Errorf("ARPResolve(added node %v) = %v, %v; want %v", extra.IPv4, mac, err, extra.MAC)
		}

		// Link down keeps the addresses; up again answers again.
		if err := extra.SetLinkDown(ctx, "eth0"); err != nil {
			t.Fatal(err)
		}
		short, cancelShort = context.WithTimeout(ctx, 1500*time.Millisecond)
		if _, err := n.Client.ARPResolve(short, extra.IPv4); err == nil {
			t.Errorf("ARPResolve of a node whose link is down succeeded")
		}
		cancelShort()
		if err := extra.SetLinkUp(ctx, "eth0"); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Client.ARPResolve(ctx, extra.IPv4); err != nil {
			t.Errorf("ARPResolve after link up: %v", err)
		}

		// Do runs in the namespace: a listener there is reachable from the client.
		var ln net.Listener
		err := n.Nodes[1].Do(func() error {
			var err error
			ln, err = net.Listen("tcp", ":8080")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "hello from n1")
		}))
		if body, err := n.Client.Curl(ctx, n.Nodes[1].IPv6, 8080); err != nil || body != "hello from n1" {
			t.Errorf("Curl(n1:8080) = %q, %v; want %q", body, err, "hello from n1")
		}

		// Processes: output captured, Wait reports the exit, leftovers are killed.
		p := n.Nodes[2].Start(t, "sh", "-c", "ip -br addr show dev eth0; exit 3")
		if err := p.Wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("Wait = %v, want exit status 3", err)
		}
		if !strings.Contains(p.Output(), "198.51.100.13/24") {
			t.Errorf("Output = %q, want the node's address", p.Output())
		}
		n.Nodes[2].Start(t, "sleep", "600")
		n.Client.Start(t, "sleep", "600")
	})
	diffState(t, before, snapshot(t, id))
	if ps := processesMentioning(t, "l2lb-"+id); len(ps) > 0 {
		t.Errorf("processes of the run still running: %v", ps)
	}
	if _, err := os.Stat(os.TempDir() + "/l2lb-lab-" + id); !os.IsNotExist(err) {
		t.Errorf("run directory still there: %v", err)
	}
}

func netipMust(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestLab(t *testing.T) {
	before := snapshot(t, "")
	var id string
	t.Run("up", func(t *testing.T) {
		l := Start(t, Options{Nodes: 3})
		id = l.run.id
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()

		t.Log("step: nodes")
		{
			nodes, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range nodes.Items {
				got = append(got, fmt.Sprintf("%s ready=%v %v", n.Name, nodeReady(&n), n.Status.Addresses[:2]))
			}
			var want []string
			for _, n := range l.Nodes {
				want = append(want, fmt.Sprintf("%s ready=true [{InternalIP %v} {InternalIP %v}]", n.Name, n.IPv4, n.IPv6))
			}
			if !slices.Equal(got, want) {
				t.Errorf("Nodes:\n got %q\nwant %q", got, want)
			}
			l.SetNodeReady("node-1", false)
			n, err := l.Client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
			if err != nil || nodeReady(n) {
				t.Errorf("after SetNodeReady(node-1, false): ready=%v, %v", n != nil && nodeReady(n), err)
			}
			l.SetNodeReady("node-1", true)
		}

		t.Log("step: rbac")
		{
			lease := filepath.Join(t.TempDir(), "lease.yaml")
			os.WriteFile(lease, []byte("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: l2lbd-probe\n"), 0o644)
			for _, n := range l.Nodes {
				if out, err := n.Kubectl(ctx, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || string(out) != "system:serviceaccount:l2lb-system:l2lbd" {
					t.Errorf("%s: whoami = %q, %v", n.Name, out, err)
				}
				for _, args := range [][]string{
					{"get", "services", "-A"},
					{"get", "nodes"},
					{"get", "endpointslices", "-A"},
					{"-n", "l2lb-system", "get", "leases"},
				} {
					if out, err := n.Kubectl(ctx, args...); err != nil {
						t.Errorf("%s: kubectl %v: %v\n%s", n.Name, args, err, out)
					}
				}
				for _, c := range []struct {
					args []string
					want string
				}{
					{[]string{"watch", "services"}, "yes"},
					{[]string{"patch", "services", "--subresource=status"}, "yes"},
					{[]string{"update", "services", "--subresource=status"}, "yes"},
					{[]string{"watch", "endpointslices.discovery.k8s.io"}, "yes"},
					{[]string{"watch", "nodes"}, "yes"},
					{[]string{"create", "events"}, "yes"},
					{[]string{"patch", "events.events.k8s.io"}, "yes"},
					{[]string{"-n", "l2lb-system", "delete", "leases"}, "yes"},
					{[]string{"-n", "l2lb-system", "patch", "leases"}, "no"},
					{[]string{"-n", "kube-system", "delete", "leases"}, "no"},
					{[]string{"-n", "kube-system", "create", "leases"}, "no"},
					{[]string{"update", "services"}, "no"},
					{[]string{"delete", "services"}, "no"},
					{[]string{"update", "nodes"}, "no"},
					{[]string{"update", "nodes", "--subresource=status"}, "no"},
					{[]string{"create", "endpointslices.discovery.k8s.io"}, "no"},
					{[]string{"-n", "default", "create", "leases"}, "no"},
					{[]string{"list", "secrets"}, "no"},
					{[]string{"create", "pods"}, "no"},
					{[]string{"create", "serviceaccounts/token"}, "no"},
				} {
					out, _ := n.Kubectl(ctx, append([]string{"auth", "can-i"}, c.args...)...)
					// The answer is the last line, after any warning.
					lines := strings.Split(strings.TrimSpace(string(out)), "\n")
					if got := lines[len(lines)-1]; got != c.want {
						t.Errorf("%s: can-i %v = %q, want %q", n.Name, c.args, got, c.want)
					}
				}
				// Real requests, not only the authorizer's opinion.
				for _, args := range [][]string{
					{"get", "secrets", "-A"},
					{"-n", "default", "run", "probe", "--image=none"},
					{"-n", "default", "create", "-f", lease},
				} {
					if out, err := n.Kubectl(ctx, args...); err == nil || !strings.Contains(string(out), "Forbidden") {
						t.Errorf("%s: kubectl %v = %v, want Forbidden:\n%s", n.Name, args, err, out)
					}
				}
			}
			// Admission: a node writes only its own member Lease.
			n := l.Nodes[0]
			own := filepath.Join(t.TempDir(), "own.yaml")
			os.WriteFile(own, []byte("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: l2lbd-"+n.Name+"\n"), 0o644)
			if out, err := n.Kubectl(ctx, "-n", "l2lb-system", "create", "-f", own); err != nil {
				t.Errorf("create own member Lease: %v\n%s", err, out)
			}
			if out, err := n.Kubectl(ctx, "-n", "l2lb-system", "delete", "lease", "l2lbd-"+n.Name); err != nil {
				t.Errorf("delete own member Lease: %v\n%s", err, out)
			}
			if out, err := n.Kubectl(ctx, "-n", "l2lb-system", "create", "-f", lease); err == nil || !strings.Contains(string(out), "may write only its own member Lease") {
				t.Errorf("create Lease l2lbd-probe = %v, want refused by l2lbd-member-lease:\n%s", err, out)
			}
		}

		t.Log("step: http")
		{
			for _, n := range l.Nodes {
				l.ServeHTTP(n)
			}
			for _, n := range l.Nodes {
				for _, ip := range []netip.Addr{n.IPv4, n.IPv6} {
					if body, err := l.Net.Client.Curl(ctx, ip, 80); err != nil || body != n.Name {
						t.Errorf("curl %v = %q, %v; want %q", ip, body, err, n.Name)
					}
				}
				if mac, err := l.Net.Client.ARPResolve(ctx, n.IPv4); err != nil || mac.String() != n.MAC.String() {
					t.Errorf("ARPResolve(%v) = %v, %v; want %v", n.IPv4, mac, err, n.MAC)
				}
				if mac, err := l.Net.Client.NDPResolve(ctx, n.IPv6); err != nil || mac.String() != n.MAC.String() {
					t.Errorf("NDPResolve(%v) = %v, %v; want %v", n.IPv6, mac, err, n.MAC)
				}
			}
			// A Service IP on lo is served, but nobody answers ARP/NDP for
			// it: that is the daemon's job. A static neighbour entry
			// stands in for it here.
			n := l.Nodes[1]
			for _, ip := range []netip.Addr{netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:100::200")} {
				n.BindOnLo(t, ip)
				short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
				var err error
				if ip.Is4() {
					_, err = l.Net.Client.ARPResolve(short, ip)
				} else {
					_, err = l.Net.Client.NDPResolve(short, ip)
				}
				cancel()
				if err == nil {
					t.Errorf("%v on lo of %s: the kernel answered ARP/NDP for it", ip, n.Name)
				}
				if out, err := l.Net.Client.Exec(ctx, "ip", "neigh", "replace", ip.String(), "lladdr", n.MAC.String(), "dev", "eth0"); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				if body, err := l.Net.Client.Curl(ctx, ip, 80); err != nil || body != n.Name {
					t.Errorf("curl %v (on lo of %s) = %q, %v", ip, n.Name, body, err)
				}
				n.UnbindFromLo(t, ip)
			}
		}

		t.Log("step: services")
		{
			svc := l.CreateLBService(ctx, "demo", "web", WithDualStack(), WithClass("l2lb.dev/layer2"), WithLocalTrafficPolicy())
			if len(svc.Spec.ClusterIPs) != 2 || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				t.Errorf("Service: clusterIPs %v type %v, want two, LoadBalancer", svc.Spec.ClusterIPs, svc.Spec.Type)
			}
			l.SetEndpoints(ctx, svc, "node-0", "node-2")
			l.SetEndpoints(ctx, svc, "node-2")
			eps, err := l.Client.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range eps.Items {
				for _, e := range s.Endpoints {
					got = append(got, fmt.Sprintf("%s %s %s ready=%v", s.AddressType, e.Addresses[0], *e.NodeName, *e.Conditions.Ready))
				}
			}
			want := []string{"IPv4 198.51.100.13 node-2 ready=true", "IPv6 2001:db8:100::13 node-2 ready=true"}
			if !slices.Equal(got, want) {
				t.Errorf("EndpointSlices:\n got %q\nwant %q", got, want)
			}
			// The daemon's identity sees them.
			if out, err := l.Nodes[0].Kubectl(ctx, "-n", "demo", "get", "endpointslices", "-o", "name"); err != nil || strings.Count(string(out), "\n") != 2 {
				t.Errorf("node kubectl get endpointslices = %v\n%s", err, out)
			}
			l.DeleteService(ctx, "demo", "web")
			if left, err := l.Client.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{}); err != nil || len(left.Items) != 0 {
				t.Errorf("after DeleteService: %d EndpointSlices, %v", len(left.Items), err)
			}
		}

		t.Log("step: api stop and start")
		{
			svc := l.CreateLBService(ctx, "default", "kept")
			l.StopAPI()
			if out, err := l.Nodes[0].Kubectl(ctx, "get", "services"); err == nil {
				t.Errorf("kubectl with the API server stopped succeeded:\n%s", out)
			}
			start := time.Now()
			l.StartAPI()
			t.Logf("API server restarted in %v", time.Since(start))
			got, err := l.Client.CoreV1().Services("default").Get(ctx, "kept", metav1.GetOptions{})
			if err != nil || got.UID != svc.UID {
				t.Errorf("Service after restart: %v (uid %v, want %v)", err, got.UID, svc.UID)
			}
			if out, err := l.Nodes[0].Kubectl(ctx, "get", "service", "kept"); err != nil {
				t.Errorf("node kubectl after restart: %v\n%s", err, out)
			}
		}

		t.Log("step: cut off")
		{
			cut := l.Nodes[1]
			l.CutOff(cut)
			short, cancel := context.WithTimeout(ctx, 10*time.Second)
			start := time.Now()
			out, err := cut.Kubectl(short, "get", "nodes")
			cancel()
			if err == nil {
				t.Errorf("cut-off %s reached the API:\n%s", cut.Name, out)
			} else {
				t.Logf("cut-off node fails in %v: %s", time.Since(start), bytesTail(out))
			}
			for _, n := range l.Nodes {
				if n != cut {
					if out, err := n.Kubectl(ctx, "get", "nodes"); err != nil {
						t.Errorf("%s while %s is cut off: %v\n%s", n.Name, cut.Name, err, out)
					}
				}
			}
			// Still on the segment.
			if body, err := l.Net.Client.Curl(ctx, cut.IPv4, 80); err != nil || body != cut.Name {
				t.Errorf("curl cut-off node = %q, %v", body, err)
			}
			l.Restore(cut)
			if out, err := cut.Kubectl(ctx, "get", "nodes"); err != nil {
				t.Errorf("%s after Restore: %v\n%s", cut.Name, err, out)
			}
		}

		t.Log("step: add node")
		{
			n := l.AddNode(t)
			if n.Name != "node-3" || n.IPv4.String() != "198.51.100.14" {
				t.Errorf("AddNode = %s %v, want node-3 198.51.100.14", n.Name, n.IPv4)
			}
			if out, err := n.Kubectl(ctx, "get", "node", n.Name); err != nil {
				t.Errorf("new node kubectl: %v\n%s", err, out)
			}
		}

		// Processes the test starts in a node stay until the end and are
		// killed there.
		l.Nodes[0].Start(t, "sleep", "600")
	})
	diffState(t, before, snapshot(t, id))
	if ps := processesMentioning(t, "l2lb-lab-"+id); len(ps) > 0 {
		t.Errorf("processes of the run still running: %v", ps)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func bytesTail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[len(s)-200:]
	}
	return s
}

// TestKubeconfigRecipe runs the first shell block of examples/kubeconfig.md
// as written, with the lab's admin kubeconfig, and uses its result from a
// node namespace.
func TestKubeconfigRecipe(t *testing.T) {
	l := Start(t, Options{Nodes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kubeconfig, err := l.KubeconfigRecipe(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := l.Nodes[0]
	if n.Kubeconfig, err = RecipeKubeconfigFor(kubeconfig, n.Name); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Kubectl(ctx, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.extra.authentication\\.kubernetes\\.io/node-name}"); err != nil || string(out) != `system:serviceaccount:l2lb-system:l2lbd ["`+n.Name+`"]` {
		t.Errorf("whoami with the recipe's kubeconfig = %q, %v", out, err)
	}
	if out, err := n.Kubectl(ctx, "get", "services", "-A"); err != nil {
		t.Errorf("get services with the recipe's kubeconfig: %v\n%s", err, out)
	}
	if out, err := n.Kubectl(ctx, "get", "secrets", "-A"); err == nil || !strings.Contains(string(out), "Forbidden") {
		t.Errorf("get secrets with the recipe's kubeconfig = %v, want Forbidden\n%s", err, out)
	}
}

// TestBringUpTime measures Start with a cached API server, from the moment
// it holds the machine lock (waiting for another lab is not bring-up), and
// the teardown: set L2LB_LAB_BENCH to the number of runs (BENCHMARKS.md
// uses 5).
func TestBringUpTime(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("L2LB_LAB_BENCH"))
	if runs <= 0 {
		t.Skip("set L2LB_LAB_BENCH=5 to measure lab bring-up (BENCHMARKS.md)")
	}
	var up, down []time.Duration
	for i := range runs {
		var start time.Time
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			l := Start(t, Options{Nodes: 3})
			up = append(up, time.Since(l.run.locked))
			start = time.Now()
		})
		down = append(down, time.Since(start))
	}
	t.Logf("Start(3 nodes): %v, median %v", up, median(up))
	t.Logf("teardown: %v, median %v", down, median(down))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
