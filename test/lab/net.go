package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Net is the Layer 2 segment: a bridge in the root namespace, a client
// namespace and one namespace per node, all on the bridge.
type Net struct {
	Bridge string // bridge link in the root namespace, carrying BridgeV4 and BridgeV6
	Client *NS
	Nodes  []*NS
	Hosts  []*NS // added by AddHost

	run *run
}

// Network builds a segment with the given number of node namespaces and
// registers its teardown with t.Cleanup. It fails t on any error.
func Network(t testing.TB, nodes int) *Net {
	t.Helper()
	r := begin(t, "ip", "arping", "ndisc6", "curl")
	n, err := r.network(nodes)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return n
}

// AddNode adds one node namespace to the segment, with the next index.
func (n *Net) AddNode(t testing.TB) *NS {
	t.Helper()
	ns, err := n.addNode()
	if err != nil {
		t.Fatalf("lab: add node: %v", err)
	}
	return ns
}

func (n *Net) addNode() (*NS, error) {
	i := len(n.Nodes)
	if i >= maxNodes {
		return nil, fmt.Errorf("at most %d nodes fit below the Service ranges", maxNodes)
	}
	ns := &NS{
		Name: fmt.Sprintf("l2lb-%s-n%d", n.run.id, i),
		Link: "eth0",
		MAC:  net.HardwareAddr{0x02, 0x6c, 0x32, 0, byte((11 + i) >> 8), byte(11 + i)},
		IPv4: nodeV4(i),
		IPv6: nodeV6(i),
		run:  n.run,
	}
	if err := n.run.addNS(ns, true); err != nil {
		return nil, err
	}
	n.Nodes = append(n.Nodes, ns)
	return ns, nil
}

func nodeV4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + i)})
}

// nodeV6 writes the IPv4 host number's decimal digits as the IPv6 host
// part, so node .11 is ::11: easy to read in captures.
func nodeV6(i int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:100::%d", 11+i))
}

// run is one lab's lifetime: what it holds and what it created, torn down
// once by test cleanup or by an interrupt.
type run struct {
	id   string
	dir  string
	logf func(string, ...any)

	locked time.Time // when the machine lock was taken: bring-up starts here

	mu      sync.Mutex
	lock    *os.File
	procs   []*Proc
	closers []func()
	links   []string // root-namespace links, deleted in reverse
	netns   []string
	done    bool
}

