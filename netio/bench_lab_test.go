package netio

// Figures for BENCHMARKS.md, measured in the lab side by side with the
// kernel. Env-gated (they take about a minute and print a table rather
// than assert):
//
//	NETIO_BENCH=1 go test -count=1 -run '^TestBench' -v ./netio

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if os.Getenv("NETIO_HELPER_IPS") != "" {
		os.Exit(helperAnnouncer())
	}
	os.Exit(m.Run())
}

// helperAnnouncer is the announcer as its own process (started by the
// benchmark with ip netns exec), so its CPU time can be read apart from the
// load generator's. It serves until stdin closes.
func helperAnnouncer() int {
	desired := map[netip.Addr]string{}
	for _, s := range strings.Split(os.Getenv("NETIO_HELPER_IPS"), ",") {
		desired[netip.MustParseAddr(s)] = "eth0"
	}
	a := New(Options{AnnounceCount: 1})
	a.SetDesired(desired)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if s := a.Stats()["eth0"]; s.IPv4.Announcements+s.IPv6.Announcements > 0 {
				fmt.Println("ready")
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func benchGate(t testing.TB) {
	if os.Getenv("NETIO_BENCH") == "" {
		t.Skip("set NETIO_BENCH=1 to measure (see BENCHMARKS.md)")
	}
}

// probe is a packet socket on the client's link that sees its own requests
// leave and the replies arrive, with kernel timestamps for both: the
// latency measured is the one at the client interface.
type probe struct {
	fd, tx, ifindex int
	mac             net.HardwareAddr
	ip4, ip6        netip.Addr
}

func openProbe(t *testing.T, c *lab.NS, proto uint16) *probe {
	p := &probe{mac: c.MAC, ip4: c.IPv4, ip6: c.IPv6}
	err := c.Do(func() error {
		ifi, err := net.InterfaceByName(c.Link)
		if err != nil {
			return err
		}
		p.ifindex = ifi.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			return err
		}
		p.fd = fd
		// A packet socket never sees what it sends itself; the
		// request leaves through a second one so the first sees it go.
		if p.tx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("probe socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(p.fd); unix.Close(p.tx) })
	return p
}

func (p *probe) send(frame []byte) error {
	sa := &unix.SockaddrLinklayer{Ifindex: p.ifindex, Halen: 6}
	copy(sa.Addr[:], frame[0:6])
	return unix.Sendto(p.tx, frame, 0, sa)
}

// recv returns the next frame, whether we sent it, and its kernel
// timestamp.
func (p *probe) recv(buf, oob []byte) (frame []byte, outgoing bool, ts time.Time, err error) {
	n, oobn, _, from, err := unix.Recvmsg(p.fd, buf, oob, 0)
	if err != nil {
		return nil, false, time.Time{}, err
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			ts = time.Unix(int64(binary.NativeEndian.Uint64(m.Data[0:8])), int64(binary.NativeEndian.Uint64(m.Data[8:16])))
		}
	}
	sll, _ := from.(*unix.SockaddrLinklayer)
	return buf[:n], sll != nil && sll.Pkttype == unix.PACKET_OUTGOING, ts, nil
}

func (p *probe) arpRequest(t *testing.T, target netip.Addr) []byte {
	return arpFrame(t, arp.OperationRequest, p.mac, p.ip4, make(net.HardwareAddr, 6), target, ethernet.Broadcast)
}

func (p *probe) nsRequest(t *testing.T, target netip.Addr) []byte {
	snm := solicitedNode(target)
	return ndpFrame(t, p.mac, multicastMAC(snm), p.ip6, snm, 255, ns(target, p.mac))
}

// answers reports whether frame answers a request for target.
func isAnswer(frame []byte, target netip.Addr) bool {
	if target.Is4() {
		return len(frame) >= arpFrameLen && binary.BigEndian.Uint16(frame[12:14]) == etherTypeARP &&
			binary.BigEndian.Uint16(frame[20:22]) == arpReply && netip.AddrFrom4([4]byte(frame[28:32])) == target
	}
	m, ok := parseNeighbor(frame)
	return ok && m.typ == icmpNeighborAdvertisement && m.target == target && m.flags&naFlagSolicited != 0
}

// latencies measures n request/reply round trips for each target, one
// outstanding at a time, alternating targets.
func (p *probe) latencies(t *testing.T, n int, reqs map[netip.Addr][]byte) (map[netip.Addr][]time.Duration, map[netip.Addr]int) {
	buf, oob := make([]byte, 2048), make([]byte, 256)
	out := map[netip.Addr][]time.Duration{}
	lost := map[netip.Addr]int{}
	targets := slices.SortedFunc(func(yield func(netip.Addr) bool) {
		for k := range reqs {
			if !yield(k) {
				return
			}
		}
	}, netip.Addr.Compare)
	for i := 0; i < n; i++ {
		for _, target := range targets {
			req := reqs[target]
			if err := p.send(req); err != nil {
				t.Fatal(err)
			}
			var sent time.Time
			deadline := time.Now().Add(200 * time.Millisecond)
			for time.Now().Before(deadline) {
				f, outgoing, ts, err := p.recv(buf, oob)
				if err != nil {
					continue
				}
				if outgoing && slices.Equal(f, req) {
					sent = ts
				} else if !outgoing && isAnswer(f, target) && !sent.IsZero() {
					out[target] = append(out[target], ts.Sub(sent))
					goto next
				}
			}
			lost[target]++
		next:
		}
		time.Sleep(200 * time.Microsecond)
	}
	return out, lost
}

// rate sends req at perSecond for d and counts the answers.
func (p *probe) rate(t *testing.T, req []byte, target netip.Addr, perSecond int, d time.Duration) (sent, answered int) {
	// Drop answers still queued from earlier runs.
	for {
		if _, _, err := unix.Recvfrom(p.fd, make([]byte, 2048), unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	var got atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 2048), make([]byte, 256)
		for {
			select {
			case <-stop:
				return
			default:
			}
			f, outgoing, _, err := p.recv(buf, oob)
			if err == nil && !outgoing && isAnswer(f, target) {
				got.Add(1)
			}
		}
	}()
	start := time.Now()
	for time.Since(start) < d {
		due := int(time.Since(start).Seconds() * float64(perSecond))
		for ; sent < due; sent++ {
			if err := p.send(req); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	return sent, int(got.Load())
}

// cpuTime is the user+system time of a process.
func cpuTime(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return time.Duration(u+s) * time.Second / 100 // USER_HZ
}

func TestBenchLatencyAndRate(t *testing.T) {
	benchGate(t)
	n := lab.Network(t, 1)
	node, client := n.Nodes[0], n.Client

	// The announcer in its own process inside the node namespace.
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", node.Name, self)
	cmd.Env = append(os.Environ(), "NETIO_HELPER_IPS="+svc4.String()+","+svc6.String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() { l, _ := bufio.NewReader(stdout).ReadString('\n'); ready <- l }()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("announcer process not ready in 10s")
	}
	// ip netns exec execs the binary in place, so cmd's pid is the
	// announcer's.
	pid := cmd.Process.Pid

	fmt.Printf("machine: nproc=%d, %s, kernel %s\n", runtime.NumCPU(), cpuModel(), kernelRelease())
	for _, fam := range []struct {
		name      string
		proto     uint16
		svc, kern netip.Addr
		req       func(*probe, *testing.T, netip.Addr) []byte
	}{
		{"ARP", etherTypeARP, svc4, node.IPv4, (*probe).arpRequest},
		{"NDP", etherTypeIPv6, svc6, node.IPv6, (*probe).nsRequest},
	} {
		p := openProbe(t, client, unix.ETH_P_ALL) // sees outgoing requests too
		rp := openProbe(t, client, fam.proto)
		reqs := map[netip.Addr][]byte{fam.svc: fam.req(p, t, fam.svc), fam.kern: fam.req(p, t, fam.kern)}
		lat, lost := p.latencies(t, benchN(), reqs)
		for _, who := range []struct {
			label string
			ip    netip.Addr
		}{{"l2lb", fam.svc}, {"kernel", fam.kern}} {
			d := lat[who.ip]
			fmt.Printf("%s latency %-6s n=%d lost=%d p50=%v p99=%v\n", fam.name, who.label, len(d), lost[who.ip],
				lab.Percentile(d, 0.50).Round(100*time.Nanosecond), lab.Percentile(d, 0.99).Round(100*time.Nanosecond))
		}
		for _, rate := range benchRates() {
			for _, who := range []struct {
				label string
				ip    netip.Addr
			}{{"l2lb", fam.svc}, {"kernel", fam.kern}} {
				cpu0 := cpuTime(t, pid)
				sent, got := rp.rate(t, reqs[who.ip], who.ip, rate, 3*time.Second)
				cpu := cpuTime(t, pid) - cpu0
				line := fmt.Sprintf("%s rate %-6s target=%d/s sent=%d answered=%d unanswered=%.3f%%", fam.name, who.label, rate, sent, got, 100*float64(sent-got)/float64(sent))
				if who.label == "l2lb" {
					line += fmt.Sprintf(" announcer CPU=%v (%.1f ms per 10k)", cpu, float64(cpu.Milliseconds())*10000/float64(max(got, 1)))
				}
				fmt.Println(line)
			}
		}
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
		}
	}
	return "unknown CPU"
}

func kernelRelease() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

// TestBenchTenThousand measures the Announcer with 10,000 owned IPs (5,000
// per family, 5,000 solicited-node groups) in a node namespace: heap in
// use, SetDesired, and the time until the loop has joined every group and
// announced every IP once; then a replacement by a set that shares half.
func TestBenchTenThousand(t *testing.T) {
	benchGate(t)
	n := lab.Network(t, 1)
	node := n.Nodes[0]
	set := func(offset int) map[netip.Addr]string {
		m := make(map[netip.Addr]string, 10000)
		for i := offset; i < offset+5000; i++ {
			m[netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})] = "eth0"
			m[netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 11: 0, 12: 0, 13: 1, 14: byte(i >> 8), 15: byte(i)})] = "eth0"
		}
		return m
	}
	first, second := set(0), set(2500)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	a := runIn(t, node, Options{AnnounceCount: 1})
	total := func() uint64 {
		s := a.Stats()["eth0"]
		return s.IPv4.Announcements + s.IPv6.Announcements
	}
	start := time.Now()
	a.SetDesired(first)
	setTime := time.Since(start)
	lab.WaitFor(t, 30*time.Second, "10,000 announcements", func(context.Context) bool { return total() >= 10000 })
	settled := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	start = time.Now()
	a.SetDesired(second)
	replaceTime := time.Since(start)
	lab.WaitFor(t, 30*time.Second, "5,000 more announcements", func(context.Context) bool { return total() >= 15000 })
	replaced := time.Since(start)

	fmt.Printf("10k IPs: heap in use +%.1f MiB; SetDesired %v, announced all in %v; replacing half: SetDesired %v, announced new in %v\n",
		float64(after.HeapInuse-before.HeapInuse)/(1<<20), setTime.Round(time.Microsecond), settled.Round(time.Millisecond),
		replaceTime.Round(time.Microsecond), replaced.Round(time.Millisecond))
}

// benchN is the number of latency samples per target (NETIO_BENCH_N,
// default 2000).
func benchN() int {
	if n, err := strconv.Atoi(os.Getenv("NETIO_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 2000
}

// benchRates are the offered loads tried (NETIO_BENCH_RATES, comma
// separated, default 25000,50000,75000,100000).
func benchRates() []int {
	var out []int
	for _, s := range strings.Split(os.Getenv("NETIO_BENCH_RATES"), ",") {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if out == nil {
		out = []int{25000, 50000, 75000, 100000}
	}
	return out
}
