// Package chaos runs l2lbd on the lab's nodes under randomized faults and
// checks l2lb's promises over the whole run (issue 12).
//
// A seed determines the run: the schedule of faults (processes killed,
// terminated and restarted, paused and continued; a service NIC losing
// carrier or set down while the API stays reachable over a management NIC;
// a node cut off from the API; the API server stopped; Nodes made NotReady
// or excluded; config edits, valid and garbage, a restart among them
// running on the last good copy from its --state-dir; Services created,
// deleted and changed, Local endpoints moved). A client on the segment asks for
// every Service address every probe period, with ARP and NDP, and records
// which MAC answers when, timestamped by the kernel at its interface.
//
// The harness records the ground truth of every fault as it injects it
// (facts.go), and after the run checks the invariants (check.go) against
// what the client heard, with tolerances derived from the configured
// timings (timings.go). A violation is printed with the seed and a
// timeline: the faults, the daemons' decisions from their logs, and which
// MAC answered when for the address concerned (report.go).
//
// What counts as a fault that removes an address's owner, so that the
// address may go unanswered for a while (invariant 2): a node becomes
// ineligible by the ground truth (facts.go: killed or terminated until
// started again, stopped until continued, its service NIC without carrier
// or down, cut off from the API, NotReady, excluded, or without a ready
// endpoint of a Local Service sharing the address) while its MAC was the
// one answering. Then peers must answer within leaseDuration + 1 s; if the
// API server is down meanwhile, within afterAPI of its return. A node
// becoming eligible where none was, an address newly given out, and a
// hand-over its owner logs open such windows too (the last for two renew
// intervals and the resolution: timings.handover). Inside a window, the
// node rendezvous hashing prefers to take the address over failing starts
// the window over (its peers wait for its Lease too), and so does that node
// (the owner itself included) turning fresh after a restart, a pause or a
// cut (it gives a dead peer's Lease and claims a lease duration by its own
// clock, and its peers defer to it meanwhile).
// Everything else (another node's fault, an API outage alone, a config
// edit, good or garbage, a Service changed elsewhere) must leave the
// address answered, to within the resolution (timings.go).
//
// Two MACs may answer one address only right after a takeover, for at most
// twoMACs; a node continued after SIGSTOP must not answer or announce,
// while another answers, within a renew interval of resuming (it cannot
// have won anything back by then).
//
// All through the faults a host of its own sends hostile frames (malformed
// ARP and NDP, requests in a node's own name, forged claims from foreign
// MACs; hostile.go): none may be answered, no daemon may crash, and a
// daemon reports a forged claim once a minute, not once per frame.
//
// TestChaos is the short run of `make test` (fixed seeds, three nodes);
// TestSoakChaos is the long one of `make soak` (random seed, five nodes,
// $L2LB_SOAK long; $L2LB_CHAOS_SEED replays a seed).
package chaos
