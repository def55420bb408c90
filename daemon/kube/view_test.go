package kube

import (
	"context"
	"testing"
	"time"
)

// TestShutdownDoesNotWaitForStragglers: an informer that ignores its stop
// signal (client-go's watch-list backoff does, for up to a minute) holds up
// neither a replacement of the informers nor the daemon's stop.
func TestShutdownDoesNotWaitForStragglers(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	s := &informerSet{stop: stop}
	release := make(chan struct{})
	defer close(release)
	s.running.Go(func() { <-release }) // deaf to ctx
	s.running.Go(func() { <-ctx.Done() })

	returned := make(chan struct{})
	go func() {
		s.shutdown(10 * time.Millisecond)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown waited for an informer that ignores its stop signal")
	}
	if ctx.Err() == nil {
		t.Error("shutdown did not signal the informers to stop")
	}
}
