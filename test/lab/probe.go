package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Prober asks for a set of addresses from the client namespace, over and
// over, round-robin: an ARP request for IPv4, a Neighbor Solicitation for
// IPv6. It records every answer and every announcement (gratuitous ARP,
// unsolicited Neighbor Advertisement) for the addresses, with the MAC that
// sent it and the kernel's receive timestamp at the client interface, and
// when each request left (the kernel's timestamp too). Timestamps are wall
// clock times, comparable with time.Now.
//
// To stay light on a small machine, records are kept as runs: consecutive
// answers from one MAC with no pause longer than RunGap between them form
// one Run, and so do requests sent no later than two periods after the
// previous one (a longer pause means the client itself stalled).
type Prober struct {
	client  *NS
	period  time.Duration
	fd, tx  int
	ifindex int

	mu    sync.Mutex
	addrs map[netip.Addr]*probeLog
	due   []probeDue

	stop func()
}

// RunGap ends a run of answers: one that comes more than RunGap after the
// previous one of its MAC starts a new run.
const RunGap = 100 * time.Millisecond

// A Run is consecutive answers from one MAC, or consecutive requests (MAC
// empty), for one address.
type Run struct {
	MAC         string // lower case; "" for requests
	First, Last time.Time
	N           int
}

// An Announcement is a gratuitous ARP or an unsolicited Neighbor
// Advertisement for an address.
type Announcement struct {
	MAC string
	At  time.Time
}

// ProbeLog is what the prober recorded for one address.
type ProbeLog struct {
	Replies       []Run // every MAC's runs, in the order they started
	Requests      []Run
	Announcements []Announcement
}

type probeLog struct {
	ProbeLog
	open map[string]int // MAC -> index of its latest run in Replies
}

type probeDue struct {
	ip      netip.Addr
	next    time.Time
	request []byte // the frame that asks for ip
}

// StartProber starts probing from the client namespace: each watched
// address once per period. It stops at t's cleanup. Watch says what to ask
// for.
func (n *Net) StartProber(t testing.TB, period time.Duration) *Prober {
	t.Helper()
	p := &Prober{client: n.Client, period: period, addrs: map[netip.Addr]*probeLog{}}
	if err := n.Client.Do(p.open); err != nil {
		t.Fatalf("lab: prober: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.receive(ctx) })
	wg.Go(func() { p.send(ctx) })
	p.stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		unix.Close(p.fd)
		unix.Close(p.tx)
	})
	t.Cleanup(p.stop)
	return p
}

// Stop stops probing; the records stay readable.
func (p *Prober) Stop() { p.stop() }

// probeFilter passes ARP, and ICMPv6 Neighbor Solicitations and
// Advertisements carried directly in IPv6 (offsets from the Ethernet
// header).
var probeFilter = func() []unix.SockFilter {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_ARP, SkipTrue: 5},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6, SkipFalse: 5},
		bpf.LoadAbsolute{Off: 20, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_ICMPV6, SkipFalse: 3},
		bpf.LoadAbsolute{Off: 54, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: 135, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out
}()

