package netio

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// fakeSystem stands in for the kernel: links come from the test, sockets
// are fakeConns, and everything blocks on channels so that synctest sees
// the Announcer's goroutines as durably blocked.
type fakeSystem struct {
	mu     sync.Mutex
	links  []linkMsg
	addrs  []addrMsg
	events chan netEvent
	conns  map[string][]*fakeConn // "arp/eth0" -> every conn opened, in order
	groups map[string][]*fakeGroups
	fail   error // returned by the next opens
}

func newFakeSystem(links ...linkMsg) *fakeSystem {
	return &fakeSystem{
		links:  links,
		events: make(chan netEvent),
		conns:  make(map[string][]*fakeConn),
		groups: make(map[string][]*fakeGroups),
	}
}

var _ system = (*fakeSystem)(nil)

func (s *fakeSystem) watch() (watcher, error) {
	return &fakeWatcher{events: s.events, closed: make(chan struct{})}, nil
}

func (s *fakeSystem) list() ([]linkMsg, []addrMsg, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]linkMsg(nil), s.links...), append([]addrMsg(nil), s.addrs...), nil
}

func (s *fakeSystem) open(kind string, ifi iface) (net.PacketConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	c := newFakeConn()
	s.conns[kind+"/"+ifi.name] = append(s.conns[kind+"/"+ifi.name], c)
	return c, nil
}

func (s *fakeSystem) openARP(ifi iface) (net.PacketConn, error) { return s.open("arp", ifi) }
func (s *fakeSystem) openNDP(ifi iface) (net.PacketConn, error) { return s.open("ndp", ifi) }

func (s *fakeSystem) openGroups(ifi iface) (groupJoiner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &fakeGroups{joined: make(map[netip.Addr]bool)}
	s.groups[ifi.name] = append(s.groups[ifi.name], g)
	return g, nil
}

// conn returns the latest conn of a kind ("arp", "ndp") on an interface and
// how many were opened.
func (s *fakeSystem) conn(kind, name string) (*fakeConn, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.conns[kind+"/"+name]
	if len(cs) == 0 {
		return nil, 0
	}
	return cs[len(cs)-1], len(cs)
}

func (s *fakeSystem) joined(name string) map[netip.Addr]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := s.groups[name]
	if len(gs) == 0 {
		return nil
	}
	g := gs[len(gs)-1]
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	out := make(map[netip.Addr]bool)
	for k := range g.joined {
		out[k] = true
	}
	return out
}

type fakeWatcher struct {
	events chan netEvent
	closed chan struct{}
	once   sync.Once
}

func (w *fakeWatcher) read() (netEvent, error) {
	select {
	case ev := <-w.events:
		return ev, nil
	case <-w.closed:
		return netEvent{}, errors.New("watcher closed")
	}
}

func (w *fakeWatcher) close() error {
	w.once.Do(func() { close(w.closed) })
	return nil
}

type fakeGroups struct {
	mu     sync.Mutex
	joined map[netip.Addr]bool
	closed bool
}

func (g *fakeGroups) join(a netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.joined[a] = true
	return nil
}

func (g *fakeGroups) leave(a netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.joined, a)
	return nil
}

func (g *fakeGroups) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return nil
}

const ethUp = flagUp | flagRunning

func eth(index int, name string, mac net.HardwareAddr, flags uint32) linkMsg {
	return linkMsg{link: link{index: index, name: name, mac: mac, flags: flags}}
}

// harness runs an Announcer on a fakeSystem inside a synctest bubble.
type harness struct {
	t      *testing.T
	sys    *fakeSystem
	a      *Announcer
	cancel context.CancelFunc
	done   chan error

	mu        sync.Mutex
	conflicts []Conflict
	onLinks   int // calls of OnLinks
}

func startAnnouncer(t *testing.T, opts Options, desired map[netip.Addr]string, links ...linkMsg) *harness {
	h := &harness{t: t, sys: newFakeSystem(links...), done: make(chan error, 1)}
	opts.OnConflict = func(c Conflict) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.conflicts = append(h.conflicts, c)
	}
	opts.OnLinks = func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.onLinks++
	}
	h.a = New(opts)
	h.a.sys = h.sys
	if desired != nil {
		h.a.SetDesired(desired)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- h.a.Run(ctx) }()
	synctest.Wait()
	return h
}

