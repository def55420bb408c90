package daemon

import (
	"context"
	"maps"
	"strings"
	"sync"

	clientmetrics "k8s.io/client-go/tools/metrics"
)

// apiErrors counts the API requests that failed (a transport error or a
// status other than 2xx), by HTTP verb. client-go reports every request's
// result through one process-wide hook; a request or two a second take the
// mutex, never the packet path.
type apiErrors struct {
	mu     sync.Mutex
	byVerb map[string]uint64
}

var _ clientmetrics.ResultMetric = (*apiErrors)(nil)

// apiErrs is the process's one counter: client-go's hook is global and can
// be set only once.
var (
	apiErrs        = &apiErrors{byVerb: map[string]uint64{}}
	registerAPIErr sync.Once
)

func (a *apiErrors) Increment(_ context.Context, code, method, _ string) {
	if strings.HasPrefix(code, "2") {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byVerb[method]++
}

func (a *apiErrors) snapshot() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.byVerb)
}

// countAPIErrors hooks apiErrs into client-go, once per process.
func countAPIErrors() {
	registerAPIErr.Do(func() { clientmetrics.Register(clientmetrics.RegisterOpts{RequestResult: apiErrs}) })
}
