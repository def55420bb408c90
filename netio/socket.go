package netio

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// The responders read their sockets with recvmmsg and answer with
// sendmmsg, a batch per system call, and wait for frames in Go's netpoller
// through an epoll instance that watches the socket (and an eventfd that
// Close writes). Not in poll(2) on a thread of their own: a thread blocked
// in a system call keeps its P until the runtime's monitor thread (sysmon)
// takes it back, and every such wait and wake-up sets sysmon polling every
// 20 µs again, which was a fifth of the daemons' CPU in a cold start and
// in an idle cluster.
const (
	// recvBatch is how many frames one recvmmsg may return. Under load
	// it turns a system call per frame into one per batch.
	recvBatch = 32
	// frameBufLen bounds a received frame. Longer frames arrive
	// truncated and fail validation; no frame that is answered comes
	// near that size.
	frameBufLen = 2048
	// pollInterval is the socket's receive and send timeout: how long
	// ReadFrom may take to notice Close (the kernel does not wake a thread
	// blocked on a packet socket when another thread closes it), and how
	// long a full send buffer may hold a writer.
	pollInterval = 500 * time.Millisecond
	rcvBuf       = 4 << 20
	// staleRequest is how long a request may have waited in the socket
	// and still be answered: far above the time a busy reader takes to
	// reach it, far below a pause that lets peers take over. A requester
	// that got no answer asks again about a second later (Linux's ARP
	// retrans_time, RFC 4861's RetransTimer).
	staleRequest = 200 * time.Millisecond
	// oobLen holds the control data of one received frame: a single
	// SCM_TIMESTAMPNS message, CMSG_SPACE(sizeof(struct timespec)).
	oobLen = 32
)

// replyQueue is implemented by conns that send the answers to one batch of
// received frames together.
type replyQueue interface {
	// queueReply copies frame to be sent, with the other answers to the
	// batch being handled, once the batch is; sent is incremented if it
	// goes out. It may only be called from within the handle callback of
	// serveFrames.
	queueReply(frame []byte, sent *atomic.Uint64)
}

// frameServer is implemented by conns that read frames faster than one
// ReadFrom at a time; a responder's serve uses it when its conn has it.
type frameServer interface {
	// serveFrames calls handle with every frame received, from one
	// goroutine, until the conn is closed or fails; stale says the frame
	// waited in the socket longer than staleRequest. The frame is only
	// valid during the call.
	serveFrames(handle func(frame []byte, stale bool)) error
}

var (
	_ net.PacketConn = (*packetSocket)(nil)
	_ frameServer    = (*packetSocket)(nil)
	_ replyQueue     = (*packetSocket)(nil)
)

// packetSocket is an AF_PACKET socket (SOCK_RAW: whole Ethernet frames in
// and out) bound to one interface and EtherType: serveFrames reads without
// blocking; ReadFrom and the writes block, bounded by the socket's receive
// and send timeouts.
//
// Its descriptor is closed only once nothing uses it any more: a reader
// keeps the number while it waits, and closing it under the reader
// would let the next socket opened anywhere in the process reuse the
// number and be read by the wrong reader. Every operation holds a use for
// its duration; Close marks the socket closed and wakes a waiting reader,
// and whoever drops the last use closes the descriptors.
type packetSocket struct {
	fd int
	// wake is an eventfd that Close writes to: serveFrames waits for
	// frames on both, so Close ends the wait at once.
	wake int
	// waiter is an epoll instance watching fd and wake, registered with
	// Go's netpoller: serveFrames waits on it without holding a thread.
	waiter   *os.File
	waitConn syscall.RawConn
	waitEvs  [2]unix.EpollEvent
	ready    func(ep uintptr) bool // made once: a wait allocates nothing
	mac      net.HardwareAddr
	// uses counts operations in progress; closedBit is set by Close.
	uses atomic.Int64

	// Owned by the one goroutine in serveFrames.
	msgs [recvBatch]mmsghdr
	iovs [recvBatch]unix.Iovec
	bufs [recvBatch][frameBufLen]byte
	oobs [recvBatch][oobLen]byte
	// Answers queued while a batch is handled, sent with one sendmmsg.
	out     [recvBatch]mmsghdr
	outIovs [recvBatch]unix.Iovec
	outBufs [recvBatch][replyBufLen]byte
	outSent [recvBatch]*atomic.Uint64
	nout    int
}

