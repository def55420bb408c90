package netio

// Real tests: announcers in network namespaces of the lab (test/lab), real
// clients (iputils arping and ping, ndisc6, the kernel's neighbour cache).
// They need root and the lab's tools; without them lab.Network fails the
// test saying what is missing.

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
)

var (
	svc4     = netip.MustParseAddr("198.51.100.200")
	svc6     = netip.MustParseAddr("2001:db8:100::200")
	unowned4 = netip.MustParseAddr("198.51.100.201")
	unowned6 = netip.MustParseAddr("2001:db8:100::201")
)

// runIn runs an Announcer inside ns until the test ends. Run is called on a
// thread switched into the namespace and opens every socket there; its
// goroutines use those sockets from any thread.
func runIn(t *testing.T, ns *lab.NS, opts Options) *Announcer {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("ns", ns.Name)
	a := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.Do(func() error { return a.Run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run in %s: %v", ns.Name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run in %s did not return within 10s of cancel", ns.Name)
		}
	})
	return a
}

// announced waits until a has sent at least n announcements of each family
// on eth0, which it does right after opening its sockets.
func announced(t *testing.T, a *Announcer, n uint64) {
	t.Helper()
	lab.WaitFor(t, 5*time.Second, "announcements on eth0", func(context.Context) bool {
		s := a.Stats()["eth0"]
		return s.IPv4.Announcements >= n && s.IPv6.Announcements >= n
	})
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func sameMAC(a, b net.HardwareAddr) bool { return a.String() == b.String() }

func ping(ctx context.Context, c *lab.NS, ip netip.Addr) error {
	_, err := c.Exec(ctx, "ping", "-c1", "-W2", "-I", c.Link, ip.String())
	return err
}

func TestLabResolve(t *testing.T) {
	n := lab.Network(t, 1)
	node, client := n.Nodes[0], n.Client
	node.BindOnLo(t, svc4, svc6)
	a := runIn(t, node, Options{AnnounceCount: 1})
	a.SetDesired(map[netip.Addr]string{svc4: "eth0", svc6: "eth0"})
	announced(t, a, 1)

	t.Run("arping", func(t *testing.T) {
		mac, err := client.ARPResolve(ctxFor(t, 3*time.Second), svc4)
		if err != nil || !sameMAC(mac, node.MAC) {
			t.Errorf("arping %v = %v, %v; want %v", svc4, mac, err, node.MAC)
		}
	})
	t.Run("ndisc6", func(t *testing.T) {
		mac, err := client.NDPResolve(ctxFor(t, 3*time.Second), svc6)
		if err != nil || !sameMAC(mac, node.MAC) {
			t.Errorf("ndisc6 %v = %v, %v; want %v", svc6, mac, err, node.MAC)
		}
	})
	for _, ip := range []netip.Addr{svc4, svc6} {
		t.Run("kernel "+ip.String(), func(t *testing.T) {
			if err := ping(ctxFor(t, 5*time.Second), client, ip); err != nil {
				t.Errorf("ping %v: %v", ip, err)
			}
			mac, state, err := client.Neigh(ctxFor(t, 5*time.Second), ip)
			if err != nil || !sameMAC(mac, node.MAC) {
				t.Errorf("ip neigh %v = %v %s, %v; want %v", ip, mac, state, err, node.MAC)
			}
		})
	}
	t.Run("not owned", func(t *testing.T) {
		if mac, err := client.ARPResolve(ctxFor(t, 1500*time.Millisecond), unowned4); err == nil {
			t.Errorf("arping %v answered by %v, want no answer", unowned4, mac)
		}
		if mac, err := client.NDPResolve(ctxFor(t, 1500*time.Millisecond), unowned6); err == nil {
			t.Errorf("ndisc6 %v answered by %v, want no answer", unowned6, mac)
		}
	})
	t.Run("removed", func(t *testing.T) {
		a.SetDesired(nil)
		if mac, err := client.ARPResolve(ctxFor(t, 1500*time.Millisecond), svc4); err == nil {
			t.Errorf("arping %v answered by %v after removal", svc4, mac)
		}
		if mac, err := client.NDPResolve(ctxFor(t, 1500*time.Millisecond), svc6); err == nil {
			t.Errorf("ndisc6 %v answered by %v after removal", svc6, mac)
		}
	})
	s := a.Stats()["eth0"]
	if s.IPv4.Replies == 0 || s.IPv6.Replies == 0 || s.IPv4.Requests < s.IPv4.Replies || s.IPv6.Requests < s.IPv6.Replies {
		t.Errorf("stats = %+v, want replies counted and requests >= replies", s)
	}
}

// The kernel re-validates a STALE entry in use with unicast solicitations
// addressed to the IP itself; only an AF_PACKET reader sees them.
func TestLabNUDKeepsIPv6Reachable(t *testing.T) {
	n := lab.Network(t, 1)
	node, client := n.Nodes[0], n.Client
	node.BindOnLo(t, svc6)
	if _, err := client.Exec(ctxFor(t, 5*time.Second), "sysctl", "-qw",
		"net.ipv6.neigh.eth0.base_reachable_time_ms=500", "net.ipv6.neigh.eth0.delay_first_probe_time=1"); err != nil {
		t.Fatal(err)
	}
	a := runIn(t, node, Options{AnnounceCount: 1})
	a.SetDesired(map[netip.Addr]string{svc6: "eth0"})
	lab.WaitFor(t, 5*time.Second, "an announcement", func(context.Context) bool { return a.Stats()["eth0"].IPv6.Announcements > 0 })

	if err := ping(ctxFor(t, 5*time.Second), client, svc6); err != nil {
		t.Fatalf("ping %v: %v", svc6, err)
	}
	// Send UDP for 6 s, 5 datagrams per second. Unlike ping (iputils
	// confirms reachability with MSG_CONFIRM), nothing confirms the entry,
	// so with a reachable time of 0.25-0.75 s it goes STALE -> DELAY ->
	// PROBE over and over, and PROBE is unicast solicitations to svc6.
	script := "for i in $(seq 30); do echo x > /dev/udp/" + svc6.String() + "/9; sleep 0.2; done"
	if out, err := client.Exec(ctxFor(t, 15*time.Second), "bash", "-c", script); err != nil {
		t.Fatalf("udp traffic: %v\n%s", err, out)
	}
	mac, state, err := client.Neigh(ctxFor(t, 5*time.Second), svc6)
	if err != nil || !sameMAC(mac, node.MAC) || strings.Contains(state, "FAILED") || strings.Contains(state, "INCOMPLETE") {
		t.Errorf("ip neigh %v = %v %s, %v; want %v and usable", svc6, mac, state, err, node.MAC)
	}
	// One multicast solicitation resolved the entry; the rest were NUD.
	if r := a.Stats()["eth0"].IPv6.Replies; r < 3 {
		t.Errorf("answered %d solicitations, want the unicast NUD probes answered too (>= 3)", r)
	}
	t.Logf("answered %d solicitations; entry %s", a.Stats()["eth0"].IPv6.Replies, state)
}

// Two nodes hand an IP over: the new owner's announcements report a
// conflict on the old one and move the client's existing neighbour entries
// without the client asking.
func TestLabHandover(t *testing.T) {
	n := lab.Network(t, 2)
	n0, n1, client := n.Nodes[0], n.Nodes[1], n.Client
	n0.BindOnLo(t, svc4, svc6)
	n1.BindOnLo(t, svc4, svc6)
	conflicts := make(chan Conflict, 64)
	onConflict := func(c Conflict) {
		select {
		case conflicts <- c:
		default:
		}
	}
	desired := map[netip.Addr]string{svc4: "eth0", svc6: "eth0"}
	a0 := runIn(t, n0, Options{AnnounceCount: 1, OnConflict: onConflict})
	a0.SetDesired(desired)
	announced(t, a0, 1)
	for _, ip := range []netip.Addr{svc4, svc6} {
		if err := ping(ctxFor(t, 5*time.Second), client, ip); err != nil {
			t.Fatalf("ping %v: %v", ip, err)
		}
		if mac, _, _ := client.Neigh(ctxFor(t, 5*time.Second), ip); !sameMAC(mac, n0.MAC) {
			t.Fatalf("client resolves %v to %v, want n0 %v", ip, mac, n0.MAC)
		}
	}

	a1 := runIn(t, n1, Options{AnnounceCount: 3, AnnounceInterval: 200 * time.Millisecond})
	a1.SetDesired(desired)
	seen := map[netip.Addr]bool{}
	timeout := time.After(5 * time.Second)
	for !seen[svc4] || !seen[svc6] {
		select {
		case c := <-conflicts:
			if !sameMAC(c.MAC, n1.MAC) || c.Interface != "eth0" {
				t.Errorf("conflict %+v, want MAC %v on eth0", c, n1.MAC)
			}
			seen[c.IP] = true
		case <-timeout:
			t.Fatalf("conflicts reported on n0: %v, want both %v and %v", seen, svc4, svc6)
		}
	}
	a0.SetDesired(nil) // the daemon yields

	for _, ip := range []netip.Addr{svc4, svc6} {
		lab.WaitFor(t, 3*time.Second, "client entry for "+ip.String()+" to move to n1", func(context.Context) bool {
			mac, _, err := client.Neigh(ctxFor(t, 2*time.Second), ip)
			return err == nil && sameMAC(mac, n1.MAC)
		})
	}
	if r := a1.Stats()["eth0"]; r.IPv4.Replies != 0 || r.IPv6.Replies != 0 {
		t.Logf("n1 answered solicitations too: %+v", r)
	}

	// A host that is not an announcer claims the IP: arping -U from the
	// client is a gratuitous ARP with the client's MAC (nonlocal bind lets
	// arping use an address the client does not have).
	a1.SetDesired(nil)
	a0.SetDesired(desired)
	announced(t, a0, 2)
	time.Sleep(100 * time.Millisecond)
	for len(conflicts) > 0 {
		<-conflicts
	}
	ctx := ctxFor(t, 5*time.Second)
	if out, err := client.Exec(ctx, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"); err != nil {
		t.Fatalf("sysctl: %v\n%s", err, out)
	}
	if out, err := client.Exec(ctx, "arping", "-U", "-c1", "-I", client.Link, svc4.String()); err != nil {
		t.Fatalf("arping -U: %v\n%s", err, out)
	}
	select {
	case c := <-conflicts:
		if c.IP != svc4 || !sameMAC(c.MAC, client.MAC) {
			t.Errorf("conflict %+v, want %v from %v", c, svc4, client.MAC)
		}
	case <-time.After(3 * time.Second):
		t.Error("no conflict reported for the client's gratuitous ARP")
	}
}

func TestLabLinkRecovery(t *testing.T) {
	n := lab.Network(t, 1)
	node, client := n.Nodes[0], n.Client
	node.BindOnLo(t, svc4, svc6)
	a := runIn(t, node, Options{AnnounceCount: 1})
	a.SetDesired(map[netip.Addr]string{svc4: "eth0", svc6: "eth0"})
	announced(t, a, 1)

	resolves := func(t *testing.T, step string) {
		t.Helper()
		lab.WaitFor(t, 5*time.Second, "arping after "+step, func(context.Context) bool {
			mac, err := client.ARPResolve(ctxFor(t, 1500*time.Millisecond), svc4)
			return err == nil && sameMAC(mac, node.MAC)
		})
		lab.WaitFor(t, 5*time.Second, "ndisc6 after "+step, func(context.Context) bool {
			mac, err := client.NDPResolve(ctxFor(t, 1500*time.Millisecond), svc6)
			return err == nil && sameMAC(mac, node.MAC)
		})
	}
	resolves(t, "start")

	ctx := ctxFor(t, 30*time.Second)
	if err := node.SetLinkDown(ctx, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := node.SetLinkUp(ctx, "eth0"); err != nil {
		t.Fatal(err)
	}
	announced(t, a, 2) // re-opened and re-announced
	resolves(t, "down/up")

	// Delete eth0 (its veth peer on the bridge goes with it) and build it
	// again under the same names, as the lab does.
	for _, cmd := range [][]string{
		{"ip", "-n", node.Name, "link", "del", "eth0"},
		{"ip", "link", "add", node.Name, "type", "veth", "peer", "name", "eth0", "address", node.MAC.String(), "netns", node.Name},
		{"sysctl", "-qw", "net.ipv6.conf." + node.Name + ".disable_ipv6=1"},
		{"ip", "link", "set", node.Name, "master", n.Bridge, "up"},
		{"ip", "-n", node.Name, "addr", "add", netip.PrefixFrom(node.IPv4, 24).String(), "dev", "eth0"},
		{"ip", "-n", node.Name, "addr", "add", netip.PrefixFrom(node.IPv6, 64).String(), "dev", "eth0", "nodad"},
		{"ip", "-n", node.Name, "link", "set", "eth0", "up"},
	} {
		if out, err := runCmd(ctx, cmd...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	announced(t, a, 3)
	resolves(t, "delete/re-create")
}

func runCmd(ctx context.Context, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
}

// A NIC that loses carrier stays administratively up; Links must show it
// unusable all the same (and OnLinks say so), and usable again when
// carrier returns. Setting the bridge end of the node's veth down takes
// the carrier from the node's eth0.
func TestLabLinkCarrier(t *testing.T) {
	n := lab.Network(t, 1)
	node := n.Nodes[0]
	changed := make(chan struct{}, 1)
	a := runIn(t, node, Options{OnLinks: func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}})
	eth0 := func() (Link, bool) {
		links, _ := a.Links()
		for _, l := range links {
			if l.Name == node.Link {
				return l, true
			}
		}
		return Link{}, false
	}
	// usable waits for OnLinks to report eth0 usable or not: the
	// snapshot is published before OnLinks is called.
	usable := func(want bool) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case <-changed:
				if l, ok := eth0(); ok && l.Usable == want {
					return
				}
			case <-timeout:
				l, ok := eth0()
				t.Fatalf("eth0 = %+v (listed: %v) after 5s, want usable = %v reported through OnLinks", l, ok, want)
			}
		}
	}
	usable(true)
	links, _ := a.Links()
	l, _ := eth0()
	if !slices.Contains(l.Prefixes, lab.PrefixV4) || !slices.Contains(l.Prefixes, lab.PrefixV6) {
		t.Errorf("eth0 prefixes = %v, want %v and %v among them", l.Prefixes, lab.PrefixV4, lab.PrefixV6)
	}
	for _, l := range links {
		if l.Name == "lo" {
			t.Errorf("Links lists loopback: %+v", links)
		}
	}

	ctx := ctxFor(t, 30*time.Second)
	for _, step := range []struct {
		state  string
		usable bool
	}{{"down", false}, {"up", true}} {
		if out, err := runCmd(ctx, "ip", "link", "set", node.Name, step.state); err != nil {
			t.Fatalf("ip link set %s %s: %v\n%s", node.Name, step.state, err, out)
		}
		usable(step.usable)
	}
}
