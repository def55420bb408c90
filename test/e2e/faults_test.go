package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/test/lab"
)

// fromMAC returns the replies (and, separately, the announcements) the
// prober recorded from mac after t; a run of replies that began before t
// counts whole.
func fromMAC(p *prober, mac string, after time.Time) (replies, announcements int) {
	for _, r := range p.replies() {
		if r.MAC == mac && r.Last.After(after) {
			replies += r.N // at most: the run may have begun before
		}
	}
	for _, a := range p.announcements() {
		if a.MAC == mac && a.At.After(after) {
			announcements++
		}
	}
	return replies, announcements
}

// probedService creates a Service and returns its address, the node that
// answers for it, and a prober asking for it every 5 ms that has heard it.
func probedService(t *testing.T, l *lab.Lab) (netip.Addr, *lab.Node, *prober) {
	t.Helper()
	l.CreateLBService(ctxBg, "default", "web")
	ip := waitIngress(t, l, "default", "web", 1)[0]
	o := owner(t, l, ip)
	p := startProber(t, l, 5*time.Millisecond)
	p.watch(ip)
	p.firstReplyAfter(t, "", 5*time.Second)
	return ip, o, p
}

// TestPauseResume: the owner is stopped (SIGSTOP) for 8 s, as a VM freeze
// or a stalled process is; a peer takes over; once continued, the old
// owner sends nothing for the address (no reply to a queued or a new
// request, no announcement), and the takeover sticks.
func TestPauseResume(t *testing.T) {
	l, ds := placementLab(t, 3, "")
	ip, o, p := probedService(t, l)
	oldMAC := strings.ToLower(o.MAC.String())

	d := daemonOn(ds, o)
	if err := d.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	taken := p.firstReplyAfter(t, oldMAC, 10*time.Second)
	t.Logf("paused owner %s; %s took over after %v", o.Name, nodeByMAC(l, taken.MAC).Name, taken.First.Sub(stopped).Round(time.Millisecond))
	time.Sleep(time.Until(stopped.Add(8 * time.Second)))
	resumed := time.Now()
	if err := d.proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)

	replies, announcements := fromMAC(p, oldMAC, resumed)
	newReplies, _ := fromMAC(p, taken.MAC, resumed)
	t.Logf("after resuming, %s sent %d replies and %d announcements for %s; %s sent %d replies", o.Name, replies, announcements, ip, nodeByMAC(l, taken.MAC).Name, newReplies)
	if replies != 0 || announcements != 0 {
		t.Errorf("the resumed node answered %d times and announced %d times for an address taken over", replies, announcements)
	}
	if newReplies == 0 {
		t.Error("the new owner stopped answering after the old one resumed")
	}
	if got := owner(t, l, ip); got.Name != nodeByMAC(l, taken.MAC).Name {
		t.Errorf("%s moved back to %s after the pause", ip, got.Name)
	}
	if !strings.Contains(d.proc.Output(), "did not run for longer than its claims last") {
		t.Error("the resumed node did not log its lapse")
	}
}

// TestCarrierLoss: the owner's service NIC loses carrier (the bridge end of
// its veth goes down; the interface itself stays up) while the API stays
// reachable over a second NIC. A peer takes over, and nothing moves back
// when carrier returns.
func TestCarrierLoss(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 3})
	for _, n := range l.Nodes {
		l.ManagementNIC(n)
		l.ServeHTTP(n)
	}
	ds := startDaemons(t, l, defaultPools, "")
	waitMembers(t, l)
	ip, o, p := probedService(t, l)
	oldMAC := strings.ToLower(o.MAC.String())

	lost := time.Now()
	l.SetCarrier(o, false)
	taken := p.firstReplyAfter(t, oldMAC, 10*time.Second)
	newOwner := nodeByMAC(l, taken.MAC)
	t.Logf("carrier lost on %s; %s answered %v later", o.Name, newOwner.Name, taken.First.Sub(lost).Round(time.Millisecond))
	lab.WaitFor(t, 5*time.Second, "the claim to leave the node without carrier", func(context.Context) bool {
		return claims(t, l)[ip] == newOwner.Name
	})

	l.SetCarrier(o, true)
	back := time.Now()
	time.Sleep(5 * time.Second)
	if replies, _ := fromMAC(p, oldMAC, back); replies != 0 {
		t.Errorf("%s answered %d times after its carrier returned", o.Name, replies)
	}
	if got := owner(t, l, ip); got.Name != newOwner.Name {
		t.Errorf("%s moved back to %s when carrier returned", ip, got.Name)
	}
	if !strings.Contains(daemonOn(ds, o).proc.Output(), "no longer answering") {
		t.Error("the node without carrier did not log that it stopped answering")
	}
}

