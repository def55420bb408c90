package daemon

import (
	"strings"
	"testing"

	"github.com/l2lb/l2lb/netio"
)

func TestMetricsText(t *testing.T) {
	life := &lifecycle{}
	life.ready.Store(true)
	life.answering.Store(3)
	life.reloadsRefused.Add(2)
	m := &metrics{node: "node-1", version: "v1", life: life, stats: func() map[string]netio.InterfaceStats {
		return map[string]netio.InterfaceStats{
			"eth1": {IPv6: netio.Counters{Requests: 7}},
			"eth0": {IPv4: netio.Counters{Requests: 10, Replies: 4, Announcements: 3, Conflicts: 1}},
		}
	}}
	var sb strings.Builder
	m.write(&sb)
	got := sb.String()
	for _, want := range []string{
		"l2lbd_info{node=\"node-1\",version=\"v1\"} 1\n",
		"l2lbd_ready 1\n",
		"l2lbd_ipam_leader 0\n",
		"l2lbd_answering_ips 3\n",
		"l2lbd_config_reloads_total{result=\"refused\"} 2\n",
		"l2lbd_neighbor_requests_total{interface=\"eth0\",family=\"ipv4\"} 10\nl2lbd_neighbor_requests_total{interface=\"eth0\",family=\"ipv6\"} 0\nl2lbd_neighbor_requests_total{interface=\"eth1\",family=\"ipv4\"} 0\nl2lbd_neighbor_requests_total{interface=\"eth1\",family=\"ipv6\"} 7\n",
		"l2lbd_neighbor_replies_total{interface=\"eth0\",family=\"ipv4\"} 4\n",
		"l2lbd_announcements_total{interface=\"eth0\",family=\"ipv4\"} 3\n",
		"l2lbd_conflicts_total{interface=\"eth0\",family=\"ipv4\"} 1\n",
		"# TYPE l2lbd_conflicts_total counter\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q:\n%s", want, got)
		}
	}
}
