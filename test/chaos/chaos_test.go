package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
)

func TestMain(m *testing.M) { lab.MainWithL2lbd(m, &l2lbd) }

// shortSeeds are the runs of `make test`: fixed, so that a failure there
// is a regression of l2lbd (or of the harness), replayable at will.
var shortSeeds = []uint64{1, 2}

// short is the shape of a short run: three nodes, a minute of faults, API
// outages of 5 to 15 s.
func short(seed uint64) options {
	return options{seed: seed, nodes: 3, duration: time.Minute, apiMax: 15 * time.Second}
}

// TestChaos is the short chaos run, one per fixed seed.
func TestChaos(t *testing.T) {
	for _, seed := range shortSeeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { run(t, short(seed)) })
	}
}

// TestSoakChaos is the long chaos run of `make soak`: five nodes, faults
// for $L2LB_SOAK, API outages of 5 to 60 s, a random seed unless
// $L2LB_CHAOS_SEED names one.
func TestSoakChaos(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("L2LB_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("a soak: set L2LB_SOAK to a duration, as `make soak` does")
	}
	seed := rand.Uint64()
	if s := os.Getenv("L2LB_CHAOS_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("L2LB_CHAOS_SEED: %v", err)
		}
	}
	run(t, options{seed: seed, nodes: 5, duration: d, apiMax: time.Minute})
}