// stop cancels Run and checks it returned nil with every socket closed.
// synctest.Test itself fails if any goroutine Run started is left.
func (h *harness) stop() {
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run = %v, want nil", err)
	}
	h.sys.mu.Lock()
	defer h.sys.mu.Unlock()
	for k, cs := range h.sys.conns {
		for i, c := range cs {
			if !c.isClosed() {
				h.t.Errorf("conn %s #%d left open", k, i)
			}
		}
	}
}

func (h *harness) event(ev netEvent) {
	h.sys.events <- ev
	synctest.Wait()
}

// announcements returns and forgets the gratuitous ARPs and unsolicited NAs
// sent on an interface, by IP.
func (h *harness) announcements(name string) map[netip.Addr]int {
	out := make(map[netip.Addr]int)
	if c, _ := h.sys.conn("arp", name); c != nil {
		for _, w := range c.sent() {
			var p arp.Packet
			if err := p.UnmarshalBinary(w.frame[ethHeaderLen:]); err == nil && p.Operation == arp.OperationRequest && p.SenderIP == p.TargetIP {
				out[p.SenderIP]++
			}
		}
	}
	if c, _ := h.sys.conn("ndp", name); c != nil {
		for _, w := range c.sent() {
			if m, ok := parseNeighbor(w.frame); ok && m.typ == icmpNeighborAdvertisement && m.dst == allNodes {
				out[m.target]++
			}
		}
	}
	return out
}

func checkAnnounced(t *testing.T, got map[netip.Addr]int, want map[netip.Addr]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("announced %v, want %v", got, want)
		return
	}
	for ip, n := range want {
		if got[ip] != n {
			t.Errorf("announced %v, want %v", got, want)
			return
		}
	}
}

var both = map[netip.Addr]string{ownedV4: "eth0", ownedV6: "eth0"}

func TestAnnouncerBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{AnnounceCount: 3, AnnounceInterval: time.Second}, both, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})
		if g := h.sys.joined("eth0"); len(g) != 1 || !g[solicitedNode(ownedV6)] {
			t.Errorf("joined %v, want the solicited-node group of %v", g, ownedV6)
		}
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), nil)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})
		time.Sleep(time.Minute)
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})

		// An added IP gets its own burst; the others get nothing.
		added := netip.MustParseAddr("198.51.100.210")
		h.a.SetDesired(map[netip.Addr]string{ownedV4: "eth0", ownedV6: "eth0", added: "eth0"})
		synctest.Wait()
		time.Sleep(time.Minute)
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{added: 3})

		st := h.a.Stats()["eth0"]
		if st.IPv4.Announcements != 6 || st.IPv6.Announcements != 3 {
			t.Errorf("stats = %+v, want 6 IPv4 and 3 IPv6 announcements", st)
		}
	})
}

func TestAnnouncerRemovalStopsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{AnnounceCount: 5}, both, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})

		h.a.SetDesired(map[netip.Addr]string{ownedV4: "eth0", freeV4: "eth0"})
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{freeV4: 1})
		// The removed IP is no longer answered, at once.
		arpc, _ := h.sys.conn("arp", "eth0")
		arpc.in <- arpFrame(t, arp.OperationRequest, clientMAC, clientV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
		synctest.Wait()
		if len(arpc.sent()) != 1 {
			t.Error("a kept IP is not answered")
		}
		ndpc, _ := h.sys.conn("ndp", "eth0")
		snm := solicitedNode(ownedV6)
		ndpc.in <- ndpFrame(t, clientMAC, multicastMAC(snm), clientV6, snm, 255, ns(ownedV6, clientMAC))
		synctest.Wait()
		if s := ndpc.sent(); len(s) != 0 {
			t.Errorf("a removed IP is still answered: %x", s[0].frame)
		}
		if g := h.sys.joined("eth0"); len(g) != 0 {
			t.Errorf("still joined %v", g)
		}
		time.Sleep(time.Minute)
		// ownedV4's burst goes on, ownedV6's stopped; freeV4 has its own.
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 4, freeV4: 4})

		// Removing everything closes the interface's sockets.
		h.a.SetDesired(nil)
		synctest.Wait()
		if c, _ := h.sys.conn("arp", "eth0"); !c.isClosed() {
			t.Error("sockets stay open with nothing to serve")
		}
	})
}

func TestAnnouncerRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{AnnounceCount: 1, AnnounceRefresh: 30 * time.Second}, both, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})
		time.Sleep(29 * time.Second)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), nil)
		time.Sleep(31 * time.Second)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 2, ownedV6: 2})
	})
}

func TestAnnouncerLinkChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{AnnounceCount: 1}, both, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})

		steps := []struct {
			name    string
			ev      linkMsg
			open    bool // sockets open afterwards
			opened  int  // ARP sockets opened so far
			reannce bool
		}{
			{"down", eth(2, "eth0", nodeMAC, flagUp), false, 1, false},
			{"up again", eth(2, "eth0", nodeMAC, ethUp), true, 2, true},
			{"MAC changed", eth(2, "eth0", otherMAC, ethUp), true, 3, true},
			{"deleted", linkMsg{link: link{index: 2, name: "eth0"}, deleted: true}, false, 3, false},
			{"re-created", eth(7, "eth0", nodeMAC, ethUp), true, 4, true},
			{"renamed away", eth(7, "eth9", nodeMAC, ethUp), false, 4, false},
			{"renamed back", eth(7, "eth0", nodeMAC, ethUp), true, 5, true},
			{"unrelated link", eth(3, "eth1", clientMAC, ethUp), true, 5, false},
		}
		for _, s := range steps {
			h.event(netEvent{links: []linkMsg{s.ev}})
			c, n := h.sys.conn("arp", "eth0")
			if open := !c.isClosed(); open != s.open || n != s.opened {
				t.Fatalf("%s: open = %v after %d opens, want %v after %d", s.name, open, n, s.open, s.opened)
			}
			want := map[netip.Addr]int(nil)
			if s.reannce {
				want = map[netip.Addr]int{ownedV4: 1, ownedV6: 1}
				if g := h.sys.joined("eth0"); !g[solicitedNode(ownedV6)] {
					t.Errorf("%s: groups not re-joined: %v", s.name, g)
				}
			}
			checkAnnounced(t, h.announcements("eth0"), want)
		}
		if _, n := h.sys.conn("arp", "eth1"); n != 0 {
			t.Error("opened a socket on an interface nothing is desired on")
		}

		// Down and up within one batch of notifications still re-opens.
		h.event(netEvent{links: []linkMsg{eth(7, "eth0", nodeMAC, flagUp), eth(7, "eth0", nodeMAC, ethUp)}})
		if c, n := h.sys.conn("arp", "eth0"); c.isClosed() || n != 6 {
			t.Errorf("down+up in one batch: open = %v after %d opens, want open after 6", !c.isClosed(), n)
		}
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})
	})
}

func TestAnnouncerSocketFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{AnnounceCount: 1}, nil, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		h.sys.mu.Lock()
		h.sys.fail = errors.New("permission denied")
		h.sys.mu.Unlock()
		h.a.SetDesired(both)
		synctest.Wait()
		if _, n := h.sys.conn("arp", "eth0"); n != 0 {
			t.Fatal("opened despite failure")
		}
		h.sys.mu.Lock()
		h.sys.fail = nil
		h.sys.mu.Unlock()
		time.Sleep(reopenBackoff)
		synctest.Wait()
		c, n := h.sys.conn("arp", "eth0")
		if n != 1 {
			t.Fatalf("not retried after %v", reopenBackoff)
		}
		checkAnnounced(t, h.announcements("eth0"), map[netip.Addr]int{ownedV4: 1, ownedV6: 1})

		// A socket that fails under the reader is re-opened.
		c.Close()
		synctest.Wait()
		time.Sleep(reopenBackoff)
		synctest.Wait()
		if c, n := h.sys.conn("arp", "eth0"); n != 2 || c.isClosed() {
			t.Errorf("after a read failure: %d opens, want 2", n)
		}
	})
}

func TestAnnouncerHostAddresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lo := eth(1, "lo", nil, ethUp|flagLoopback)
		ipvs := eth(5, "kube-ipvs0", otherMAC, flagNoARP)
		h := startAnnouncer(t, Options{AnnounceCount: 1}, both, lo, eth(2, "eth0", nodeMAC, ethUp), ipvs)
		defer h.stop()
		arpc, _ := h.sys.conn("arp", "eth0")
		req := arpFrame(t, arp.OperationRequest, clientMAC, clientV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
		ask := func() bool {
			arpc.in <- req
			synctest.Wait()
			return len(arpc.sent()) > 0
		}
		h.announcements("eth0")
		steps := []struct {
			name string
			ev   addrMsg
			want bool
		}{
			{"on lo (kube-proxy stand-in)", addrMsg{index: 1, prefix: netip.PrefixFrom(ownedV4, 32)}, true},
			{"on kube-ipvs0 (NOARP)", addrMsg{index: 5, prefix: netip.PrefixFrom(ownedV4, 32)}, true},
			{"on eth0", addrMsg{index: 2, prefix: netip.PrefixFrom(ownedV4, 24)}, false},
			{"removed from eth0", addrMsg{index: 2, prefix: netip.PrefixFrom(ownedV4, 24), deleted: true}, true},
		}
		for _, s := range steps {
			h.event(netEvent{addrs: []addrMsg{s.ev}})
			if got := ask(); got != s.want {
				t.Errorf("%s: answered = %v, want %v", s.name, got, s.want)
			}
		}
	})
}

// Every conflicting frame is reported: de-duplicating is the caller's.
func TestAnnouncerConflicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{AnnounceCount: 1}, both, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		arpc, _ := h.sys.conn("arp", "eth0")
		garp := arpFrame(t, arp.OperationRequest, otherMAC, ownedV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
		for range 3 {
			arpc.in <- garp
			synctest.Wait()
		}
		got := h.reported()
		if len(got) != 3 {
			t.Fatalf("reported %v, want each of the 3 frames", got)
		}
		for _, c := range got {
			checkConflicts(t, []Conflict{c}, &Conflict{IP: ownedV4, MAC: otherMAC, Interface: "eth0"})
		}
		if n := h.a.Stats()["eth0"].IPv4.Conflicts; n != 3 {
			t.Errorf("counted %d conflicts, want 3", n)
		}
	})
}

func (h *harness) reported() []Conflict {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Conflict(nil), h.conflicts...)
}

// A flood of conflicting frames neither blocks the packet path nor grows
// anything: the queue to the loop is bounded, and the counter still counts
// what it drops.
func TestConflictFlood(t *testing.T) {
	a := New(Options{})
	a.view.desired.Store(&desiredSet{ownedV4: "eth0"})
	var stats counters
	r := newARPResponder(eth0, newFakeConn(), env{view: a.view, report: a.report}, &stats)
	garp := arpFrame(t, arp.OperationRequest, otherMAC, ownedV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
	const n = 1000
	for range n {
		r.handle(garp, false)
	}
	if got := stats.conflicts.Load(); got != n {
		t.Errorf("counted %d conflicts, want %d", got, n)
	}
	if len(a.conflicts) != cap(a.conflicts) || cap(a.conflicts) >= n {
		t.Errorf("queued %d of %d conflicts (capacity %d), want the queue full and bounded", len(a.conflicts), n, cap(a.conflicts))
	}
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{}, nil)
		defer h.stop()
		if err := h.a.Run(t.Context()); err == nil {
			t.Error("second concurrent Run = nil, want an error")
		}
	})
}