// begin checks the requirements, takes the machine lock, removes leftovers of
// crashed runs, checks the host routes and registers the teardown.
func begin(t testing.TB, tools ...string) *run {
	t.Helper()
	if err := requirements(tools...); err != nil {
		t.Fatalf("lab: %v", err)
	}
	lock, err := lockMachine(LockWait, t.Logf)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	r := &run{lock: lock, locked: time.Now(), logf: t.Logf}
	t.Cleanup(func() {
		if err := r.teardown(); err != nil {
			t.Errorf("lab: teardown: %v", err)
		}
	})
	watchInterrupts(r)
	if err := cleanLeftovers(t.Logf); err != nil {
		t.Fatalf("lab: removing leftovers of an earlier run: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := checkRoutes(ctx); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if r.id, err = newRunID(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	r.dir = filepath.Join(os.TempDir(), "l2lb-lab-"+r.id)
	if err := os.Mkdir(r.dir, 0o700); err != nil {
		t.Fatalf("lab: %v", err)
	}
	return r
}

func (r *run) network(nodes int) (*Net, error) {
	if nodes < 0 || nodes > maxNodes {
		return nil, fmt.Errorf("nodes = %d, want 0..%d", nodes, maxNodes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := &Net{Bridge: "l2b" + r.id, run: r}
	r.addLink(n.Bridge)
	if _, err := ipCmd(ctx, nil, "link", "add", n.Bridge, "address", "02:6c:32:00:00:01", "type", "bridge",
		"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"); err != nil {
		return nil, err
	}
	if err := writeSysctls(ipv6Sysctls(n.Bridge)); err != nil {
		return nil, err
	}
	if err := ipBatch(ctx, "",
		"addr add "+netip.PrefixFrom(BridgeV4, PrefixV4.Bits()).String()+" dev "+n.Bridge,
		"addr add "+netip.PrefixFrom(BridgeV6, PrefixV6.Bits()).String()+" dev "+n.Bridge+" nodad",
		"link set "+n.Bridge+" up",
	); err != nil {
		return nil, err
	}
	n.Client = &NS{
		Name: "l2lb-" + r.id + "-c",
		Link: "eth0",
		MAC:  net.HardwareAddr{0x02, 0x6c, 0x32, 0, 0, 0x02},
		IPv4: ClientV4,
		IPv6: ClientV6,
		run:  r,
	}
	if err := r.addNS(n.Client, false); err != nil {
		return nil, err
	}
	for range nodes {
		if _, err := n.addNode(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// addNS creates the namespace of ns with its veth on the bridge, addresses
// and sysctls; node namespaces get the kube-proxy strictARP settings.
func (r *run) addNS(ns *NS, node bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bridge := "l2b" + r.id
	r.mu.Lock()
	r.netns = append(r.netns, ns.Name)
	r.mu.Unlock()
	if _, err := ipCmd(ctx, nil, "netns", "add", ns.Name); err != nil {
		return err
	}
	r.addLink(ns.Name)
	if _, err := ipCmd(ctx, nil, "link", "add", ns.Name, "type", "veth",
		"peer", "name", ns.Link, "address", ns.MAC.String(), "netns", ns.Name); err != nil {
		return err
	}
	// The host side is a bridge port only; without IPv6 it stays silent.
	if err := writeSysctls(map[string]string{"net/ipv6/conf/" + ns.Name + "/disable_ipv6": "1"}); err != nil {
		return err
	}
	if _, err := ipCmd(ctx, nil, "link", "set", ns.Name, "master", bridge, "up"); err != nil {
		return err
	}
	err := ns.Do(func() error {
		s := ipv6Sysctls("all", "default", ns.Link)
		if node {
			for _, dev := range []string{"all", "default", ns.Link} {
				s["net/ipv4/conf/"+dev+"/arp_ignore"] = "1"
				s["net/ipv4/conf/"+dev+"/arp_announce"] = "2"
			}
		}
		return writeSysctls(s)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", ns.Name, err)
	}
	return ipBatch(ctx, ns.Name,
		"link set lo up",
		"addr add "+netip.PrefixFrom(ns.IPv4, PrefixV4.Bits()).String()+" dev "+ns.Link,
		"addr add "+netip.PrefixFrom(ns.IPv6, PrefixV6.Bits()).String()+" dev "+ns.Link+" nodad",
		"link set "+ns.Link+" up",
	)
}

// ipv6Sysctls: no duplicate address detection (tests never wait for it), no
// router discovery (nothing is routed), addresses kept while a link is down.
func ipv6Sysctls(devs ...string) map[string]string {
	s := map[string]string{}
	for _, dev := range devs {
		p := "net/ipv6/conf/" + dev + "/"
		s[p+"accept_dad"] = "0"
		s[p+"accept_ra"] = "0"
		s[p+"autoconf"] = "0"
		s[p+"router_solicitations"] = "0"
		s[p+"keep_addr_on_down"] = "1"
	}
	return s
}

// writeSysctls writes /proc/sys entries; net entries resolve against the
// calling thread's network namespace.
func writeSysctls(s map[string]string) error {
	var errs []error
	for k, v := range s {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0); err != nil {
			errs = append(errs, fmt.Errorf("sysctl: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (r *run) addLink(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.links = append(r.links, name)
}

func (r *run) addProc(p *Proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

// addCloser registers fn to run at teardown before namespaces go away
// (in-process servers holding sockets in them).
func (r *run) addCloser(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = append(r.closers, fn)
}

// teardown removes everything of the run, by name, once: processes first
// (they may hold namespaces), in-process sockets, veths (deleting one end
// deletes the pair even if a namespace is still referenced), namespaces,
// the bridge and the directory; then it releases the lock.
func (r *run) teardown() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil
	}
	r.done = true
	defer unwatchInterrupts(r)
	defer unlockMachine(r.lock)

	var errs []error
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].Kill()
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(r.links) - 1; i >= 0; i-- {
		if _, err := ipCmd(ctx, nil, "link", "del", r.links[i]); err != nil && linkExists(ctx, r.links[i]) {
			errs = append(errs, err)
		}
	}
	for i := len(r.netns) - 1; i >= 0; i-- {
		if _, err := ipCmd(ctx, nil, "netns", "del", r.netns[i]); err != nil {
			if _, serr := os.Stat("/run/netns/" + r.netns[i]); serr == nil {
				errs = append(errs, err)
			}
		}
	}
	if r.dir != "" {
		if err := os.RemoveAll(r.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Runs torn down on SIGINT/SIGTERM, since t.Cleanup does not run when the
// test binary is interrupted.
var interrupts struct {
	sync.Mutex
	runs map[*run]bool
	stop chan struct{}
}

func watchInterrupts(r *run) {
	interrupts.Lock()
	defer interrupts.Unlock()
	if interrupts.runs == nil {
		interrupts.runs = map[*run]bool{}
	}
	interrupts.runs[r] = true
	if interrupts.stop != nil {
		return
	}
	// A signal the test process ignores (SIGINT in a background job of
	// a script) must stay ignored: the test is not meant to die of it.
	var watch []os.Signal
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM} {
		if !signal.Ignored(sig) {
			watch = append(watch, sig)
		}
	}
	if len(watch) == 0 {
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, watch...)
	stop := make(chan struct{})
	interrupts.stop = stop
	go func() {
		defer signal.Stop(sigs)
		select {
		case <-stop:
		case sig := <-sigs:
			interrupts.Lock()
			runs := interrupts.runs
			interrupts.runs = nil
			interrupts.Unlock()
			for r := range runs {
				r.teardown()
			}
			signal.Reset(sig)
			syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		}
	}()
}

func unwatchInterrupts(r *run) {
	interrupts.Lock()
	defer interrupts.Unlock()
	delete(interrupts.runs, r)
	if len(interrupts.runs) == 0 && interrupts.stop != nil {
		close(interrupts.stop)
		interrupts.stop = nil
	}
}