// replyBufLen bounds a queued answer; ARP replies and Neighbor
// Advertisements are shorter. Anything longer is written at once.
const replyBufLen = 128

const closedBit = 1 << 62

// mmsghdr is struct mmsghdr of recvmmsg(2), which x/sys/unix does not
// define.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// listenPacket opens an AF_PACKET socket for whole Ethernet frames of one
// EtherType on ifi, with filter attached before it is bound (so no frame
// reaches it unfiltered), that does not see the frames this host sends:
// without PACKET_IGNORE_OUTGOING every reply and announcement we send, and
// every request the host's own kernel sends, would come back to us.
func listenPacket(ifi iface, etherType uint16, filter []bpfInstruction) (net.PacketConn, error) {
	s, err := openPacketSocket(ifi, etherType, filter)
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", ifi.name, err)
	}
	return s, nil
}

func openPacketSocket(ifi iface, etherType uint16, filter []bpfInstruction) (*packetSocket, error) {
	// Protocol 0: the socket receives nothing until bind names the
	// EtherType and the interface.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := configure(fd, ifi, etherType, filter); err != nil {
		unix.Close(fd)
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	waiter, waitConn, err := newWaiter(fd, wake)
	if err != nil {
		unix.Close(fd)
		unix.Close(wake)
		return nil, err
	}
	s := &packetSocket{fd: fd, wake: wake, waiter: waiter, waitConn: waitConn, mac: ifi.mac}
	s.ready = s.readyToRead
	for i := range s.msgs {
		s.iovs[i].Base = &s.bufs[i][0]
		s.iovs[i].SetLen(frameBufLen)
		s.msgs[i].hdr.Iov = &s.iovs[i]
		s.msgs[i].hdr.SetIovlen(1)
		s.msgs[i].hdr.Control = &s.oobs[i][0]
		s.msgs[i].hdr.SetControllen(oobLen)
		s.outIovs[i].Base = &s.outBufs[i][0]
		s.out[i].hdr.Iov = &s.outIovs[i]
		s.out[i].hdr.SetIovlen(1)
	}
	return s, nil
}

// newWaiter returns a non-blocking epoll instance watching fds for input,
// as a File in Go's netpoller (an epoll instance is itself pollable), and
// its RawConn.
func newWaiter(fds ...int) (*os.File, syscall.RawConn, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("epoll_create1: %w", err)
	}
	for _, fd := range fds {
		if err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			break
		}
	}
	if err == nil {
		err = unix.SetNonblock(ep, true)
	}
	if err != nil {
		unix.Close(ep)
		return nil, nil, fmt.Errorf("epoll: %w", err)
	}
	f := os.NewFile(uintptr(ep), "epoll")
	rc, err := f.SyscallConn()
	if err == nil {
		// Fails unless the File is in the netpoller: a wait would then
		// return at once, forever, and spin.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("epoll: %w", err)
	}
	return f, rc, nil
}

