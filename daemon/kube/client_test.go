package kube

import (
	"testing"

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
