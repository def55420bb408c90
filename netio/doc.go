// Package netio is the data plane of l2lb: it makes the IPs this node owns
// resolvable on its Layer 2 segments and nothing else.
//
// An [Announcer] holds the desired set (IP -> interface name). For every
// interface named in it, it opens one responder per family:
//
//   - IPv4: an AF_PACKET socket bound to ARP (RFC 826). Requests for owned IPs
//     are answered with the receiving interface's MAC, unicast to the
//     requester; RFC 5227 probes (sender 0.0.0.0) are answered too, which is
//     how the owner of an address defends it.
//   - IPv6: an AF_PACKET socket with a classic BPF filter for Neighbor
//     Solicitations and Advertisements (RFC 4861). A socket of that kind sees
//     both multicast solicitations and the unicast NUD probes addressed to the
//     IP itself, which the kernel never hands to an ICMPv6 socket for an
//     address it does not own. The solicited-node group of every owned IP is
//     joined on the interface (IPV6_JOIN_GROUP, so NIC filters open and
//     MLD-snooping switches forward). Solicitations are validated as RFC 4861
//     7.1.1 says and answered with Solicited and Override set and the target
//     link-layer option. Duplicate address detection probes (source ::) are
//     answered as RFC 4861 7.2.4 requires for an address in use: to ff02::1,
//     Solicited clear, so the prober learns the address is taken. Advertisements
//     are sourced from the target address itself, as Linux does for its own
//     addresses, so no link-local address is needed (no bind race on a
//     link-local that is still tentative).
//
// An IP is answered for only on the interface the desired set names, and
// never when the host itself has it configured on an interface that does
// neighbour resolution (anything but loopback and NOARP devices such as
// kube-ipvs0): there the kernel answers, and a second answer could only be
// wrong.
//
// When an IP enters the set, or its interface comes (back) up, the Announcer
// sends a burst of gratuitous ARP requests (sender = target = IP, broadcast)
// or unsolicited Neighbor Advertisements (to ff02::1, Override set), and
// optionally repeats them periodically so switch MAC tables do not age out,
// 64 IPs at a time spread over the period; a burst for many IPs goes out
// with one sendmmsg per 64 frames.
// Another MAC claiming an owned IP (ARP with that sender IP, NA for that
// target) is reported as a [Conflict], frame by frame, with the frame's
// Ethernet source beside the MAC it claims: netio counts and reports, its
// caller de-duplicates, logs, and judges whom it may yield to.
//
// Nothing is answered from a state that may be out of date. A request that
// waited in the socket longer than a fraction of a second (the kernel's
// receive timestamp says how long) was queued while the process was stopped
// or starved, and is dropped. And after the answer deadline that the owner
// of the Announcer moves on after every decision ([Announcer.AnswerUntil]),
// nothing is answered or announced at all: a process that resumes from a
// pause stays silent until it has decided again.
//
// [Announcer.Links] is the one view of the host's interfaces: whether
// neighbours can reach us on each (up, carrier, ARP, Ethernet) and the
// subnets of its addresses. Answering uses it, and so does the daemon when
// it decides which addresses this node can serve.
//
// Each responder drains its socket with recvmmsg, a batch of requests per
// system call, and sends the answers to a batch with one sendmmsg; between
// batches it waits in Go's netpoller (BENCHMARKS.md has the reply latency
// and rate against the kernel's own). The packet path reads the desired set
// through an atomic pointer, takes no lock, allocates nothing, and never
// logs. Frames are parsed and built at
// fixed offsets for that reason; github.com/mdlayher/arp and
// github.com/mdlayher/ndp build the announcements (off the packet path) and serve as the
// reference the hand-written path is tested and fuzzed against.
package netio
