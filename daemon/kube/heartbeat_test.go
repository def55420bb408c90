package kube

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/client-go/rest"
)

// leaseServer is an API server that keeps one Lease and records the claims
// of every write.
type leaseServer struct {
	mu     sync.Mutex
	claims []string     // the claims annotation of each write, in order
	stall  atomic.Int64 // writes after the first wait this long (ns), or until cancelled
}

func (s *leaseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
		return
	}
	data, _ := io.ReadAll(r.Body)
	l := &coordinationv1.Lease{}
	if err := json.Unmarshal(data, l); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if d := time.Duration(s.stall.Load()); d > 0 && len(s.written()) > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	l.ResourceVersion = "1"
	s.mu.Lock()
	s.claims = append(s.claims, l.Annotations[AnnotationClaims])
	s.mu.Unlock()
	out, _ := json.Marshal(l)
	w.Write(out)
}

func (s *leaseServer) written() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.claims...)
}

// waitWrites waits, at most until deadline, for n writes.
func (s *leaseServer) waitWrites(n int, within time.Duration) []string {
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if w := s.written(); len(w) >= n {
			return w
		}
	}
	return s.written()
}

// TestHeartbeatHeldBackClaims: claims that may wait are written a quarter
// renew interval after the previous write, together; a claim that may not
// wait goes at once even if a later Set may wait; a stop writes what is
// still held back (a lone node keeps its Lease for its successor), unless
// the Lease is deleted next, and ends that write by Finish's deadline.
func TestHeartbeatHeldBackClaims(t *testing.T) {
	const renew = 8 * time.Second // holds added claims for 2 s
	a, b, c := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")
	member := func(ips ...netip.Addr) Member { return Member{Pools: []string{"lan"}, Claims: ips} }
	start := func(t *testing.T) (*leaseServer, *Heartbeat, func()) {
		srv := &leaseServer{}
		api := httptest.NewServer(srv)
		t.Cleanup(api.Close)
		client, err := NewClient(&rest.Config{Host: api.URL})
		if err != nil {
			t.Fatal(err)
		}
		h := NewHeartbeat(client, "l2lb-system", "n1", renew, 3*renew, nil, slog.New(slog.DiscardHandler))
		h.ValidUntil(time.Now().Add(time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		h.Set(member(a), false)
		go func() { h.Run(ctx); close(done) }()
		if w := srv.waitWrites(1, 5*time.Second); len(w) != 1 {
			t.Fatalf("first write: %q", w)
		}
		return srv, h, func() { cancel(); <-done }
	}

	t.Run("new claims wait, then go together", func(t *testing.T) {
		srv, h, stop := start(t)
		defer stop()
		h.Set(member(a, b), true)
		h.Set(member(a, b, c), true)
		time.Sleep(500 * time.Millisecond)
		if w := srv.written(); len(w) != 1 {
			t.Fatalf("writes after 0.5 s: %q, want the first only (added claims wait 2 s)", w)
		}
		if w := srv.waitWrites(2, 5*time.Second); len(w) != 2 || w[1] != "198.51.100.1,198.51.100.2,198.51.100.3" {
			t.Errorf("writes %q, want one more with all three claims", w)
		}
	})
	t.Run("a claim that may not wait goes at once", func(t *testing.T) {
		srv, h, stop := start(t)
		defer stop()
		h.Set(member(a, b), false) // taken over from a peer
		h.Set(member(a, b, c), true)
		if w := srv.waitWrites(2, time.Second); len(w) != 2 || w[1] == "198.51.100.1" {
			t.Errorf("writes within 1 s: %q, want a second one with the taken-over claim", w)
		}
	})
	t.Run("a stop writes what is held back", func(t *testing.T) {
		srv, h, stop := start(t)
		h.Set(member(a, b), true)
		time.Sleep(100 * time.Millisecond)
		stop()
		if w := srv.written(); len(w) != 2 || w[1] != "198.51.100.1,198.51.100.2" {
			t.Errorf("writes %q, want the held-back claim written at the stop", w)
		}
	})
	t.Run("a stop before the Lease is deleted writes nothing", func(t *testing.T) {
		srv, h, stop := start(t)
		h.Set(member(a, b), true)
		time.Sleep(100 * time.Millisecond)
		h.Finish(time.Now().Add(time.Minute), true)
		stop()
		if w := srv.written(); len(w) != 1 {
			t.Errorf("writes %q, want none at the stop (Release deletes the Lease next)", w)
		}
	})
	t.Run("the stop's write ends by Finish's deadline", func(t *testing.T) {
		srv, h, stop := start(t)
		srv.stall.Store(int64(time.Minute)) // the API server stops answering writes
		h.Set(member(a, b), true)
		time.Sleep(100 * time.Millisecond)
		h.Finish(time.Now().Add(300*time.Millisecond), false)
		began := time.Now()
		stop()
		// Without the deadline the write would wait its own timeout, a
		// lease duration (24 s here).
		if took := time.Since(began); took > 3*time.Second {
			t.Errorf("the stop took %v, want it to end by the 300 ms deadline", took)
		}
	})
}
