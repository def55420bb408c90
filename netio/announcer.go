package netio

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the announcement schedule, as in the daemon's configuration.
const (
	DefaultAnnounceCount    = 3
	DefaultAnnounceInterval = time.Second
)

// reopenBackoff is how long a port whose socket failed or could not be
// opened waits before the next attempt.
const reopenBackoff = time.Second

// Options configure an Announcer. The zero value is usable.
type Options struct {
	// Logger receives state changes (interfaces opened and closed,
	// failures). Nil discards. Nothing is logged per packet.
	Logger *slog.Logger
	// AnnounceCount is how many gratuitous ARPs / unsolicited NAs an IP
	// gets when it is added or its interface comes up. Zero means
	// DefaultAnnounceCount; negative means none.
	AnnounceCount int
	// AnnounceInterval separates the announcements of a burst. Zero means
	// DefaultAnnounceInterval.
	AnnounceInterval time.Duration
	// AnnounceRefresh, if positive, re-announces every owned IP that often,
	// so switch MAC tables and neighbour caches never age out; the
	// addresses are announced a slice at a time, spread over the interval.
	AnnounceRefresh time.Duration
	// OnConflict is called for every frame in which another MAC claims an
	// owned IP: a peer announcing every second is a call every second, and
	// de-duplicating and logging are the caller's. It runs on Run's
	// goroutine and must not block. Claims that arrive faster than Run
	// hands them over are dropped; Stats counts them all. Nil ignores
	// conflicts.
	OnConflict func(Conflict)
	// OnLinks is called when what Links returns has changed: after the
	// first listing, and whenever a link appears or goes, turns usable or
	// unusable, or its prefixes change. It runs on Run's goroutine and
	// must not block.
	OnLinks func()
}

// A Conflict is another host claiming an owned IP: an ARP packet with that
// sender IP, or a Neighbor Advertisement for that target, from a MAC that is
// not the interface's own.
type Conflict struct {
	IP  netip.Addr
	MAC net.HardwareAddr // the MAC the frame claims the address for
	// Sender is the frame's Ethernet source. A host speaking for itself
	// sends from the MAC it claims; a frame that claims one MAC from
	// another is forged (or proxied) and proves nothing about the first.
	Sender    net.HardwareAddr
	Interface string
}

// Link is one interface as netio sees it.
type Link struct {
	Name  string
	Index int
	// Usable means neighbours can reach us here: the link is up, has
	// carrier, does ARP and has an Ethernet MAC. Only usable links are
	// answered on.
	Usable bool
	// MAC is the link's hardware address, as net.HardwareAddr.String
	// writes it ("" if it has none).
	MAC string
	// Prefixes are the subnets of the link's addresses, masked, IPv4 and
	// IPv6, sorted and without duplicates.
	Prefixes []netip.Prefix
}

// An Announcer answers ARP and NDP for the desired set of IPs on their
// interfaces and announces them. Its methods may be called concurrently.
//
// Time comes from package time, so tests drive bursts and refreshes under
// testing/synctest instead of through an injected clock.
type Announcer struct {
	opts      Options
	log       *slog.Logger
	view      *view
	stats     statsTable
	wake      chan struct{}
	conflicts chan Conflict
	links     atomic.Pointer[[]Link]
	running   atomic.Bool
	sys       system
}

