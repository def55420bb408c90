package lab

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"
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

	ferr := flood(ctx, h.From, frames, rate, d, &rep)
	rx.stop(time.Now())
	if ferr == nil {
		time.Sleep(answerGrace)
	}
	conn.SetReadDeadline(time.Now())
	wg.Wait()
	if ferr != nil {
		return Report{}, ferr
	}
	rx.fill(&rep)
	if st, err := conn.Stats(); err == nil {
		rep.Dropped = int(st.Drops)
	}
	return rep, nil
}

// merge adds the counts of frames sent in o to r.
func (r *Report) merge(o Report) {
	for k, n := range o.Sent {
		r.Sent[k] += n
	}
	for ip, n := range o.Asked {
		r.Asked[ip] += n
	}
	for c, n := range o.Forged {
		r.Forged[c] += n
	}
	r.Refused += o.Refused
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
