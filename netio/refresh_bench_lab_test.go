package netio

// The cost of announce.refresh with 5,000 owned addresses, through the real
// sockets and sendmmsg in a lab namespace. Env-gated like the other lab
// figures (see BENCHMARKS.md):
//
//	NETIO_BENCH=1 go test -run '^$' -bench BenchmarkRefresh5000 -benchmem ./netio

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l2lb/l2lb/test/lab"
)

// BenchmarkRefresh5000 times one refresh round of 2,500 IPv4 and 2,500
// IPv6 addresses (its slices back to back, without the gaps between them)
// beside two references from the same run: the same round as the one pass
// it was before pacing, and the same frames written one system call each.
// cpu-ms/op is the process's user+system time (getrusage), which includes
// the kernel's work of sending; %core@60s is that time's share of one core
// over the default interval.
func BenchmarkRefresh5000(b *testing.B) {
	benchGate(b)
	node := lab.Network(b, 1).Nodes[0]
	desired := desiredSet{}
	for i := range 2500 {
		desired[netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})] = "eth0"
		desired[netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 13: 1, 14: byte(i >> 8), 15: byte(i)})] = "eth0"
	}
	a := New(Options{Logger: slog.New(slog.DiscardHandler), AnnounceRefresh: time.Minute})
	a.view.desired.Store(&desired)
	l := &loop{a: a, ports: map[string]*port{}, portDown: make(chan *port, 16)}
	err := node.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		return l.openPort(link{index: ifi.Index, name: ifi.Name, mac: ifi.HardwareAddr, flags: ethUp})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.closeAll(); l.wg.Wait() })
	p := l.ports["eth0"]
	sent := func() uint64 {
		s := a.Stats()["eth0"]
		return s.IPv4.Announcements + s.IPv6.Announcements
	}

	rounds := []struct {
		name string
		run  func()
	}{
		{"paced round", func() {
			l.refreshSlice(time.Now(), desired)
			for len(l.refreshQ) > 0 {
				l.refreshSlice(time.Now(), desired)
			}
		}},
		{"reference: one pass", func() { l.announce(nil, desired) }},
		{"reference: a write per frame", func() {
			for ip := range desired {
				var f []byte
				var err error
				c := p.arp.conn
				if ip.Is4() {
					f, err = p.arp.announcement(ip)
				} else {
					f, err = p.ndp.announcement(ip)
					c = p.ndp.conn
				}
				if err == nil {
					_, err = c.WriteTo(f, nil)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}},
	}
	for _, r := range rounds {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			before, cpu := sent(), cpuNow()
			for b.Loop() {
				r.run()
			}
			used := cpuNow() - cpu
			if n := sent() - before; r.name != "reference: a write per frame" && n != uint64(b.N)*5000 {
				b.Fatalf("sent %d announcements in %d rounds, want 5,000 each", n, b.N)
			}
			perOp := used / time.Duration(b.N)
			b.ReportMetric(float64(perOp)/1e6, "cpu-ms/op")
			b.ReportMetric(100*float64(perOp)/float64(time.Minute), "%core@60s")
		})
	}
}

// cpuNow is the process's user+system time so far.
func cpuNow() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
