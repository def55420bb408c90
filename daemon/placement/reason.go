package placement

// TakeoverReason is why this node started answering for an address, as a
// fixed code: metrics count takeovers by it, so the set must stay small and
// never carry a node name or an address.
type TakeoverReason uint8

const (
	// TakeoverNew: nobody had the address (a new Service, or nobody
	// claims it).
	TakeoverNew TakeoverReason = iota
	// TakeoverRestart: this node claimed it before it restarted.
	TakeoverRestart
	// TakeoverResumed: this node answered for it before it was paused
	// (its claims lapsed), and no peer took it meanwhile.
	TakeoverResumed
	// TakeoverPeerStopped: its node deleted its Lease (a graceful stop).
	TakeoverPeerStopped
	// TakeoverPeerExpired: its node stopped renewing its Lease.
	TakeoverPeerExpired
	// TakeoverPeerNotReady: its Node is not Ready.
	TakeoverPeerNotReady
	// TakeoverPeerExcluded: its Node is excluded from load balancers.
	TakeoverPeerExcluded
	// TakeoverPeerUnselected: its Node no longer matches the pool's
	// nodeSelector.
	TakeoverPeerUnselected
	// TakeoverPeerIneligible: its node can no longer serve it otherwise
	// (endpoints, pools or claims changed).
	TakeoverPeerIneligible
	// TakeoverHandover: its node handed it over to balance the load.
	TakeoverHandover

	// TakeoverReasonCount is how many reasons there are.
	TakeoverReasonCount
)

var takeoverCodes = [TakeoverReasonCount]string{
	TakeoverNew:            "new",
	TakeoverRestart:        "restart",
	TakeoverResumed:        "resumed",
	TakeoverPeerStopped:    "peer_stopped",
	TakeoverPeerExpired:    "peer_expired",
	TakeoverPeerNotReady:   "peer_not_ready",
	TakeoverPeerExcluded:   "peer_excluded",
	TakeoverPeerUnselected: "peer_unselected",
	TakeoverPeerIneligible: "peer_ineligible",
	TakeoverHandover:       "handover",
}

// String is the reason's code, a Prometheus label value.
func (r TakeoverReason) String() string {
	if r >= TakeoverReasonCount {
		return "unknown"
	}
	return takeoverCodes[r]
}

// TakeoverReasons lists every reason, so that a counter by reason can
// start every series at zero.
func TakeoverReasons() []TakeoverReason {
	out := make([]TakeoverReason, TakeoverReasonCount)
	for i := range out {
		out[i] = TakeoverReason(i)
	}
	return out
}