func configure(fd int, ifi iface, etherType uint16, filter []bpfInstruction) error {
	prog := make([]unix.SockFilter, len(filter))
	for i, ins := range filter {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		return fmt.Errorf("attach filter: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("set PACKET_IGNORE_OUTGOING: %w", err)
	}
	// Room for bursts of tens of thousands of requests per second;
	// without CAP_NET_ADMIN, up to net.core.rmem_max.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	// The kernel's receive time of every frame, so that requests that
	// waited in the socket while this process was stopped are not
	// answered. SO_TIMESTAMPNS rather than SO_TIMESTAMPING: the software
	// receive time is all that is needed, and it comes alone in one
	// timespec; SO_TIMESTAMPING's hardware stamps would be in the NIC's
	// clock, not comparable with time.Now. Set before bind, so no frame
	// is queued without it.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("set SO_TIMESTAMPNS: %w", err)
	}
	tv := unix.NsecToTimeval(pollInterval.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set SO_RCVTIMEO: %w", err)
	}
	// Every wait is bounded, sending too: a blocking socket whose send
	// buffer is full would otherwise hold the reader (and an announcing
	// loop) until the driver frees it.
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("set SO_SNDTIMEO: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifi.index}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// acquire registers a use; it fails once the socket is closed.
func (s *packetSocket) acquire() bool {
	for {
		u := s.uses.Load()
		if u&closedBit != 0 {
			return false
		}
		if s.uses.CompareAndSwap(u, u+1) {
			return true
		}
	}
}

func (s *packetSocket) release() {
	if s.uses.Add(-1) == closedBit {
		s.waiter.Close()
		unix.Close(s.fd)
		unix.Close(s.wake)
	}
}

func (s *packetSocket) closed() bool { return s.uses.Load()&closedBit != 0 }

// Close stops the socket. It does not wait: a reader waiting in
// serveFrames returns net.ErrClosed at once, one in ReadFrom within
// pollInterval. It holds a use itself while it wakes the reader, so the
// eventfd cannot be closed (and its number reused) under the write.
func (s *packetSocket) Close() error {
	if !s.acquire() {
		return nil
	}
	s.uses.Or(closedBit)
	// Any non-zero 8-byte count makes the eventfd readable, whatever the
	// byte order.
	_, _ = unix.Write(s.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	s.release()
	return nil
}

// serveFrames drains a busy socket a batch per system call without
// waiting, and waits in the netpoller once it is empty.
func (s *packetSocket) serveFrames(handle func(frame []byte, stale bool)) error {
	if !s.acquire() {
		return net.ErrClosed
	}
	defer s.release()
	for !s.closed() {
		n, errno := s.recv()
		switch errno {
		case 0:
		case unix.EAGAIN:
			s.wait()
			continue
		case unix.EINTR:
			continue
		case unix.ENETDOWN:
			// Reported once when the link goes down; the socket
			// works again when it comes up, and the Announcer
			// re-opens it anyway.
			continue
		default:
			return fmt.Errorf("recvmmsg: %w", errno)
		}
		// The kernel stamps frames with CLOCK_REALTIME, so they are
		// compared with the wall clock; one reading serves the batch.
		now := time.Now()
		for i := range n {
			m := &s.msgs[i]
			rx := rxTimestamp(s.oobs[i][:m.hdr.Controllen])
			handle(s.bufs[i][:m.len], stale(rx, now))
			// recvmmsg wrote back how much control data it used.
			m.hdr.SetControllen(oobLen)
		}
		s.flush()
		if n < recvBatch {
			// The queue was drained: wait for more right away
			// rather than ask recvmmsg first.
			s.wait()
		}
	}
	return net.ErrClosed
}

// rxTimestamp returns the kernel's receive time from a frame's control
// data, or the zero Time if it carries none.
func rxTimestamp(oob []byte) time.Time {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			return time.Unix(ts.Unix())
		}
		oob = rest
	}
	return time.Time{}
}

// stale reports whether a frame received at rx has waited too long by now
// to be answered. A frame without a receive time counts as received now. A
// step of the wall clock skews the frames in flight: stepped forward, they
// lose their answer (the requesters ask again); stepped back, old ones get
// one, as they would without the check.
func stale(rx, now time.Time) bool {
	return !rx.IsZero() && now.Sub(rx) > staleRequest
}

func (s *packetSocket) queueReply(frame []byte, sent *atomic.Uint64) {
	if s.nout == recvBatch || len(frame) > replyBufLen {
		if _, err := unix.Write(s.fd, frame); err == nil {
			sent.Add(1)
		}
		return
	}
	i := s.nout
	copy(s.outBufs[i][:], frame)
	s.outIovs[i].SetLen(len(frame))
	s.outSent[i] = sent
	s.nout++
}

// flush sends the queued answers. A frame the kernel refuses is dropped
// with the rest of the batch: the requesters ask again.
func (s *packetSocket) flush() {
	for done := 0; done < s.nout; {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.out[done])),
			uintptr(s.nout-done), 0, 0, 0)
		if errno != 0 || n == 0 {
			break
		}
		for i := done; i < done+int(n); i++ {
			s.outSent[i].Add(1)
		}
		done += int(n)
	}
	clear(s.outSent[:s.nout])
	s.nout = 0
}

