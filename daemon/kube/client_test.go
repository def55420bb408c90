package kube

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// TestClientRateLimit checks that the groups share one token bucket
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
			for _, rc := range []rest.Interface{c.Core, c.Coordination, c.Discovery, c.LeaseWatch} {
				limiters = append(limiters, rc.GetRateLimiter())
			}
			if limiters[0] != limiters[1] || limiters[0] != limiters[2] || limiters[0] != limiters[3] {
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

// TestJittered: a retry's wait is shortened by up to a fifth, never
// lengthened.
func TestJittered(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		name string
		wait time.Duration
		r    float64
		want time.Duration
	}{
		{"no jitter at r=0", s, 0, s},
		{"a tenth at r=0.5", s, 0.5, 900 * time.Millisecond},
		{"almost a fifth at r near 1", s, 0.999999, 800*time.Millisecond + 200*time.Nanosecond},
		{"scales with the wait", 200 * time.Millisecond, 0.5, 180 * time.Millisecond},
	} {
		if got := jittered(tc.wait, tc.r); got != tc.want {
			t.Errorf("%s: jittered(%v, %v) = %v, want %v", tc.name, tc.wait, tc.r, got, tc.want)
		}
	}
}

// TestLeaseWatchHasItsOwnConnection: the Lease informer's requests travel
// on an HTTP/2 connection of their own, never on the one that carries the
// Service watch and the status writes; every other request, the member
// Lease's writes included, shares that one.
func TestLeaseWatchHasItsOwnConnection(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]map[string]bool{} // client -> remote addresses
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("%s over %s, want HTTP/2", r.URL, r.Proto)
		}
		mu.Lock()
		who := r.Header.Get("X-Client")
		if conns[who] == nil {
			conns[who] = map[string]bool{}
		}
		conns[who][r.RemoteAddr] = true
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
		for who, req := range map[string]*rest.Request{
			"core":         c.Core.Get().Resource("services"),
			"discovery":    c.Discovery.Get().Resource("endpointslices"),
			"coordination": c.Coordination.Put().Namespace("l2lb-system").Resource("leases").Name("l2lbd-n1").Body([]byte("{}")),
			"lease watch":  c.LeaseWatch.Get().Namespace("l2lb-system").Resource("leases"),
		} {
			if err := req.SetHeader("X-Client", who).Do(ctx).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	one := func(who string) string {
		if len(conns[who]) != 1 {
			t.Fatalf("%s used connections %v; want one", who, conns[who])
		}
		for addr := range conns[who] {
			return addr
		}
		return ""
	}
	main, watch := one("core"), one("lease watch")
	if watch == main {
		t.Errorf("the Lease watch shares connection %s with the rest", main)
	}
	for _, who := range []string{"discovery", "coordination"} {
		if got := one(who); got != main {
			t.Errorf("%s on %s, core on %s; want one connection", who, got, main)
		}
	}
}
