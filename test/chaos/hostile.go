package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/l2lb/l2lb/daemon/placement"
	"github.com/l2lb/l2lb/test/lab"
)

// hostileRate is the hostile frames a second sent all through the faults,
// broadcast (each reaches every namespace, whose kernels share the two
// cores with the daemons). The 50,000 a second flood is TestHostileTraffic's
// (test/e2e), where nothing else competes for the machine.
const hostileRate = 1000

// hostileKinds are the frames nobody may answer: malformed ones, requests
// in a node's own name, forged claims. The client asks the valid questions.
var hostileKinds = slices.DeleteFunc(lab.AllKinds(), func(k lab.Kind) bool {
	return slices.Contains([]lab.Kind{lab.ARPRequest, lab.NSRequest, lab.NSNoSourceLL, lab.NSDuplicateSource}, k)
})

// startHostile sends hostile frames about the starting Services' addresses
// from a host of its own until ctx is done; wait returns what it sent and
// which of it was answered.
func (h *harness) startHostile(ctx context.Context) (wait func() (lab.Report, error)) {
	owned := map[netip.Addr]net.HardwareAddr{}
	h.facts.mu.Lock()
	for _, s := range h.facts.services {
		for _, ip := range s.ips {
			owned[ip] = h.l.Nodes[0].MAC // a node's MAC: requests in its own name
			if macs := recentMACs(h.prober.Log(ip), time.Now().Add(-time.Second)); len(macs) == 1 {
				if n := h.facts.nodeOfMAC(macs[0]); n >= 0 {
					owned[ip] = h.l.Nodes[n].MAC
				}
			}
		}
	}
	h.facts.mu.Unlock()
	host := lab.Hostile{From: h.l.Net.AddHost(h.t), Owned: owned, Seed: h.o.seed}
	done := make(chan struct{})
	var rep lab.Report
	var err error
	go func() {
		defer close(done)
		rep, err = host.Run(ctx, hostileKinds, hostileRate, 24*time.Hour)
	}()
	return func() (lab.Report, error) { <-done; return rep, err }
}

// checkHostile reports a malformed or forged frame that was answered.
func (h *harness) checkHostile(rep lab.Report, err error, at time.Time) {
	switch {
	case err != nil && ctxErr(err):
	case err != nil:
		h.report(violation{invariant: "6: hostile frames", at: at, what: fmt.Sprintf("the injector failed: %v", err)})
		return
	}
	h.t.Logf("chaos: hostile frames: %d sent over %v (%.0f/s), %d answered to a foreign MAC",
		rep.Total(), rep.Elapsed.Round(time.Second), rep.Rate(), rep.Unexpected)
	if rep.Unexpected > 0 {
		h.report(violation{invariant: "6: hostile frames", at: at,
			what: fmt.Sprintf("%d malformed or forged frames were answered", rep.Unexpected)})
	}
}

func ctxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// checkConflictLines finds a conflict logged more than once a quiet period
// by one daemon process: a forged claim is reported once, not per frame.
// stopped holds each node's SIGSTOP intervals: a line logged just after
// one (or inside it: the interval ends when the harness has sent SIGCONT
// and noted it) may come from a step that read its clock before it, and
// the quiet period counts from there.
func checkConflictLines(logs []logLine, nodes []string, stopped map[int][]interval) []violation {
	type key struct {
		node int
		ip   netip.Addr
		mac  string
	}
	decided := func(l logLine) time.Time {
		for _, iv := range stopped[l.node] {
			if !iv.to.IsZero() && !l.at.Before(iv.from) && l.at.Sub(iv.to) < resumeSlack {
				return iv.from
			}
		}
		return l.at
	}
	last := map[key]time.Time{}
	var out []violation
	for _, l := range logs { // each daemon's lines in order
		if l.msg == "l2lbd starting" {
			for k := range last {
				if k.node == l.node {
					delete(last, k)
				}
			}
			continue
		}
		if l.msg != placement.ConflictLog {
			continue
		}
		k := key{l.node, l.ip, parseSlog(l.text)["mac"]}
		// A second less: the daemon's step that forgets a report may run
		// a little after the minute.
		if prev, ok := last[k]; ok && l.at.Sub(prev) < placement.ConflictQuiet-time.Second {
			out = append(out, violation{invariant: "6: hostile frames", at: prev, end: l.at, node: nodes[l.node], ip: l.ip,
				what: fmt.Sprintf("%s reported the conflict of %s with %s twice within %v", nodes[l.node], l.ip, k.mac, l.at.Sub(prev).Round(time.Millisecond))})
			continue
		}
		last[k] = decided(l)
	}
	return out
}

// resumeSlack bounds how long after a SIGCONT a line may come from a step
// begun before the SIGSTOP.
const resumeSlack = 500 * time.Millisecond
