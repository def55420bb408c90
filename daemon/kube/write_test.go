package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// request is one write the fake API server saw.
type request struct {
	method, path string
	body         map[string]any
}

// apiServer answers every write with the object it was sent, and remembers
// the writes.
func apiServer(t *testing.T) (*Client, func() []request) {
	var mu sync.Mutex
	var seen []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(data, &body)
		mu.Lock()
		seen = append(seen, request{r.Method, r.URL.Path, body})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPatch {
			data = []byte(`{"kind":"Event","apiVersion":"v1"}`)
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return append([]request(nil), seen...)
	}
}

func TestRecorderRepeats(t *testing.T) {
	client, seen := apiServer(t)
	r := NewRecorder(client, "node-1", slog.New(slog.DiscardHandler))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1"}}
	r.Eventf(svc, corev1.EventTypeNormal, "Announcing", "%s announced by node %s", "198.51.100.1", "node-1")
	r.Event(svc, corev1.EventTypeNormal, "Announcing", "198.51.100.1 announced by node node-1")
	r.Event(svc, corev1.EventTypeWarning, "IPConflict", "another host")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(seen()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	got := seen()
	if len(got) != 3 {
		t.Fatalf("got %d writes, want 3: %+v", len(got), got)
	}
	first := got[0]
	if first.method != http.MethodPost || first.path != "/api/v1/namespaces/ns/events" {
		t.Errorf("first write %s %s, want a POST of an Event in ns", first.method, first.path)
	}
	if first.body["message"] != "198.51.100.1 announced by node node-1" || first.body["reason"] != "Announcing" ||
		first.body["type"] != "Normal" || first.body["count"] != 1.0 {
		t.Errorf("first Event: %v", first.body)
	}
	obj, _ := first.body["involvedObject"].(map[string]any)
	if obj["kind"] != "Service" || obj["name"] != "web" || obj["uid"] != "u1" {
		t.Errorf("involvedObject: %v", obj)
	}
	name := first.body["metadata"].(map[string]any)["name"].(string)
	if repeat := got[1]; repeat.method != http.MethodPatch || repeat.path != "/api/v1/namespaces/ns/events/"+name || repeat.body["count"] != 2.0 {
		t.Errorf("the repeat was %s %s %v, want a PATCH of %s to count 2", repeat.method, repeat.path, repeat.body, name)
	}
	if other := got[2]; other.method != http.MethodPost || other.body["reason"] != "IPConflict" {
		t.Errorf("a different Event was %s %v, want a new one", other.method, other.body)
	}
}

func TestRecorderNeverBlocks(t *testing.T) {
	client, _ := apiServer(t)
	r := NewRecorder(client, "node-1", slog.New(slog.DiscardHandler))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
	done := make(chan struct{})
	go func() {
		// Nothing runs the recorder: the queue fills and the rest is dropped.
		for range 2 * eventQueue {
			r.Event(svc, corev1.EventTypeNormal, "Announcing", "x")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Event blocked with a full queue")
	}
}

// TestRecorderPaces: a burst of Events is written at eventRate after
// eventBurst, and what does not fit in the queue is dropped.
func TestRecorderPaces(t *testing.T) {
	client, seen := apiServer(t)
	r := NewRecorder(client, "node-1", slog.New(slog.DiscardHandler))
	for i := range 2 * eventQueue {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("web-", i)}}
		r.Event(svc, corev1.EventTypeNormal, "Allocated", "x")
	}
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	time.Sleep(time.Second)
	cancel()
	<-done
	// An upper bound only: a slow machine writes fewer, never more.
	limit := eventBurst + int(eventRate*time.Since(start).Seconds()) + 1
	if n := len(seen()); n == 0 || n > limit {
		t.Errorf("%d Events written in %v, want 1 to %d", n, time.Since(start).Round(time.Millisecond), limit)
	}
	if left := len(r.queue); left > eventQueue {
		t.Errorf("%d Events queued, more than the queue holds", left)
	}
}

func TestRecorderTruncatesWholeCharacters(t *testing.T) {
	r := NewRecorder(nil, "node-1", slog.New(slog.DiscardHandler))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
	long := strings.Repeat("é", maxMessageSize) // two bytes each
	r.Event(svc, corev1.EventTypeWarning, "X", long)
	got := (<-r.queue).Message
	if len(got) > maxMessageSize || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Errorf("truncated to %d bytes, valid UTF-8 %v: ...%q", len(got), utf8.ValidString(got), got[max(0, len(got)-8):])
	}
}
