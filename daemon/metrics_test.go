package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/l2lb/l2lb/config"
	"github.com/l2lb/l2lb/daemon/ipam"
	"github.com/l2lb/l2lb/daemon/placement"
	"github.com/l2lb/l2lb/netio"
)

// scrape returns what a Prometheus server would read from m.
func scrape(t *testing.T, m *metrics) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(m.registry(), promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, body)
	}
	return string(body)
}

func TestMetricsText(t *testing.T) {
	life := &lifecycle{}
	life.ready.Store(true)
	life.frozen.Store(true)
	life.answering.Store(3)
	life.reloadsRefused.Add(2)
	life.decisions.Add(1)
	errs := &apiErrors{byVerb: map[string]uint64{}}
	for _, r := range []struct{ code, verb string }{{"200", "PUT"}, {"409", "PUT"}, {"<error>", "GET"}, {"500", "PUT"}, {"201", "POST"}} {
		errs.Increment(context.Background(), r.code, r.verb, "api:6443")
	}
	cfg, err := config.Parse("f.yaml", []byte("pools:\n  - name: lan\n    addresses: [198.51.100.200/29, \"2001:db8:100::/120\"]\n  - name: dmz\n    addresses: [198.51.100.10]\n"), "node-1")
	if err != nil {
		t.Fatal(err)
	}
	life.leader.Store(true)
	use := &poolUse{used: map[string]int{"lan": 2}, pending: 1}
	placing := newPlaceStats()
	placing.takeovers[placement.TakeoverPeerExpired].Add(4)
	placing.handovers.Add(2)
	placing.duration.Observe(0.0003)
	placing.duration.Observe(0.002)
	m := &metrics{node: "node-1", version: "v1", life: life, apiErrors: errs, placing: placing,
		config: func() *config.Config { return cfg }, use: func() *poolUse { return use }, stats: func() map[string]netio.InterfaceStats {
			return map[string]netio.InterfaceStats{
				"eth1": {IPv6: netio.Counters{Requests: 7}},
				"eth0": {IPv4: netio.Counters{Requests: 10, Replies: 4, Announcements: 3, Conflicts: 1}},
			}
		}}
	got := scrape(t, m)
	for _, want := range []string{
		"l2lbd_info{node=\"node-1\",version=\"v1\"} 1\n",
		"l2lbd_ready 1\n",
		"l2lbd_ipam_leader 1\n",
		"l2lbd_pool_addresses{family=\"ipv4\",pool=\"dmz\"} 1\nl2lbd_pool_addresses{family=\"ipv4\",pool=\"lan\"} 8\nl2lbd_pool_addresses{family=\"ipv6\",pool=\"dmz\"} 0\nl2lbd_pool_addresses{family=\"ipv6\",pool=\"lan\"} 256\n",
		"l2lbd_pool_addresses_used{pool=\"dmz\"} 0\nl2lbd_pool_addresses_used{pool=\"lan\"} 2\n",
		"l2lbd_services_pending 1\n",
		"l2lbd_frozen 1\n",
		"l2lbd_answering_ips 3\n",
		"l2lbd_config_reloads_total{result=\"ok\"} 0\n",
		"l2lbd_config_reloads_total{result=\"refused\"} 2\n",
		"l2lbd_decisions_total 1\n",
		"l2lbd_takeovers_total{reason=\"new\"} 0\n",
		"l2lbd_takeovers_total{reason=\"peer_expired\"} 4\n",
		"l2lbd_takeovers_total{reason=\"handover\"} 0\n",
		"l2lbd_handovers_total 2\n",
		"# TYPE l2lbd_decision_duration_seconds histogram\n",
		"l2lbd_decision_duration_seconds_bucket{le=\"0.0002\"} 0\nl2lbd_decision_duration_seconds_bucket{le=\"0.0008\"} 1\nl2lbd_decision_duration_seconds_bucket{le=\"0.0032\"} 2\n",
		"l2lbd_decision_duration_seconds_count 2\n",
		"l2lbd_api_request_errors_total{verb=\"GET\"} 1\nl2lbd_api_request_errors_total{verb=\"PUT\"} 2\n",
		// Prometheus sorts label names; the series are today's.
		"l2lbd_neighbor_requests_total{family=\"ipv4\",interface=\"eth0\"} 10\nl2lbd_neighbor_requests_total{family=\"ipv4\",interface=\"eth1\"} 0\nl2lbd_neighbor_requests_total{family=\"ipv6\",interface=\"eth0\"} 0\nl2lbd_neighbor_requests_total{family=\"ipv6\",interface=\"eth1\"} 7\n",
		"l2lbd_neighbor_replies_total{family=\"ipv4\",interface=\"eth0\"} 4\n",
		"l2lbd_announcements_total{family=\"ipv4\",interface=\"eth0\"} 3\n",
		"l2lbd_conflicts_total{family=\"ipv4\",interface=\"eth0\"} 1\n",
		"# TYPE l2lbd_conflicts_total counter\n",
		// The standard collectors.
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_resident_memory_bytes gauge\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q:\n%s", want, got)
		}
	}
}

// TestMetricsFollower: a node that does not lead reports no pool use.
func TestMetricsFollower(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte("pools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n"), "n")
	if err != nil {
		t.Fatal(err)
	}
	m := &metrics{life: &lifecycle{}, apiErrors: &apiErrors{byVerb: map[string]uint64{}}, placing: newPlaceStats(), stats: func() map[string]netio.InterfaceStats { return nil },
		config: func() *config.Config { return cfg }, use: func() *poolUse { return &poolUse{used: map[string]int{"lan": 3}} }}
	got := scrape(t, m)
	if strings.Contains(got, "l2lbd_pool_addresses_used") || strings.Contains(got, "l2lbd_services_pending") || !strings.Contains(got, "l2lbd_pool_addresses{family=\"ipv4\",pool=\"lan\"} 8\n") {
		t.Errorf("a follower's metrics:\n%s", got)
	}
}

func TestUseOf(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte("pools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n  - name: dmz\n    addresses: [198.51.100.10]\n"), "n")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	res := ipam.Result{
		Assigned: map[ipam.Key][]netip.Addr{
			{Namespace: "a", Name: "x"}: {ip("198.51.100.200")},
			{Namespace: "a", Name: "y"}: {ip("198.51.100.200")}, // shared
			{Namespace: "a", Name: "z"}: {ip("198.51.100.201"), ip("198.51.100.10")},
			{Namespace: "a", Name: "f"}: {ip("203.0.113.1")}, // outside every pool
		},
		Failed: map[ipam.Key]ipam.Reason{{Namespace: "a", Name: "p"}: {Code: "PoolExhausted"}},
	}
	u := useOf(cfg, res)
	if u.used["lan"] != 2 || u.used["dmz"] != 1 || u.pending != 1 || len(u.used) != 2 {
		t.Errorf("use %+v: want lan 2 (a shared address once), dmz 1, 1 pending", u)
	}
}