// After the answer deadline nothing is answered or announced, conflicts are
// still reported, and a later deadline brings everything back.
func TestAnnouncerAnswerDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startAnnouncer(t, Options{AnnounceCount: 3, AnnounceInterval: time.Second, AnnounceRefresh: time.Minute},
			both, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		arpc, _ := h.sys.conn("arp", "eth0")
		ndpc, _ := h.sys.conn("ndp", "eth0")
		snm := solicitedNode(ownedV6)
		arpReq := arpFrame(t, arp.OperationRequest, clientMAC, clientV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
		nsReq := ndpFrame(t, clientMAC, multicastMAC(snm), clientV6, snm, 255, ns(ownedV6, clientMAC))
		answered := func(step string, want bool) {
			t.Helper()
			h.announcements("eth0")
			arpc.in <- arpReq
			ndpc.in <- nsReq
			synctest.Wait()
			if v4, v6 := len(arpc.sent()) > 0, len(ndpc.sent()) > 0; v4 != want || v6 != want {
				t.Errorf("%s: answered IPv4 %v, IPv6 %v; want %v", step, v4, v6, want)
			}
		}
		burst := map[netip.Addr]int{ownedV4: 1, ownedV6: 1}

		// t=0: the first of the burst.
		checkAnnounced(t, h.announcements("eth0"), burst)
		answered("no deadline yet", true)
		h.a.AnswerUntil(time.Now().Add(1500 * time.Millisecond))
		answered("before the deadline", true)
		time.Sleep(time.Second)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), burst)

		// t=2s: past the deadline. The burst's last announcement is
		// skipped.
		time.Sleep(time.Second)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), nil)
		answered("after the deadline", false)
		st := h.a.Stats()["eth0"]
		if st.IPv4.Expired != 1 || st.IPv6.Expired != 1 {
			t.Errorf("stats = %+v, want 1 expired request per family", st)
		}
		arpc.in <- arpFrame(t, arp.OperationRequest, otherMAC, ownedV4, make(net.HardwareAddr, 6), ownedV4, ethernet.Broadcast)
		synctest.Wait()
		if got := h.reported(); len(got) != 1 {
			t.Errorf("conflicts after the deadline = %v, want the one claim reported", got)
		}

		h.a.AnswerUntil(time.Now().Add(time.Minute))
		answered("after a later deadline", true)
		// t=60s: the refresh.
		time.Sleep(58 * time.Second)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), burst)

		// The refresh at t=120s falls after the deadline; the one at
		// t=180s does not.
		time.Sleep(time.Minute)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), nil)
		answered("after the second deadline", false)
		h.a.AnswerUntil(time.Now().Add(time.Hour))
		time.Sleep(time.Minute)
		synctest.Wait()
		checkAnnounced(t, h.announcements("eth0"), burst)
	})
}

