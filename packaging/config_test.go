package packaging

import (
	"testing"

	"github.com/l2lb/l2lb/config"
)

// TestShippedConfigStarts: the l2lbd.yaml the packages install is valid as
// shipped and declares no pools, so that an install on a node that already
// has its kubeconfig starts a daemon that serves nothing, rather than one
// that fails until systemd gives up.
func TestShippedConfigStarts(t *testing.T) {
	c, _, err := config.Load(root+"/packaging/l2lbd.yaml", "node-1")
	if err != nil {
		t.Fatalf("shipped config: %v", err)
	}
	if len(c.Pools) != 0 {
		t.Errorf("shipped config declares %d pools, want none", len(c.Pools))
	}
}
