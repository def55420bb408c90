package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A flood is sent by senders threads at once, in batches of up to batchLen
// frames per system call. Each frame's way through the bridge into a node's
// namespace, its kernel and the daemon's socket runs in the system call
// that sends it, about 15 µs of CPU here: one thread tops out near 50,000
// frames a second once the daemons and the API server take their share.
const (
	senders  = 2
	batchLen = 64
	// maxBurst bounds the frames a sender sends between two looks at the
	// clock.
	maxBurst = 1024
)

// flood sends frames over and over at rate for d, or until ctx is done,
// from the namespace ns, and counts what went out in rep.
func flood(ctx context.Context, ns *NS, frames []Frame, rate int, d time.Duration, rep *Report) error {
	var ss []*sender
	for range senders {
		s, err := ns.openSender()
		if err != nil {
			for _, s := range ss {
				unix.Close(s.fd)
			}
			return err
		}
		ss = append(ss, s)
	}
	parts := make([]Report, senders)
	errs := make([]error, senders)
	var wg sync.WaitGroup
	start := time.Now()
	for k, s := range ss {
		parts[k] = Report{Sent: map[Kind]int{}, Asked: map[netip.Addr]int{}, Forged: map[Claim]int{}}
		wg.Go(func() {
			defer unix.Close(s.fd)
			errs[k] = s.pace(ctx, start, frames, k, float64(rate)/senders, d, &parts[k])
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	for _, p := range parts {
		rep.merge(p)
	}
	return errors.Join(errs...)
}

// sender is a packet socket that only sends.
type sender struct {
	fd   int
	msgs [batchLen]mmsghdr
	iovs [batchLen]unix.Iovec
}

// mmsghdr is struct mmsghdr of sendmmsg(2), which x/sys/unix does not
// define.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// openSender opens a packet socket on the namespace's link that receives
// nothing (protocol 0).
func (ns *NS) openSender() (*sender, error) {
	s := &sender{fd: -1}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ns.Link)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		// Every wait bounded: a full send buffer holds a batch at most this long.
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hostile: sending socket in %s: %w", ns.Name, err)
	}
	for i := range s.msgs {
		s.msgs[i].hdr.Iov = &s.iovs[i]
		s.msgs[i].hdr.SetIovlen(1)
	}
	return s, nil
}

// pace sends this sender's share of the frames (every senders-th, from the
// k-th on) at rate, counting in rep. A sender that fell behind catches up,
// a bounded burst at a time, so the run still ends on time.
func (s *sender) pace(ctx context.Context, start time.Time, frames []Frame, k int, rate float64, d time.Duration, rep *Report) error {
	sent := 0
	batch := make([]Frame, 0, batchLen)
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= d {
			return nil
		}
		due := min(int(elapsed.Seconds()*rate), sent+maxBurst)
		for sent < due {
			batch = batch[:0]
			for i := sent; i < due && len(batch) < batchLen; i++ {
				batch = append(batch, frames[(i*senders+k)%len(frames)])
			}
			n, err := s.write(batch)
			switch {
			case err == unix.ENOBUFS: // the first frame was dropped
				rep.Refused++
				sent++
			case err == unix.EAGAIN || err == unix.EINTR:
				due = sent // the socket is full: try again later
			case err != nil:
				return fmt.Errorf("hostile: send: %w", err)
			}
			for _, f := range batch[:n] {
				rep.count(f)
			}
			sent += n
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// write sends frames with one sendmmsg and returns how many went out.
func (s *sender) write(frames []Frame) (int, error) {
	for i, f := range frames {
		s.iovs[i].Base = &f.Bytes[0]
		s.iovs[i].SetLen(len(f.Bytes))
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(len(frames)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