// Links follows the kernel's links and addresses, and OnLinks hears of
// every change to it and of nothing else.
func TestAnnouncerLinks(t *testing.T) {
	if links, listed := New(Options{}).Links(); listed || links != nil {
		t.Errorf("before Run: Links = %v, %v; want nil, false", links, listed)
	}
	synctest.Test(t, func(t *testing.T) {
		lo := eth(1, "lo", nil, ethUp|flagLoopback)
		ipvs := eth(5, "kube-ipvs0", otherMAC, flagUp|flagNoARP)
		h := startAnnouncer(t, Options{}, nil, lo, eth(2, "eth0", nodeMAC, ethUp), ipvs)
		defer h.stop()
		addr := func(index int, p string) addrMsg {
			return addrMsg{index: index, prefix: netip.MustParsePrefix(p)}
		}
		gone := func(m addrMsg) addrMsg { m.deleted = true; return m }
		v4, v6 := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")
		ipvsLink := Link{Name: "kube-ipvs0", Index: 5, MAC: otherMAC.String()}

		steps := []struct {
			name  string
			ev    netEvent
			want  []Link
			calls int // of OnLinks so far
		}{
			{"first listing", netEvent{},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Usable: true}, ipvsLink}, 1},
			{"addresses, masked and once per subnet", netEvent{addrs: []addrMsg{
				addr(2, "198.51.100.11/24"), addr(2, "198.51.100.12/24"), addr(2, "2001:db8:100::11/64"), addr(1, "127.0.0.1/8"),
			}}, []Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Usable: true, Prefixes: []netip.Prefix{v4, v6}}, ipvsLink}, 2},
			{"lost carrier", netEvent{links: []linkMsg{eth(2, "eth0", nodeMAC, flagUp)}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Prefixes: []netip.Prefix{v4, v6}}, ipvsLink}, 3},
			{"the same again", netEvent{links: []linkMsg{eth(2, "eth0", nodeMAC, flagUp)}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Prefixes: []netip.Prefix{v4, v6}}, ipvsLink}, 3},
			{"an address on loopback", netEvent{addrs: []addrMsg{addr(1, "127.0.0.2/8")}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Prefixes: []netip.Prefix{v4, v6}}, ipvsLink}, 3},
			{"carrier back", netEvent{links: []linkMsg{eth(2, "eth0", nodeMAC, ethUp)}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Usable: true, Prefixes: []netip.Prefix{v4, v6}}, ipvsLink}, 4},
			{"one of two addresses in a subnet gone", netEvent{addrs: []addrMsg{gone(addr(2, "198.51.100.12/24"))}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Usable: true, Prefixes: []netip.Prefix{v4, v6}}, ipvsLink}, 4},
			{"the last address in a subnet gone", netEvent{addrs: []addrMsg{gone(addr(2, "198.51.100.11/24"))}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Usable: true, Prefixes: []netip.Prefix{v6}}, ipvsLink}, 5},
			{"an address on a NOARP link", netEvent{addrs: []addrMsg{addr(5, "198.51.100.200/32")}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Usable: true, Prefixes: []netip.Prefix{v6}},
					{Name: "kube-ipvs0", Index: 5, MAC: otherMAC.String(), Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.200/32")}}}, 6},
			{"new link", netEvent{links: []linkMsg{eth(3, "eth1", clientMAC, ethUp)}},
				[]Link{{Name: "eth0", Index: 2, MAC: nodeMAC.String(), Usable: true, Prefixes: []netip.Prefix{v6}}, {Name: "eth1", Index: 3, MAC: clientMAC.String(), Usable: true},
					{Name: "kube-ipvs0", Index: 5, MAC: otherMAC.String(), Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.200/32")}}}, 7},
			{"link deleted", netEvent{links: []linkMsg{{link: link{index: 2, name: "eth0"}, deleted: true}}},
				[]Link{{Name: "eth1", Index: 3, MAC: clientMAC.String(), Usable: true},
					{Name: "kube-ipvs0", Index: 5, MAC: otherMAC.String(), Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.200/32")}}}, 8},
		}
		for _, s := range steps {
			if s.ev.links != nil || s.ev.addrs != nil {
				h.event(s.ev)
			}
			got, listed := h.a.Links()
			if !listed || !slices.EqualFunc(got, s.want, Link.equal) {
				t.Errorf("%s: Links = %+v, %v; want %+v, true", s.name, got, listed, s.want)
			}
			h.mu.Lock()
			calls := h.onLinks
			h.mu.Unlock()
			if calls != s.calls {
				t.Errorf("%s: OnLinks called %d times so far, want %d", s.name, calls, s.calls)
			}
		}
	})
}

// TestAnnouncerRefreshPaced: a refresh round announces every owned address
// once per interval, a slice at a time spread over it, never all at once.
func TestAnnouncerRefreshPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		desired := map[netip.Addr]string{}
		for i := range 200 {
			desired[netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})] = "eth0"
		}
		h := startAnnouncer(t, Options{AnnounceCount: 1, AnnounceRefresh: 40 * time.Second}, desired, eth(2, "eth0", nodeMAC, ethUp))
		defer h.stop()
		if got := len(h.announcements("eth0")); got != 200 {
			t.Fatalf("burst announced %d addresses, want 200", got)
		}
		// 200 addresses are 4 slices, 10 s apart, from 40 s on.
		time.Sleep(40*time.Second - time.Millisecond)
		synctest.Wait()
		total := map[netip.Addr]int{}
		for i := range 4 {
			time.Sleep(time.Millisecond)
			synctest.Wait()
			got := h.announcements("eth0")
			if want := min(refreshSlice, 200-i*refreshSlice); len(got) != want {
				t.Errorf("slice %d announced %d addresses, want %d", i, len(got), want)
			}
			for ip, n := range got {
				total[ip] += n
			}
			time.Sleep(10*time.Second - time.Millisecond)
			synctest.Wait()
			if got := h.announcements("eth0"); len(got) != 0 {
				t.Errorf("between slices %d and %d: %d announced", i, i+1, len(got))
			}
		}
		if len(total) != 200 || slices.ContainsFunc(slices.Collect(maps.Values(total)), func(n int) bool { return n != 1 }) {
			t.Errorf("a round announced %d addresses, some more than once: %v", len(total), total)
		}
		// The next round starts an interval after the first.
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := len(h.announcements("eth0")); got != refreshSlice {
			t.Errorf("the next round's first slice announced %d, want %d", got, refreshSlice)
		}
	})
}
