package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Report is what a run sent and what came back.
type Report struct {
	Sent    map[Kind]int
	Elapsed time.Duration // from the first frame to the last
	// Asked counts the valid requests per address; Answers counts the
	// answers to them per address and answering MAC; Owners says who
	// should answer (Hostile.Ask).
	Asked   map[netip.Addr]int
	Answers map[netip.Addr]map[string]int
	Owners  map[netip.Addr]net.HardwareAddr
	// Silence is, per address asked for, the longest time without an
	// answer from its owner (Ask's MAC) while requests were sent.
	Silence map[netip.Addr]time.Duration
	// Unexpected counts answers sent to a foreign MAC: a malformed or
	// forged frame was answered.
	Unexpected int
	// Forged counts the forged frames per claim.
	Forged map[Claim]int
	// Refused counts frames the kernel had no room to send (not in Sent).
	Refused int
	// Dropped counts answers the receiving socket had no room for: they
	// are missing from Answers through no fault of the responders.
	Dropped int
}

// Total is the number of frames sent.
func (r Report) Total() int {
	n := 0
	for _, c := range r.Sent {
		n += c
	}
	return n
}

// Answered is how many requests for ip its owner answered.
func (r Report) Answered(ip netip.Addr) int {
	return r.Answers[ip][r.Owners[ip].String()]
}

// Wrong counts the answers for ip from other MACs than its owner's.
func (r Report) Wrong(ip netip.Addr) map[string]int {
	out := maps.Clone(r.Answers[ip])
	delete(out, r.Owners[ip].String())
	return out
}

// Rate is the frames sent per second.
func (r Report) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Total()) / r.Elapsed.Seconds()
}

// hostilePool bounds the distinct frames of a run; a longer run sends them
// again in the same order.
const hostilePool = 8192

// maxBurst bounds the frames sent back to back between two looks at the
// clock.
const maxBurst = 1024

// answerGrace is how long answers are awaited after the last request.
const answerGrace = 300 * time.Millisecond

// Run sends frames of the given kinds (see Frames) at rate frames per
// second for d, or until ctx is done, and counts the answers that come back
// to the requester and to the foreign MACs. A sender that falls behind (the
// machine is busy) catches up, so the rate holds over the run.
func (h Hostile) Run(ctx context.Context, kinds []Kind, rate int, d time.Duration) (Report, error) {
	if rate <= 0 || d <= 0 {
		return Report{}, fmt.Errorf("hostile: rate %d, duration %v", rate, d)
	}
	frames, err := h.Frames(kinds, min(hostilePool, max(1, int(float64(rate)*d.Seconds()))))
	if err != nil {
		return Report{}, err
	}
	g := h.generator()
	conn, err := h.listen()
	if err != nil {
		return Report{}, fmt.Errorf("hostile: %w", err)
	}
	defer conn.Close()
	rep := Report{Sent: map[Kind]int{}, Asked: map[netip.Addr]int{}, Forged: map[Claim]int{}, Owners: g.h.Ask}
	start := time.Now()
	rx := newAnswerLog(g.h.Ask, h.From.MAC, g.foreign, start)
	var wg sync.WaitGroup
	wg.Go(func() { rx.read(conn) })

	if err := send(ctx, conn, frames, rate, d, &rep); err != nil {
		return Report{}, err
	}
	rx.stop(time.Now())
	time.Sleep(answerGrace)
	conn.SetReadDeadline(time.Now())
	wg.Wait()
	rx.fill(&rep)
	if st, err := conn.Stats(); err == nil {
		rep.Dropped = int(st.Drops)
	}
	return rep, nil
}

// send sends frames over and over at rate for d, or until ctx is done,
// counting what went out in rep. Frames are written straight to the socket,
// a burst per wake-up, without the Go poller in between: at 50,000 frames
// a second the sender's own cost is what limits the flood.
func send(ctx context.Context, conn *packet.Conn, frames []Frame, rate int, d time.Duration, rep *Report) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("hostile: %w", err)
	}
	start, sent := time.Now(), 0
	var werr error
	for ctx.Err() == nil && werr == nil {
		elapsed := time.Since(start)
		if elapsed >= d {
			break
		}
		// A sender that fell far behind catches up a bounded burst at a
		// time, so the run still ends on time.
		due := min(int(elapsed.Seconds()*float64(rate)), sent+maxBurst)
		err := rc.Write(func(fd uintptr) bool {
			for ; sent < due; sent++ {
				f := frames[sent%len(frames)]
				switch _, err := unix.Write(int(fd), f.Bytes); {
				case err == unix.EAGAIN:
					return false // wait until the socket has room
				case err == unix.ENOBUFS:
					rep.Refused++
					continue
				case err != nil:
					werr = fmt.Errorf("hostile: send: %w", err)
					return true
				}
				rep.count(f)
			}
			return true
		})
		werr = errors.Join(werr, err)
		time.Sleep(200 * time.Microsecond)
	}
	rep.Elapsed = time.Since(start)
	return werr
}

// count records a frame sent.
func (r *Report) count(f Frame) {
	r.Sent[f.Kind]++
	if f.Asks.IsValid() {
		r.Asked[f.Asks]++
	}
	if f.Claims.IP.IsValid() {
		r.Forged[f.Claims]++
	}
}
