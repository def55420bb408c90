package lab

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Percentile returns the p-quantile (0 ≤ p ≤ 1) of d, the nearest rank at
// or above it; zero for no samples. d is left as it is.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// WaitFor polls cond every 20 ms until it holds, and fails t if timeout
// passes first. cond gets a context that ends at the timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if cond(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
