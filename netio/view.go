package netio

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"
)

// desiredSet maps an owned IP to the name of the interface it is answered
// on. A value is never modified once published.
type desiredSet map[netip.Addr]string

// addrSet holds the addresses the host has configured on interfaces that do
// neighbour resolution. A value is never modified once published.
type addrSet map[netip.Addr]struct{}

// view is what the packet path reads: two immutable snapshots behind atomic
// pointers, so a packet never waits for SetDesired or a netlink update, and
// the answer deadline.
type view struct {
	desired atomic.Pointer[desiredSet]
	host    atomic.Pointer[addrSet]
	// until is the answer deadline in nanoseconds since base. base
	// carries a monotonic reading, so checking the deadline costs one
	// time.Since and a wall clock step cannot move it.
	base  time.Time
	until atomic.Int64
}

func newView() *view {
	v := &view{base: time.Now()}
	v.desired.Store(&desiredSet{})
	v.host.Store(&addrSet{})
	v.until.Store(math.MaxInt64)
	return v
}

// answerUntil sets the answer deadline to t.
func (v *view) answerUntil(t time.Time) {
	v.until.Store(int64(t.Sub(v.base)))
}

// expired reports whether the answer deadline has passed.
func (v *view) expired() bool {
	return int64(time.Since(v.base)) > v.until.Load()
}

// answers reports whether this node answers neighbour resolution for ip on
// the interface named ifname.
func (v *view) answers(ip netip.Addr, ifname string) bool {
	return answers(ip, ifname, *v.desired.Load(), *v.host.Load())
}

// owns reports whether ip is ours on ifname, whether or not the host also has
// it configured; another MAC claiming it there is a conflict either way.
func (v *view) owns(ip netip.Addr, ifname string) bool {
	name, ok := (*v.desired.Load())[ip]
	return ok && name == ifname
}

// answers is the decision of the packet path: answer for ip on interface
// ifname only if the desired set puts ip on that very interface (a multi-NIC
// host must not answer with the wrong MAC), and the host has not configured
// ip itself (the kernel answers then).
func answers(ip netip.Addr, ifname string, desired desiredSet, host addrSet) bool {
	name, ok := desired[ip]
	if !ok || name != ifname {
		return false
	}
	_, configured := host[ip]
	return !configured
}

// normalize copies m into a desiredSet, dropping entries that can never be
// answered for. It returns how many were dropped so the caller can say so
// once instead of per packet.
func normalize(m map[netip.Addr]string) (desiredSet, int) {
	d := make(desiredSet, len(m))
	dropped := 0
	for ip, name := range m {
		ip = ip.Unmap().WithZone("")
		if !announceable(ip) || name == "" {
			dropped++
			continue
		}
		d[ip] = name
	}
	return d, dropped
}

// announceable reports whether ip is a unicast address a neighbour could ask
// for on a segment: not multicast, not unspecified, not loopback, not IPv6
// link-local (each host owns its own), not the IPv4 limited broadcast.
func announceable(ip netip.Addr) bool {
	switch {
	case !ip.IsValid(), ip.IsUnspecified(), ip.IsLoopback(), ip.IsMulticast():
		return false
	case ip.Is6() && ip.IsLinkLocalUnicast():
		return false
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return false
	}
	return true
}