// New returns an Announcer that answers for nothing until SetDesired is
// called. It opens nothing and starts nothing; Run does.
func New(opts Options) *Announcer {
	if opts.AnnounceCount == 0 {
		opts.AnnounceCount = DefaultAnnounceCount
	}
	if opts.AnnounceInterval <= 0 {
		opts.AnnounceInterval = DefaultAnnounceInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Announcer{
		opts:      opts,
		log:       log,
		view:      newView(),
		wake:      make(chan struct{}, 1),
		conflicts: make(chan Conflict, 64),
		sys:       linuxSystem{},
	}
}

// SetDesired replaces the set of IPs this node answers for: each IP maps to
// the name of the interface it is answered on. It takes effect for the next
// packet: IPs no longer in the set are not answered and their announcements
// stop; new IPs are announced. Invalid, multicast, loopback and IPv6
// link-local addresses are dropped with a warning. m is copied.
func (a *Announcer) SetDesired(m map[netip.Addr]string) {
	d, dropped := normalize(m)
	if dropped > 0 {
		a.log.Warn("ignoring IPs that cannot be announced", "count", dropped)
	}
	a.view.desired.Store(&d)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// AnswerUntil sets the answer deadline: after t, nothing is answered and no
// announcement is sent until a call with a later t. Its owner calls it
// after every decision with a bound ahead, so a process that was stopped
// (SIGSTOP, a frozen VM) resumes past its deadline and says nothing from
// what it knew before the pause until it has decided again. t is compared
// by the monotonic clock when it carries a reading (time.Now().Add(d)
// does). Each call replaces the deadline; before the first there is none.
// Announcements that fall due after the deadline are skipped, not
// postponed.
func (a *Announcer) AnswerUntil(t time.Time) {
	a.view.answerUntil(t)
}

// Links returns every interface of the host but loopbacks, sorted by name,
// as Run last listed them, and whether Run has listed them yet (OnLinks is
// called when it has). The slice is shared: do not modify it.
func (a *Announcer) Links() ([]Link, bool) {
	p := a.links.Load()
	if p == nil {
		return nil, false
	}
	return *p, true
}

// Stats returns the counters of every interface that has been served, by
// interface name.
func (a *Announcer) Stats() map[string]InterfaceStats {
	return a.stats.snapshot()
}

// report is the responders' non-blocking way to hand over a conflict. The
// queue is bounded: when it is full the conflict is dropped (it is still
// counted), and the next frame of the same claim reports it.
func (a *Announcer) report(c Conflict) {
	select {
	case a.conflicts <- c:
	default:
	}
}

// Run serves until ctx is done, then closes every socket and returns after
// every goroutine it started has finished. It returns nil on cancellation and
// an error only if it cannot watch the host's interfaces at all.
//
// Every socket is opened on the goroutine that called Run, so a caller that
// locked that goroutine's thread into a network namespace serves that
// namespace.
func (a *Announcer) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("netio: Run called while running")
	}
	defer a.running.Store(false)

	w, err := a.sys.watch()
	if err != nil {
		return fmt.Errorf("netio: watch interfaces: %w", err)
	}
	l := &loop{
		a:        a,
		links:    make(map[int]link),
		addrs:    make(map[ifAddr]struct{}),
		ports:    make(map[string]*port),
		retry:    make(map[string]time.Time),
		seen:     desiredSet{},
		portDown: make(chan *port, 16),
		events:   make(chan netEvent, 16),
	}
	defer l.wg.Wait()
	defer l.closeAll()
	defer w.close()

	if err := l.resync(); err != nil {
		return fmt.Errorf("netio: list interfaces: %w", err)
	}
	l.publish()
	l.wg.Go(func() { l.watch(ctx, w) })
	return l.run(ctx)
}

// Interface flags as the kernel reports them in ifinfomsg.
const (
	flagUp       = 0x1
	flagLoopback = 0x8
	flagRunning  = 0x40
	flagNoARP    = 0x80
)

// link is the loop's knowledge of one kernel interface.
type link struct {
	index int
	name  string
	mac   net.HardwareAddr
	flags uint32
}

// usable reports whether neighbours can reach us on the link: up, with
// carrier, and Ethernet-like.
func (l link) usable() bool {
	return l.flags&(flagUp|flagRunning) == flagUp|flagRunning &&
		l.flags&(flagLoopback|flagNoARP) == 0 && len(l.mac) == 6
}

// resolves reports whether the kernel does neighbour resolution for
// addresses on the link, so that an address configured there is the host's
// own to answer for.
func (l link) resolves() bool {
	return l.flags&(flagLoopback|flagNoARP) == 0
}

