package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// The hostile-traffic run: a flood of every kind of lab.Hostile frame from
// a host of its own on the segment, while the client asks for every
// address; then the same flood with its valid requests asking the nodes'
// kernels instead, for reference.
//
// The flood is unicast to the owner of the address each frame is about:
// broadcast, every frame is also delivered to every other namespace, whose
// kernels share the machine's two cores with the daemons, and the flood
// stalled at 19,000 frames a second with the machine saturated (measured
// with a sender that cost more than lab.Hostile's does now).
const (
	floodRate     = 55_000 // frames per second offered; at least 50,000 must go out
	minFloodRate  = 50_000
	floodTime     = 10 * time.Second
	referenceTime = 5 * time.Second
	probeRate     = 400 // client requests per second, over all addresses
	hostileSeed   = 12
	// maxProbeLoss bounds the client's unanswered requests under the
	// flood, over all addresses. None was lost in any of 7 measured runs
	// (6,000 requests a run, floods of 19,000 to 55,000 frames a second,
	// the machine 67-98% busy); a few lost would be requests that waited
	// in a starved daemon's socket past the 200 ms it still answers after,
	// so a few are allowed, a systematic loss is not.
	maxProbeLoss = 0.005
	// maxSilence bounds the time an address goes without an answer to the
	// client, which asks for each about every 10 ms: one retransmission
	// interval of a real client (Linux retries ARP after a second).
	maxSilence = time.Second
)

// TestHostileTraffic: three daemons and four addresses (IPv4, IPv6,
// dual-stack) under a flood of malformed, forged and valid ARP and NDP
// frames. Every address stays answered by its owner alone, no daemon
// crashes, forged claims are reported once each (log line and Event), and
// requests in a daemon's own name are neither answered nor reported.
func TestHostileTraffic(t *testing.T) {
	l, ds := placementLab(t, 3, "")
	l.CreateLBService(ctxBg, "default", "v4")
	l.CreateLBService(ctxBg, "default", "v6", lab.WithIPFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	l.CreateLBService(ctxBg, "default", "dual", lab.WithDualStack())
	services := map[netip.Addr]string{}
	for name, n := range map[string]int{"v4": 1, "v6": 1, "dual": 2} {
		for _, ip := range waitIngress(t, l, "default", name, n) {
			services[ip] = name
		}
	}
	owners := waitClaims(t, l, len(services))
	owned := map[netip.Addr]net.HardwareAddr{}
	for ip, node := range owners {
		owned[ip] = l.Node(node).MAC
	}
	client := lab.Hostile{From: l.Net.Client, Owned: owned, Seed: hostileSeed}
	quiet, err := client.Run(ctxBg, lab.Requests, probeRate, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkAnswers(t, "before the flood", quiet, owned, 0)

	flood := lab.Hostile{From: l.Net.AddHost(t), Owned: owned, Seed: hostileSeed, Unicast: true}
	var stops []func() int
	for _, n := range l.Nodes {
		stop, err := n.SelfAddressed()
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, stop)
	}
	served := underFlood(t, ds, client, flood, floodTime)
	flood.Ask = map[netip.Addr]net.HardwareAddr{}
	for _, n := range l.Nodes {
		flood.Ask[n.IPv4], flood.Ask[n.IPv6] = n.MAC, n.MAC
	}
	kernel := underFlood(t, ds, client, flood, referenceTime)

	served.log(t, "l2lb answering")
	kernel.log(t, "kernel answering (reference)")
	checkAnswers(t, "the client under the flood", served.probe, owned, maxProbeLoss)
	checkAnswers(t, "the client under the reference flood", kernel.probe, owned, maxProbeLoss)
	checkAnswers(t, "the flood's valid requests", served.flood, owned, 1)
	switch {
	case served.flood.Rate() >= minFloodRate:
	case kernel.flood.Rate() < minFloodRate:
		// The sender, not l2lbd, is the limit on this machine (a busy or
		// slower one): the answers were checked at the rate it managed.
		t.Logf("NOT MEASURED at %d frames/s: the injector reached %.0f frames/s against l2lbd and %.0f against the kernels here",
			minFloodRate, served.flood.Rate(), kernel.flood.Rate())
	default:
		t.Errorf("flood of %.0f frames/s against l2lbd, want at least %d (%.0f against the kernels)", served.flood.Rate(), minFloodRate, kernel.flood.Rate())
	}
	for _, r := range []floodRun{served, kernel} {
		if r.flood.Unexpected != 0 {
			t.Errorf("%d answers to malformed or forged frames", r.flood.Unexpected)
		}
	}
	for i, stop := range stops {
		if n := stop(); n != 0 {
			t.Errorf("%s sent %d frames to its own MAC: it answered requests made in its name", l.Nodes[i].Name, n)
		}
	}
	for _, d := range ds {
		checkAlive(t, d)
	}
	forged := slices.Collect(maps.Keys(served.flood.Forged))
	checkConflictLogs(t, ds, owners, forged)
	checkConflictEvents(t, l, owners, services, forged)
}

// floodRun is what one flood measured.
type floodRun struct {
	flood, probe lab.Report
	daemons      []time.Duration // CPU time of each daemon during the flood
	injector     time.Duration   // CPU time of this process: the flood and its softirq work
	machine      time.Duration   // CPU time of the whole machine (both cores)
}

// underFlood floods for d while the client asks for every address.
func underFlood(t *testing.T, ds []*daemon, client, flood lab.Hostile, d time.Duration) floodRun {
	t.Helper()
	var r floodRun
	before, injector, machine := daemonsCPU(t, ds), selfCPU(t), machineCPU(t)
	var probeErr error
	var wg sync.WaitGroup
	wg.Go(func() { r.probe, probeErr = client.Run(ctxBg, lab.Requests, probeRate, d) })
	ctx, cancel := context.WithTimeout(ctxBg, 2*d)
	defer cancel()
	rep, err := flood.Run(ctx, lab.AllKinds(), floodRate, d)
	wg.Wait()
	if err = errors.Join(err, probeErr); err != nil {
		t.Fatal(err)
	}
	r.flood, r.injector, r.machine = rep, selfCPU(t)-injector, machineCPU(t)-machine
	for i, c := range daemonsCPU(t, ds) {
		r.daemons = append(r.daemons, c-before[i])
	}
	return r
}

func (r floodRun) log(t *testing.T, what string) {
	secs := r.flood.Elapsed.Seconds()
	var cpu []string
	for _, c := range r.daemons {
		cpu = append(cpu, fmt.Sprintf("%.0f%%", 100*c.Seconds()/secs))
	}
	asked, answered := 0, 0
	for ip, n := range r.flood.Asked {
		asked, answered = asked+n, answered+r.flood.Answered(ip)
	}
	t.Logf("%s: %d frames in %v (%.0f/s); its valid requests answered %d of %d (%.1f%%); daemons' CPU %s of a core, injector %.0f%%, machine %.0f%% of 2 cores",
		what, r.flood.Total(), r.flood.Elapsed.Round(time.Millisecond), r.flood.Rate(), answered, asked,
		100*float64(answered)/float64(max(asked, 1)), strings.Join(cpu, " "), 100*r.injector.Seconds()/secs, 100*r.machine.Seconds()/secs/2)
	t.Logf("  sent by kind: %v; answers the receiving socket dropped: %d", r.flood.Sent, r.flood.Dropped)
}