// waitMembers waits until every node's member Lease exists and each has had
// time to see its own first renewal come back.
func waitMembers(t testing.TB, l *lab.Lab) {
	t.Helper()
	lab.WaitFor(t, 20*time.Second, "every node's member Lease", func(ctx context.Context) bool {
		for _, n := range l.Nodes {
			if _, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctx, "l2lbd-"+n.Name, metav1.GetOptions{}); err != nil {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
}

// spread counts the claimed addresses per node.
func spread(c map[netip.Addr]string) map[string]int {
	out := map[string]int{}
	for _, node := range c {
		out[node]++
	}
	return out
}

// TestRollingRestart: 24 addresses on 3 nodes; every node is restarted in
// turn (SIGTERM, start again), as a package upgrade does. Within 60 s of the
// last restart no node holds more than 9, by graceful hand-overs.
func TestRollingRestart(t *testing.T) {
	const pools = `pools:
  - name: lan
    addresses: [198.51.100.200-198.51.100.231]
`
	l := lab.Start(t, lab.Options{Nodes: 3})
	ds := startDaemons(t, l, pools, "")
	waitMembers(t, l)
	const n = 24
	for i := range n {
		l.CreateLBService(ctxBg, "default", fmt.Sprintf("s%d", i))
	}
	waitClaims(t, l, n)
	before := waitSpread(t, l, n, 9, 60*time.Second)
	t.Logf("before: %v", spread(before))

	// Count moves while the nodes restart and rebalance.
	moves, stop := countMoves(t, l)
	for _, d := range ds {
		if err := d.proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := d.proc.Wait(10 * time.Second); err != nil {
			t.Fatalf("%s: %v", d.node.Name, err)
		}
		d.start(t)
		lab.WaitFor(t, 20*time.Second, d.node.Name+" back", func(ctx context.Context) bool {
			lease, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctx, "l2lbd-"+d.node.Name, metav1.GetOptions{})
			return err == nil && lease.Spec.RenewTime != nil && time.Since(lease.Spec.RenewTime.Time) < time.Second
		})
		time.Sleep(3 * time.Second) // fresh and settled, as an upgrade's health check waits
		t.Logf("after restarting %s: %v", d.node.Name, spread(claims(t, l)))
	}
	last := time.Now()
	after := waitSpread(t, l, n, 9, 60*time.Second)
	stop()
	t.Logf("balanced %v after the last restart: %v; %d moves in the rolling restart", time.Since(last).Round(time.Second), spread(after), *moves)
}

// waitSpread waits until n addresses are claimed with no node holding more
// than most, and returns the claims.
func waitSpread(t testing.TB, l *lab.Lab, n, most int, timeout time.Duration) map[netip.Addr]string {
	t.Helper()
	var got map[netip.Addr]string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got = claims(t, l)
		s := spread(got)
		if len(got) == n && slices.Max(append(slices.Collect(maps.Values(s)), 0)) <= most {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("after %v: %d addresses claimed, spread %v; want %d with at most %d per node", timeout, len(got), spread(got), n, most)
	return nil
}

// countMoves polls the claims and counts addresses whose claimant changed
// from one node to another (a release and a later claim count once).
func countMoves(t testing.TB, l *lab.Lab) (*int, func()) {
	moves := new(int)
	last := claims(t, l)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			list, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).List(ctxBg, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, lease := range list.Items {
				node, m, ok := kube.ParseMember(&lease)
				if !ok {
					continue
				}
				for _, ip := range m.Claims {
					if prev, ok := last[ip]; ok && prev != node {
						*moves++
					}
					last[ip] = node
				}
			}
		}
	}()
	return moves, func() { close(done); <-stopped }
}

// TestLoneNodeRestart: a lone node keeps its Lease on a graceful stop (no
// peer could take over), so that a restart answers again at once.
func TestLoneNodeRestart(t *testing.T) {
	l := lab.Start(t, lab.Options{Nodes: 1})
	ds := startDaemons(t, l, defaultPools, "")
	waitMembers(t, l)
	l.CreateLBService(ctxBg, "default", "web")
	ip := waitIngress(t, l, "default", "web", 1)[0]
	p := startProber(t, l, 10*time.Millisecond)
	p.watch(ip)
	p.firstReplyAfter(t, "", 10*time.Second)

	d := ds[0]
	if err := d.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.proc.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	lease, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctxBg, kube.MemberLeasePrefix+d.node.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the lone node's Lease after a graceful stop: %v", err)
	}
	if _, m, _ := kube.ParseMember(lease); !slices.Contains(m.Claims, ip) {
		t.Errorf("the kept Lease claims %v, want %s", m.Claims, ip)
	}
	stoppedAt := time.Now()
	p.watch(ip)
	d.start(t)
	first := p.firstReplyAfter(t, "", 10*time.Second)
	t.Logf("a lone node answered %v after its restart began", first.First.Sub(stoppedAt).Round(time.Millisecond))
}