// ifAddr is an address configured on a link, with its prefix length.
type ifAddr struct {
	index  int
	prefix netip.Prefix
}

// port is everything open on one interface.
type port struct {
	ifi    iface
	arp    *arpResponder
	ndp    *ndpResponder
	groups groupJoiner
	joined map[netip.Addr]int // solicited-node group -> owned IPs in it
	closed atomic.Bool
}

// burst is a run of announcements for IPs that were added together.
type burst struct {
	ips  []netip.Addr
	left int
	next time.Time
}

// loop is the state of one Run, owned by Run's goroutine.
type loop struct {
	a        *Announcer
	links    map[int]link
	addrs    map[ifAddr]struct{}
	ports    map[string]*port
	retry    map[string]time.Time // interface -> no reopen before
	seen     desiredSet           // desired set the loop last acted on
	seenPtr  *desiredSet
	names    map[string]bool // interfaces named in seen
	bursts   []*burst
	portDown chan *port
	events   chan netEvent
	wg       sync.WaitGroup
	// The refresh round: refresh is when its next slice is due, refreshQ
	// what it has yet to announce, refreshGap the time between slices.
	refresh    time.Time
	refreshQ   []netip.Addr
	refreshGap time.Duration
}

func (l *loop) run(ctx context.Context) error {
	log := l.a.log
	log.Info("netio running")
	defer log.Info("netio stopped")
	if r := l.a.opts.AnnounceRefresh; r > 0 {
		l.refresh = time.Now().Add(r)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.reconcile()
		timer.Stop()
		var fire <-chan time.Time
		if next := l.nextDeadline(); !next.IsZero() {
			timer.Reset(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.a.wake:
		case ev := <-l.events:
			l.apply(ev)
		drain:
			// Apply whatever else is queued before publishing, so a
			// burst of address changes is one rebuild of the host set
			// and of the links.
			for {
				select {
				case ev := <-l.events:
					l.apply(ev)
				default:
					break drain
				}
			}
			l.publish()
		case p := <-l.portDown:
			if l.ports[p.ifi.name] == p {
				log.Warn("socket failed; reopening", "interface", p.ifi.name)
				l.closePort(p)
				l.retry[p.ifi.name] = time.Now().Add(reopenBackoff)
			}
		case c := <-l.a.conflicts:
			if f := l.a.opts.OnConflict; f != nil {
				f(c)
			}
		case <-fire:
			l.announceDue()
		}
	}
}

// nextDeadline is the earliest time the loop has something to do by itself.
func (l *loop) nextDeadline() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, b := range l.bursts {
		earlier(b.next)
	}
	for _, t := range l.retry {
		earlier(t)
	}
	earlier(l.refresh)
	return next
}

// reconcile brings ports, group memberships and bursts in line with the
// desired set and the interfaces as last seen.
func (l *loop) reconcile() {
	dp := l.a.view.desired.Load()
	desired := *dp
	changed := dp != l.seenPtr
	if changed {
		l.names = make(map[string]bool)
		for _, name := range desired {
			l.names[name] = true
		}
	}
	now := time.Now()
	byName := make(map[string]link, len(l.links))
	for _, ln := range l.links {
		byName[ln.name] = ln
	}
	for name, p := range l.ports {
		if ln, ok := byName[name]; !l.names[name] || !ok || !p.servable(ln) {
			l.closePort(p)
		}
	}
	opened := make(map[string]bool)
	for name := range l.names {
		ln, ok := byName[name]
		if _, open := l.ports[name]; open || !ok || !ln.usable() {
			continue
		}
		if t, ok := l.retry[name]; ok && now.Before(t) {
			continue
		}
		delete(l.retry, name)
		if err := l.openPort(ln); err != nil {
			l.a.log.Error("cannot serve interface", "interface", name, "err", err)
			l.retry[name] = now.Add(reopenBackoff)
			continue
		}
		opened[name] = true
	}
	for name := range l.retry {
		if !l.names[name] {
			delete(l.retry, name)
		}
	}
	if !changed && len(opened) == 0 {
		return
	}

	// New IPs, IPs that moved, and every IP of a port that just opened get
	// a burst.
	var fresh []netip.Addr
	for ip, name := range desired {
		if old, ok := l.seen[ip]; !ok || old != name || opened[name] {
			fresh = append(fresh, ip)
		}
	}
	for _, p := range l.ports {
		if changed || opened[p.ifi.name] {
			l.syncGroups(p, desired)
		}
	}
	l.seen, l.seenPtr = desired, dp
	if len(fresh) > 0 && l.a.opts.AnnounceCount > 0 {
		l.bursts = append(l.bursts, &burst{ips: fresh, left: l.a.opts.AnnounceCount, next: now})
	}
}