// open makes the sockets, in the client namespace: one that sees frames
// both ways with kernel timestamps, and one that sends (a packet socket
// never sees its own frames, so requests leave through the other).
func (p *Prober) open() error {
	ifi, err := net.InterfaceByName(p.client.Link)
	if err != nil {
		return err
	}
	p.ifindex = ifi.Index
	proto := int(htons(unix.ETH_P_ALL))
	if p.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	if p.tx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		unix.Close(p.fd)
		return fmt.Errorf("packet socket: %w", err)
	}
	fail := func(err error) error {
		unix.Close(p.fd)
		unix.Close(p.tx)
		return err
	}
	prog := unix.SockFprog{Len: uint16(len(probeFilter)), Filter: &probeFilter[0]}
	if err := unix.SetsockoptSockFprog(p.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fail(fmt.Errorf("attach filter: %w", err))
	}
	if err := unix.Bind(p.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fail(fmt.Errorf("bind: %w", err))
	}
	_ = unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail(fmt.Errorf("SO_TIMESTAMPNS: %w", err))
	}
	// Reads wake up this often to notice the end of the probing.
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail(fmt.Errorf("SO_RCVTIMEO: %w", err))
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Watch makes ips the set of addresses asked for. Records of addresses
// dropped from the set are kept.
func (p *Prober) Watch(ips ...netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var due []probeDue
	for i, ip := range ips {
		if _, ok := p.addrs[ip]; !ok {
			p.addrs[ip] = &probeLog{open: map[string]int{}}
		}
		if j := slices.IndexFunc(p.due, func(d probeDue) bool { return d.ip == ip }); j >= 0 {
			due = append(due, p.due[j])
			continue
		}
		req, err := p.request(ip)
		if err != nil {
			// Only an invalid address has no request: a caller's bug.
			panic(fmt.Sprintf("lab: prober: %v: %v", ip, err))
		}
		next := now.Add(p.period * time.Duration(i) / time.Duration(len(ips)))
		due = append(due, probeDue{ip, next, req})
	}
	p.due = due
}

// Log returns a copy of what was recorded for ip.
func (p *Prober) Log(ip netip.Addr) ProbeLog {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.addrs[ip]
	if !ok {
		return ProbeLog{}
	}
	return ProbeLog{
		Replies:       slices.Clone(l.Replies),
		Requests:      slices.Clone(l.Requests),
		Announcements: slices.Clone(l.Announcements),
	}
}

// Addrs lists every address ever watched.
func (p *Prober) Addrs() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]netip.Addr, 0, len(p.addrs))
	for ip := range p.addrs {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// send asks for every due address every few milliseconds (a quarter period
// at most), so that requests are spread over the period rather than sent in
// bursts.
func (p *Prober) send(ctx context.Context) {
	tick := time.NewTicker(max(min(p.period/4, 5*time.Millisecond), 250*time.Microsecond))
	defer tick.Stop()
	var frames [][]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		frames = frames[:0]
		p.mu.Lock()
		for i := range p.due {
			d := &p.due[i]
			if d.next.After(now) {
				continue
			}
			// A late sender does not catch up with a burst.
			if d.next = d.next.Add(p.period); d.next.Before(now) {
				d.next = now
			}
			frames = append(frames, d.request)
		}
		p.mu.Unlock()
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: p.ifindex, Halen: 6}
			copy(sa.Addr[:], f[0:6])
			// A failed send shows as a request missing from the
			// records: nothing is blamed on the daemons for it.
			_ = unix.Sendto(p.tx, f, 0, sa)
		}
	}
}

// request builds the frame that asks for ip: an ARP request, or a Neighbor
// Solicitation to ip's solicited-node group.
func (p *Prober) request(ip netip.Addr) ([]byte, error) {
	c := p.client
	if ip.Is4() {
		return ARPFrame(arp.OperationRequest, c.MAC, c.IPv4, make(net.HardwareAddr, 6), ip, broadcastMAC)
	}
	snm, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return nil, err
	}
	return NDPFrame(c.MAC, MulticastMAC(snm), c.IPv6, snm, 255, Solicitation(ip, c.MAC))
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// receive records frames until ctx is done.
func (p *Prober) receive(ctx context.Context) {
	buf, oob := make([]byte, 2048), make([]byte, 128)
	for ctx.Err() == nil {
		n, oobn, _, from, err := unix.Recvmsg(p.fd, buf, oob, 0)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		at := kernelTime(oob[:oobn])
		sll, _ := from.(*unix.SockaddrLinklayer)
		outgoing := sll != nil && sll.Pkttype == unix.PACKET_OUTGOING
		toUs := sll != nil && sll.Pkttype == unix.PACKET_HOST
		p.record(buf[:n], outgoing, toUs, at)
	}
}

