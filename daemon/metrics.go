package daemon

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/placement"
	"github.com/l2lb/l2lb/netio"
)

// metrics is a Prometheus collector over what the daemon keeps anyway
// (lifecycle, netio counters): values are read at scrape time, so nothing is
// counted for metrics alone and the packet path stays untouched.
type metrics struct {
	node, version string
	life          *lifecycle
	stats         func() map[string]netio.InterfaceStats
	apiErrors     *apiErrors
	config        func() *config.Config
	use           func() *poolUse // the latest allocation's; nil before the first
	placing       *placeStats
}

var _ prometheus.Collector = (*metrics)(nil)

var (
	descInfo      = prometheus.NewDesc("l2lbd_info", "The running l2lbd.", []string{"node", "version"}, nil)
	descReady     = prometheus.NewDesc("l2lbd_ready", "Whether the daemon serves (config loaded, informers synced, responders running).", nil, nil)
	descLeader    = prometheus.NewDesc("l2lbd_ipam_leader", "Whether this node writes Service status.", nil, nil)
	descFrozen    = prometheus.NewDesc("l2lbd_frozen", "Whether this node's view is stale: it takes nothing over and keeps what it answers for.", nil, nil)
	descAnswering = prometheus.NewDesc("l2lbd_answering_ips", "Addresses this node answers ARP/NDP for.", nil, nil)
	descReloads   = prometheus.NewDesc("l2lbd_config_reloads_total", "Configuration reload attempts by result.", []string{"result"}, nil)
	descDecisions = prometheus.NewDesc("l2lbd_decisions_total", "Placement decisions this node made.", nil, nil)
	descPoolSize  = prometheus.NewDesc("l2lbd_pool_addresses", "Addresses in each pool, by family.", []string{"pool", "family"}, nil)
	descPoolUsed  = prometheus.NewDesc("l2lbd_pool_addresses_used", "Addresses of each pool given to Services (the IPAM leader only).", []string{"pool"}, nil)
	descPending   = prometheus.NewDesc("l2lbd_services_pending", "Services that get no address they need (the IPAM leader only).", nil, nil)
	descTakeovers = prometheus.NewDesc("l2lbd_takeovers_total", "Addresses this node started answering for, by why (what became of the node that had them).", []string{"reason"}, nil)
	descHandovers = prometheus.NewDesc("l2lbd_handovers_total", "Addresses this node offered to a peer to balance the load (it stops answering for each first).", nil, nil)
	descAPIErrors = prometheus.NewDesc("l2lbd_api_request_errors_total", "Kubernetes API requests that failed (transport error or a status other than 2xx), by HTTP verb.", []string{"verb"}, nil)

	ifaceLabels = []string{"interface", "family"}
	// packetCounters are netio's per-interface, per-family counters.
	packetCounters = []struct {
		desc *prometheus.Desc
		get  func(netio.Counters) uint64
	}{
		{prometheus.NewDesc("l2lbd_neighbor_requests_total", "ARP requests and Neighbor Solicitations seen.", ifaceLabels, nil), func(c netio.Counters) uint64 { return c.Requests }},
		{prometheus.NewDesc("l2lbd_neighbor_replies_total", "ARP replies and Neighbor Advertisements sent in answer.", ifaceLabels, nil), func(c netio.Counters) uint64 { return c.Replies }},
		{prometheus.NewDesc("l2lbd_announcements_total", "Gratuitous ARPs and unsolicited Neighbor Advertisements sent.", ifaceLabels, nil), func(c netio.Counters) uint64 { return c.Announcements }},
		{prometheus.NewDesc("l2lbd_conflicts_total", "Frames from another MAC claiming an address this node answers for.", ifaceLabels, nil), func(c netio.Counters) uint64 { return c.Conflicts }},
	}
)

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descReady, descLeader, descFrozen, descAnswering, descReloads, descDecisions, descAPIErrors, descPoolSize, descPoolUsed, descPending, descTakeovers, descHandovers} {
		ch <- d
	}
	m.placing.duration.Describe(ch)
	for _, c := range packetCounters {
		ch <- c.desc
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descInfo, 1, m.node, m.version)
	gauge(descReady, b(m.life.ready.Load()))
	gauge(descLeader, b(m.life.leader.Load()))
	gauge(descFrozen, b(m.life.frozen.Load()))
	gauge(descAnswering, float64(m.life.answering.Load()))
	counter(descReloads, m.life.reloadsOK.Load(), "ok")
	counter(descReloads, m.life.reloadsRefused.Load(), "refused")
	counter(descDecisions, m.life.decisions.Load())
	for _, r := range placement.TakeoverReasons() {
		counter(descTakeovers, m.placing.takeovers[r].Load(), r.String())
	}
	counter(descHandovers, m.placing.handovers.Load())
	m.placing.duration.Collect(ch)
	errs := m.apiErrors.snapshot()
	for _, verb := range slices.Sorted(maps.Keys(errs)) {
		counter(descAPIErrors, errs[verb], verb)
	}

	if m.config != nil {
		cfg := m.config()
		for i := range cfg.Pools {
			p := &cfg.Pools[i]
			v4, v6 := new(big.Int), new(big.Int)
			for _, r := range p.Addresses {
				if r.First.Is4() {
					v4.Add(v4, r.Size())
				} else {
					v6.Add(v6, r.Size())
				}
			}
			f4, _ := v4.Float64()
			f6, _ := v6.Float64()
			gauge(descPoolSize, f4, p.Name, "ipv4")
			gauge(descPoolSize, f6, p.Name, "ipv6")
		}
		if u := m.use(); u != nil && m.life.leader.Load() {
			for i := range cfg.Pools {
				gauge(descPoolUsed, float64(u.used[cfg.Pools[i].Name]), cfg.Pools[i].Name)
			}
			gauge(descPending, float64(u.pending))
		}
	}

	stats := m.stats()
	for _, name := range slices.Sorted(maps.Keys(stats)) {
		s := stats[name]
		for _, c := range packetCounters {
			counter(c.desc, c.get(s.IPv4), name, "ipv4")
			counter(c.desc, c.get(s.IPv6), name, "ipv6")
		}
	}
}

// registry holds the daemon's collector and the Go runtime and process
// collectors every Prometheus user expects. It is per daemon, not the global
// default, so tests and a restarted Run never collide on registration.
func (m *metrics) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry(), promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
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
