package kube

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// TestClientRateLimit checks that the three groups share one token bucket
// with the configured rate, and that no QPS means no client-side limit
// rather than client-go's default of 5 per second.
func TestClientRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		qps     float32
		burst   int
		wantQPS float32 // 0: no limit
	}{
		{"configured", 500, 1000, 500},
		{"fraction", 2.5, 1, 2.5},
		{"zero burst", 10, 0, 10},
		{"unlimited", 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(&rest.Config{Host: "https://kube.example:6443", QPS: tc.qps, Burst: tc.burst})
			if err != nil {
				t.Fatal(err)
			}
			var limiters []flowcontrol.RateLimiter
			for _, rc := range []rest.Interface{c.Core, c.Coordination, c.Discovery} {
				limiters = append(limiters, rc.GetRateLimiter())
			}
			if limiters[0] != limiters[1] || limiters[0] != limiters[2] {
				t.Error("the groups have separate rate limiters; want one budget")
			}
			if tc.wantQPS != 0 {
				if got := limiters[0].QPS(); got != tc.wantQPS {
					t.Errorf("QPS: got %v, want %v", got, tc.wantQPS)
				}
			} else {
				for range 100 {
					if !limiters[0].TryAccept() {
						t.Fatal("unlimited client refused a request")
					}
				}
			}
		})
	}
}

// TestConnectBackoff: a daemon that waits for the API server retries at
// least every renew interval, so that it is back soon after the API server
// (a 10 s cap once left a restarted node's addresses unanswered 9 s after
// an outage, in the soak).
func TestConnectBackoff(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		name              string
		prev, limit, want time.Duration
	}{
		{"first attempt", 0, s, 200 * time.Millisecond},
		{"doubles", 200 * time.Millisecond, s, 400 * time.Millisecond},
		{"capped at the renew interval", 800 * time.Millisecond, s, s},
		{"stays at the cap", s, s, s},
		{"a fast renew interval caps the first wait too", 0, 100 * time.Millisecond, 100 * time.Millisecond},
		{"a slow renew interval", 8 * s, 10 * s, 10 * s},
	} {
		if got := connectBackoff(tc.prev, tc.limit); got != tc.want {
			t.Errorf("%s: connectBackoff(%v, %v) = %v, want %v", tc.name, tc.prev, tc.limit, got, tc.want)
		}
	}
}

// TestLeasesHaveTheirOwnConnection: requests for Leases travel on a
// connection of their own, never on the one that carries the Service
// watch and the status writes, and the other groups share one.
func TestLeasesHaveTheirOwnConnection(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]map[string]bool{} // path prefix -> remote addresses
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		group := "/api"
		if strings.HasPrefix(r.URL.Path, "/apis/coordination.k8s.io") {
			group = "leases"
		} else if strings.HasPrefix(r.URL.Path, "/apis/") {
			group = "/apis"
		}
		mu.Lock()
		if conns[group] == nil {
			conns[group] = map[string]bool{}
		}
		conns[group][r.RemoteAddr] = true
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Success"}`)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c, err := NewClient(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		for _, req := range []*rest.Request{
			c.Core.Get().Resource("services"),
			c.Discovery.Get().Resource("endpointslices"),
			c.Coordination.Get().Namespace("l2lb-system").Resource("leases"),
		} {
			if err := req.Do(ctx).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns["leases"]) != 1 || len(conns["/api"]) != 1 || len(conns["/apis"]) != 1 {
		t.Fatalf("connections used: %v; want one each", conns)
	}
	for lease := range conns["leases"] {
		if conns["/api"][lease] || conns["/apis"][lease] {
			t.Errorf("Leases share connection %s with the other groups", lease)
		}
	}
	for core := range conns["/api"] {
		if !conns["/apis"][core] {
			t.Errorf("core and discovery use different connections: %v", conns)
		}
	}
}