// servable reports whether p's sockets still serve ln: the same kernel
// interface, with the same MAC, still usable.
func (p *port) servable(ln link) bool {
	return ln.usable() && ln.index == p.ifi.index && string(ln.mac) == string(p.ifi.mac)
}

// announceDue sends every burst and refresh that is due.
func (l *loop) announceDue() {
	now := time.Now()
	desired := *l.a.view.desired.Load()
	kept := l.bursts[:0]
	for _, b := range l.bursts {
		if now.Before(b.next) {
			kept = append(kept, b)
			continue
		}
		l.announce(b.ips, desired)
		b.left--
		if b.left > 0 {
			b.next = now.Add(l.a.opts.AnnounceInterval)
			kept = append(kept, b)
		}
	}
	clear(l.bursts[len(kept):])
	l.bursts = kept
	if !l.refresh.IsZero() && !now.Before(l.refresh) {
		l.refreshSlice(now, desired)
	}
}

// refreshSlice is the number of addresses a refresh announces at once: one
// sendmmsg per port and family.
const refreshSlice = announceBatch

// refreshSlice re-announces the next slice of a refresh round. A round
// announces every owned address once per AnnounceRefresh, in slices spread
// evenly over it, so that 5,000 addresses are some 64 broadcasts every
// 0.8 s for the segment's hosts to process rather than 5,000 at once,
// and the loop, which also applies new sets and link changes, is never
// busy for long. Addresses added during a round have had their burst and
// wait for the next one.
func (l *loop) refreshSlice(now time.Time, desired desiredSet) {
	if len(l.refreshQ) == 0 {
		l.refreshQ = slices.SortedFunc(maps.Keys(desired), netip.Addr.Compare)
		parts := max(1, (len(l.refreshQ)+refreshSlice-1)/refreshSlice)
		l.refreshGap = l.a.opts.AnnounceRefresh / time.Duration(parts)
	}
	if n := min(len(l.refreshQ), refreshSlice); n > 0 {
		l.announce(l.refreshQ[:n], desired)
		l.refreshQ = l.refreshQ[n:]
	}
	l.refresh = now.Add(l.refreshGap)
}

