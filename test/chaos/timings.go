package chaos

import (
	"time"

	"github.com/l2lb/l2lb/config"
)

// timings are the daemons' configured coordination and announcement
// timings (config.Default's: the harness's configs leave them alone) and
// the probe period; every tolerance of the checker derives from
// them.
type timings struct {
	renew, lease time.Duration // coordination.renewInterval, leaseDuration
	announce     time.Duration // announce.interval
	probe        time.Duration // how often the client asks for each address
	// stale is how long netio lets a request wait in a socket before it
	// drops it unanswered (staleRequest in netio/socket.go): the delay
	// l2lbd itself accepts from a busy machine.
	stale time.Duration
}

var defaultTimings = func() timings {
	c := config.Default()
	return timings{
		renew:    c.Coordination.RenewInterval,
		lease:    c.Coordination.LeaseDuration,
		announce: c.Announce.Interval,
		probe:    30 * time.Millisecond,
		stale:    200 * time.Millisecond,
	}
}()

// takeover bounds how long an address may go unanswered after a fault
// removes its owner: peers take over once the owner's Lease has gone
// unrenewed for a lease duration by their clocks, and its last renewal was
// no later than the fault. The bound, leaseDuration + 1 s, leaves
// a second for the watch to deliver and the decision to be applied.
func (t timings) takeover() time.Duration { return t.lease + time.Second }

// claims is how long a daemon's decisions hold without a renewal
// (placement's window): a pause or a cut longer than this lapses its
// claims, and it places its addresses anew once its view is fresh.
func (t timings) claims() time.Duration { return t.lease - t.renew }

// afterAPI bounds how long a takeover that needs the API waits once the API
// server is back: the daemons' own renewals must succeed and come back
// (a renew interval, and informers that lag are replaced after a lease
// duration of lag), then the thaw gives every peer live before the outage
// a lease duration to show it still is; a second for the rest.
func (t timings) afterAPI() time.Duration { return t.renew + 2*t.lease + time.Second }

// handover bounds the gap of a hand-over to balance the load: the old owner
// stops and writes its Lease at once; the new one answers when its watch
// delivers that write, well within a renew interval. If the target dies
// right after the offer (its last renewal seen up to a renew interval
// later), the old owner answers again once that renewal is two renew
// intervals old (placement's silent) and a renewal of its own sent after
// that has come back: its next one, within a renew interval, and a round
// trip to the API server well within another. Plus the resolution.
func (t timings) handover() time.Duration { return 5*t.renew + t.resolution() }

// twoMACs bounds the window in which two MACs may answer for one address
// after a takeover: until the old owner sees it. A fresh node's view is at
// most two thirds of a lease duration old (placement's freshFor), and a
// cut-off owner yields at the new owner's first gratuitous ARP, repeated
// every announce interval.
func (t timings) twoMACs() time.Duration { return max(t.lease*2/3, t.announce) }

// resolution is the longest silence that still counts as normal answering:
// a probe period to the next request, one more for an answer that crosses
// it, the wait in the responder's socket that l2lbd itself accepts on a busy
// machine (the lab shares two cores with the API server, etcd and other
// tests), and one more probe period for the answer to leave after that
// check when the responder is descheduled in between (seen in make test,
// with package builds beside the run: every address 261-269 ms at once).
func (t timings) resolution() time.Duration { return 3*t.probe + t.stale }

// converge bounds how long after the last fault ends every daemon is ready
// with a fresh view and every address answered by an eligible owner: the
// last fault may be an API outage, after which views turn fresh and the
// thawed peers' Leases count again (afterAPI), and an owner that died meanwhile
// is then taken over from (takeover).
func (t timings) converge() time.Duration { return t.afterAPI() + t.takeover() }
