package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/l2lb/l2lb/netio"
)

// metrics renders the daemon's state in the Prometheus text format. It reads
// what the daemon keeps anyway (lifecycle, netio counters); nothing is
// counted for it alone.
type metrics struct {
	node, version string
	life          *lifecycle
	stats         func() map[string]netio.InterfaceStats
}

func (m *metrics) write(w io.Writer) {
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	fmt.Fprintf(w, "# HELP l2lbd_info The running l2lbd.\n# TYPE l2lbd_info gauge\nl2lbd_info{node=%q,version=%q} 1\n", m.node, m.version)
	fmt.Fprintf(w, "# HELP l2lbd_ready Whether the daemon serves (config loaded, informers synced, responders running).\n# TYPE l2lbd_ready gauge\nl2lbd_ready %d\n", b(m.life.ready.Load()))
	fmt.Fprintf(w, "# HELP l2lbd_ipam_leader Whether this node writes Service status.\n# TYPE l2lbd_ipam_leader gauge\nl2lbd_ipam_leader %d\n", b(m.life.leader.Load()))
	fmt.Fprintf(w, "# HELP l2lbd_answering_ips Addresses this node answers ARP/NDP for.\n# TYPE l2lbd_answering_ips gauge\nl2lbd_answering_ips %d\n", m.life.answering.Load())
	fmt.Fprintf(w, "# HELP l2lbd_config_reloads_total Configuration reload attempts by result.\n# TYPE l2lbd_config_reloads_total counter\n")
	fmt.Fprintf(w, "l2lbd_config_reloads_total{result=\"ok\"} %d\nl2lbd_config_reloads_total{result=\"refused\"} %d\n", m.life.reloadsOK.Load(), m.life.reloadsRefused.Load())

	stats := m.stats()
	ifaces := slices.Sorted(maps.Keys(stats))
	for _, c := range []struct {
		name, help string
		get        func(netio.Counters) uint64
	}{
		{"l2lbd_neighbor_requests_total", "ARP requests and Neighbor Solicitations seen.", func(c netio.Counters) uint64 { return c.Requests }},
		{"l2lbd_neighbor_replies_total", "ARP replies and Neighbor Advertisements sent in answer.", func(c netio.Counters) uint64 { return c.Replies }},
		{"l2lbd_announcements_total", "Gratuitous ARPs and unsolicited Neighbor Advertisements sent.", func(c netio.Counters) uint64 { return c.Announcements }},
		{"l2lbd_conflicts_total", "Frames from another MAC claiming an address this node answers for.", func(c netio.Counters) uint64 { return c.Conflicts }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
		for _, name := range ifaces {
			s := stats[name]
			fmt.Fprintf(w, "%s{interface=%q,family=\"ipv4\"} %d\n", c.name, name, c.get(s.IPv4))
			fmt.Fprintf(w, "%s{interface=%q,family=\"ipv6\"} %d\n", c.name, name, c.get(s.IPv6))
		}
	}
}

// serveMetrics serves GET /metrics on addr until ctx is done. A failure to
// listen is logged, never fatal: metrics must not take the data plane down.
func serveMetrics(ctx context.Context, addr string, m *metrics, log *slog.Logger) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("cannot serve metrics", "address", addr, "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		var sb strings.Builder
		m.write(&sb)
		io.WriteString(w, sb.String())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving metrics", "address", ln.Addr().String())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server stopped", "err", err)
	}
}