// announce sends one announcement for each of ips, or for every desired IP
// if ips is nil. What is announced is checked against the current desired
// set, so an IP removed mid-burst is never announced again, and nothing is
// once the answer deadline has passed.
func (l *loop) announce(ips []netip.Addr, desired desiredSet) {
	if l.a.view.expired() {
		return
	}
	// Frames per port and family, sent in batches: a burst of thousands of
	// new addresses costs a few system calls, not one per address.
	type frames struct{ arp, ndp [][]byte }
	pending := map[*port]*frames{}
	build := func(ip netip.Addr) {
		name, ok := desired[ip]
		if !ok {
			return
		}
		p := l.ports[name]
		if p == nil || !l.a.view.answers(ip, name) {
			return
		}
		fs := pending[p]
		if fs == nil {
			fs = &frames{}
			pending[p] = fs
		}
		var f []byte
		var err error
		if ip.Is4() {
			if f, err = p.arp.announcement(ip); err == nil {
				fs.arp = append(fs.arp, f)
			}
		} else if f, err = p.ndp.announcement(ip); err == nil {
			fs.ndp = append(fs.ndp, f)
		}
		if err != nil {
			l.a.log.Debug("announce failed", "ip", ip, "err", err)
		}
	}
	if ips == nil {
		for ip := range desired {
			build(ip)
		}
	} else {
		for _, ip := range ips {
			build(ip)
		}
	}
	for p, fs := range pending {
		// A failing socket is reported by its reader; one line per burst
		// would still be too many for 10,000 IPs.
		if err := sendAnnouncements(p.arp.conn, p.arp.stats, fs.arp); err != nil {
			l.a.log.Debug("announce failed", "interface", p.ifi.name, "err", err)
		}
		if err := sendAnnouncements(p.ndp.conn, p.ndp.stats, fs.ndp); err != nil {
			l.a.log.Debug("announce failed", "interface", p.ifi.name, "err", err)
		}
	}
}

// openPort opens both responders and the group joiner on ln and starts their
// readers.
func (l *loop) openPort(ln link) error {
	ifi := iface{name: ln.name, index: ln.index, mac: ln.mac}
	arpConn, err := l.a.sys.openARP(ifi)
	if err != nil {
		return err
	}
	ndpConn, err := l.a.sys.openNDP(ifi)
	if err != nil {
		arpConn.Close()
		return err
	}
	groups, err := l.a.sys.openGroups(ifi)
	if err != nil {
		arpConn.Close()
		ndpConn.Close()
		return err
	}
	stats := l.a.stats.get(ln.name)
	e := env{view: l.a.view, report: l.a.report}
	p := &port{
		ifi:    ifi,
		arp:    newARPResponder(ifi, arpConn, e, &stats.v4),
		ndp:    newNDPResponder(ifi, ndpConn, e, &stats.v6),
		groups: groups,
		joined: make(map[netip.Addr]int),
	}
	l.ports[ln.name] = p
	for _, serve := range []func() error{p.arp.serve, p.ndp.serve} {
		l.wg.Go(func() {
			err := serve()
			if p.closed.Load() {
				return
			}
			l.a.log.Debug("read failed", "interface", ifi.name, "err", err)
			// Never blocks: the loop reads portDown until ctx is done,
			// and after that nobody needs to know.
			select {
			case l.portDown <- p:
			default:
			}
		})
	}
	l.a.log.Info("serving interface", "interface", ln.name, "index", ln.index, "mac", ln.mac.String())
	return nil
}

func (l *loop) closePort(p *port) {
	if p.closed.Swap(true) {
		return
	}
	delete(l.ports, p.ifi.name)
	p.arp.conn.Close()
	p.ndp.conn.Close()
	p.groups.Close()
	l.a.log.Info("stopped serving interface", "interface", p.ifi.name)
}

func (l *loop) closeAll() {
	for _, p := range l.ports {
		l.closePort(p)
	}
}

// syncGroups joins the solicited-node group of every owned IPv6 address on
// p's interface and leaves the groups no owned address needs any more.
func (l *loop) syncGroups(p *port, desired desiredSet) {
	want := make(map[netip.Addr]int)
	for ip, name := range desired {
		if name == p.ifi.name && ip.Is6() {
			want[solicitedNode(ip)]++
		}
	}
	failed := 0
	var firstErr error
	for g := range p.joined {
		if _, ok := want[g]; !ok {
			if err := p.groups.leave(g); err != nil && firstErr == nil {
				firstErr = err
			}
			delete(p.joined, g)
		}
	}
	for g, n := range want {
		if _, ok := p.joined[g]; !ok {
			if err := p.groups.join(g); err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
		}
		p.joined[g] = n
	}
	if firstErr != nil {
		l.a.log.Warn("solicited-node groups incomplete; multicast solicitations may not reach this host",
			"interface", p.ifi.name, "failed", failed, "err", firstErr)
	}
}

