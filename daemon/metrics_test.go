package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	m := &metrics{node: "node-1", version: "v1", life: life, apiErrors: errs, stats: func() map[string]netio.InterfaceStats {
		return map[string]netio.InterfaceStats{
			"eth1": {IPv6: netio.Counters{Requests: 7}},
			"eth0": {IPv4: netio.Counters{Requests: 10, Replies: 4, Announcements: 3, Conflicts: 1}},
		}
	}}
	got := scrape(t, m)
	for _, want := range []string{
		"l2lbd_info{node=\"node-1\",version=\"v1\"} 1\n",
		"l2lbd_ready 1\n",
		"l2lbd_ipam_leader 0\n",
		"l2lbd_frozen 1\n",
		"l2lbd_answering_ips 3\n",
		"l2lbd_config_reloads_total{result=\"ok\"} 0\n",
		"l2lbd_config_reloads_total{result=\"refused\"} 2\n",
		"l2lbd_decisions_total 1\n",
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