func kernelTime(oob []byte) time.Time {
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			return time.Unix(int64(binary.NativeEndian.Uint64(m.Data[0:8])), int64(binary.NativeEndian.Uint64(m.Data[8:16])))
		}
	}
	return time.Now()
}

// frameKind is what a frame means to the prober.
type frameKind int

const (
	frameOther frameKind = iota
	frameRequest
	frameReply
	frameAnnouncement
)

// classify reads an ARP or Neighbor Discovery frame: which address it is
// about, and the MAC that speaks for it.
func classify(f []byte, outgoing bool) (frameKind, netip.Addr, string) {
	if len(f) < 14 {
		return frameOther, netip.Addr{}, ""
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case unix.ETH_P_ARP:
		if len(f) < 42 {
			return frameOther, netip.Addr{}, ""
		}
		a := f[14:]
		op := binary.BigEndian.Uint16(a[6:8])
		sha := net.HardwareAddr(a[8:14]).String()
		spa := netip.AddrFrom4([4]byte(a[14:18]))
		tpa := netip.AddrFrom4([4]byte(a[24:28]))
		switch {
		case outgoing && op == 1:
			return frameRequest, tpa, ""
		case outgoing:
			return frameOther, netip.Addr{}, ""
		case op == 2:
			return frameReply, spa, sha
		case op == 1 && spa == tpa:
			return frameAnnouncement, spa, sha
		}
	case unix.ETH_P_IPV6:
		if len(f) < 54+24 || f[20] != unix.IPPROTO_ICMPV6 {
			return frameOther, netip.Addr{}, ""
		}
		m, err := ndp.ParseMessage(f[54:])
		if err != nil {
			return frameOther, netip.Addr{}, ""
		}
		switch m := m.(type) {
		case *ndp.NeighborSolicitation:
			if outgoing {
				return frameRequest, m.TargetAddress, ""
			}
		case *ndp.NeighborAdvertisement:
			if outgoing {
				break
			}
			mac := net.HardwareAddr(f[6:12]).String()
			for _, o := range m.Options {
				if ll, ok := o.(*ndp.LinkLayerAddress); ok && ll.Direction == ndp.Target {
					mac = ll.Addr.String()
				}
			}
			if m.Solicited {
				return frameReply, m.TargetAddress, mac
			}
			return frameAnnouncement, m.TargetAddress, mac
		}
	}
	return frameOther, netip.Addr{}, ""
}

// record files a frame. A reply counts as an answer only when it is
// addressed to the client: anything broadcast (a forged gratuitous ARP
// reply, say) is an announcement, which the client did not ask for.
func (p *Prober) record(f []byte, outgoing, toUs bool, at time.Time) {
	kind, ip, mac := classify(f, outgoing)
	if kind == frameOther {
		return
	}
	if kind == frameReply && !toUs {
		kind = frameAnnouncement
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.addrs[ip]
	if !ok {
		return
	}
	switch kind {
	case frameRequest:
		if n := len(l.Requests); n > 0 && l.Requests[n-1].continues(at, 2*p.period) {
			l.Requests[n-1].add(at)
		} else {
			l.Requests = append(l.Requests, Run{First: at, Last: at, N: 1})
		}
	case frameReply:
		if i, ok := l.open[mac]; ok && l.Replies[i].continues(at, RunGap) {
			l.Replies[i].add(at)
		} else {
			l.open[mac] = len(l.Replies)
			l.Replies = append(l.Replies, Run{MAC: mac, First: at, Last: at, N: 1})
		}
	case frameAnnouncement:
		l.Announcements = append(l.Announcements, Announcement{MAC: mac, At: at})
	}
}

// continues reports whether an event at at, gap at most after the run's
// last, belongs to the run.
func (r *Run) continues(at time.Time, gap time.Duration) bool { return at.Sub(r.Last) <= gap }

func (r *Run) add(at time.Time) {
	if at.After(r.Last) {
		r.Last = at
	}
	r.N++
}