// recv takes up to recvBatch queued frames without blocking; EAGAIN says
// there were none.
func (s *packetSocket) recv() (int, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])),
		recvBatch, unix.MSG_WAITFORONE|unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// wait blocks until a frame is queued or Close is called. An error
// returns early; the caller looks again.
func (s *packetSocket) wait() {
	_ = s.waitConn.Read(s.ready)
}

// readyToRead reports whether the socket or the eventfd has input, or the
// epoll instance ep failed; false makes the netpoller wait for ep.
func (s *packetSocket) readyToRead(ep uintptr) bool {
	n, err := unix.EpollWait(int(ep), s.waitEvs[:], 0)
	// An error, EINTR included, returns too: the caller's recvmmsg looks
	// again, rather than park while frames may be queued.
	return n > 0 || err != nil
}

// ReadFrom reads one frame. The responders use serveFrames instead; this
// is here for the net.PacketConn contract.
func (s *packetSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	if !s.acquire() {
		return 0, nil, net.ErrClosed
	}
	defer s.release()
	for !s.closed() {
		n, _, err := unix.Recvfrom(s.fd, b, 0)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			continue
		case err != nil:
			return 0, nil, fmt.Errorf("recvfrom: %w", err)
		}
		addr := &packet.Addr{}
		if n >= ethHeaderLen {
			addr.HardwareAddr = net.HardwareAddr(append([]byte(nil), b[6:12]...))
		}
		return n, addr, nil
	}
	return 0, nil, net.ErrClosed
}

// announceBatch bounds the frames of one sendmmsg of WriteBatch.
const announceBatch = 64

// WriteBatch sends whole Ethernet frames out of the bound interface, up to
// announceBatch with each sendmmsg. A frame the kernel refuses is skipped
// and the rest still go (one dropped announcement, not a whole round); it
// returns how many went out and the first error. It is safe to call
// concurrently with reads and other writes.
func (s *packetSocket) WriteBatch(frames [][]byte) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	var msgs [announceBatch]mmsghdr
	var iovs [announceBatch]unix.Iovec
	var first error
	sent := 0
	for next := 0; next < len(frames); {
		chunk := frames[next:min(len(frames), next+announceBatch)]
		for i, f := range chunk {
			iovs[i].Base = &f[0]
			iovs[i].SetLen(len(f))
			msgs[i].hdr.Iov = &iovs[i]
			msgs[i].hdr.SetIovlen(1)
		}
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msgs[0])),
			uintptr(len(chunk)), 0, 0, 0)
		runtime.KeepAlive(chunk)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			// sendmmsg fails only when its first frame does: skip it.
			if first == nil {
				first = fmt.Errorf("sendmmsg: %w", errno)
			}
			next++
		default:
			sent += int(n)
			next += max(int(n), 1)
		}
	}
	return sent, first
}

// WriteTo sends the whole Ethernet frame b out of the bound interface. The
// frame carries its own destination; addr is not consulted (SOCK_RAW
// packet sockets ignore the link-layer address of sendto too). It is safe
// to call concurrently with reads and other writes.
func (s *packetSocket) WriteTo(b []byte, _ net.Addr) (int, error) {
	if !s.acquire() {
		return 0, net.ErrClosed
	}
	defer s.release()
	n, err := unix.Write(s.fd, b)
	if err != nil {
		return n, fmt.Errorf("write: %w", err)
	}
	return n, nil
}

func (s *packetSocket) LocalAddr() net.Addr { return &packet.Addr{HardwareAddr: s.mac} }

var errNoDeadlines = errors.New("netio: packet socket has no deadlines")

func (*packetSocket) SetDeadline(time.Time) error      { return errNoDeadlines }
func (*packetSocket) SetReadDeadline(time.Time) error  { return errNoDeadlines }
func (*packetSocket) SetWriteDeadline(time.Time) error { return errNoDeadlines }