// watch forwards link and address changes to the loop until ctx is done or
// the watcher fails.
func (l *loop) watch(ctx context.Context, w watcher) {
	for {
		ev, err := w.read()
		if err != nil {
			if ctx.Err() == nil {
				l.a.log.Error("watching interfaces failed; interface changes are no longer followed", "err", err)
			}
			return
		}
		select {
		case l.events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// apply records one batch of kernel notifications; publish makes them
// visible.
func (l *loop) apply(ev netEvent) {
	if ev.resync {
		if err := l.resync(); err != nil {
			l.a.log.Error("re-listing interfaces failed", "err", err)
		}
		return
	}
	for _, m := range ev.links {
		// Close at once rather than at the next reconcile: a down and
		// up in the same batch must still re-open and re-announce.
		if p := l.ports[m.name]; p != nil && (m.deleted || !p.servable(m.link)) {
			l.closePort(p)
		}
		if m.deleted {
			delete(l.links, m.index)
			for k := range l.addrs {
				if k.index == m.index {
					delete(l.addrs, k)
				}
			}
			continue
		}
		l.links[m.index] = m.link
	}
	for _, m := range ev.addrs {
		k := ifAddr{index: m.index, prefix: m.prefix}
		if m.deleted {
			delete(l.addrs, k)
		} else {
			l.addrs[k] = struct{}{}
		}
	}
}

// resync replaces everything known about interfaces with a fresh listing,
// at start and whenever notifications were lost.
func (l *loop) resync() error {
	links, addrs, err := l.a.sys.list()
	if err != nil {
		return err
	}
	clear(l.links)
	clear(l.addrs)
	l.apply(netEvent{links: links, addrs: addrs})
	return nil
}

// publish rebuilds what others read of the links and addresses recorded:
// the set of addresses the host answers for itself, and the Links
// snapshot, which only replaces the old one (and calls OnLinks) when it
// differs.
func (l *loop) publish() {
	host := make(addrSet, len(l.addrs))
	for k := range l.addrs {
		if ln, ok := l.links[k.index]; !ok || ln.resolves() {
			host[k.prefix.Addr().Unmap()] = struct{}{}
		}
	}
	l.a.view.host.Store(&host)

	links := snapshotLinks(l.links, l.addrs)
	if old := l.a.links.Load(); old != nil && slices.EqualFunc(*old, links, Link.equal) {
		return
	}
	l.a.links.Store(&links)
	if f := l.a.opts.OnLinks; f != nil {
		f()
	}
}

// snapshotLinks is the Links view of the links and addresses the loop
// knows.
func snapshotLinks(links map[int]link, addrs map[ifAddr]struct{}) []Link {
	out := make([]Link, 0, len(links))
	at := make(map[int]int, len(links)) // link index -> position in out
	for _, ln := range links {
		if ln.flags&flagLoopback != 0 {
			continue
		}
		at[ln.index] = len(out)
		out = append(out, Link{Name: ln.name, Index: ln.index, Usable: ln.usable(), MAC: macString(ln.mac)})
	}
	for k := range addrs {
		if i, ok := at[k.index]; ok {
			out[i].Prefixes = append(out[i].Prefixes, k.prefix.Masked())
		}
	}
	for i := range out {
		slices.SortFunc(out[i].Prefixes, netip.Prefix.Compare)
		out[i].Prefixes = slices.Compact(out[i].Prefixes)
	}
	// By index too: within one batch of renames two links may briefly
	// share a name.
	slices.SortFunc(out, func(a, b Link) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Index, b.Index))
	})
	return out
}

func (l Link) equal(o Link) bool {
	return l.Name == o.Name && l.Index == o.Index && l.Usable == o.Usable && l.MAC == o.MAC && slices.Equal(l.Prefixes, o.Prefixes)
}

func macString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}
