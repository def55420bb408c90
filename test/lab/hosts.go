package lab

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// maxHosts keeps host addresses (198.51.100.3+i) between the client's and
// the nodes'.
const maxHosts = 8

// AddHost adds a namespace for another machine on the segment, neither the
// client nor a node: the source of hostile traffic, say, so that what it
// sends and receives is not mixed with the client's. Host i has MAC
// 02:6c:32:00:00:03+i, 198.51.100.3+i and 2001:db8:100::3+i (the digits of
// the IPv4 host number, as for nodes) and, like the client, no strictARP.
// It fails t on any error.
func (n *Net) AddHost(t testing.TB) *NS {
	t.Helper()
	i := len(n.Hosts)
	if i >= maxHosts {
		t.Fatalf("lab: at most %d hosts fit below the nodes", maxHosts)
	}
	ns := &NS{
		Name: fmt.Sprintf("l2lb-%s-h%d", n.run.id, i),
		Link: "eth0",
		MAC:  net.HardwareAddr{0x02, 0x6c, 0x32, 0, 0, byte(3 + i)},
		IPv4: netip.AddrFrom4([4]byte{198, 51, 100, byte(3 + i)}),
		IPv6: netip.MustParseAddr(fmt.Sprintf("2001:db8:100::%d", 3+i)),
		run:  n.run,
	}
	if err := n.run.addNS(ns, false); err != nil {
		t.Fatalf("lab: add host: %v", err)
	}
	n.Hosts = append(n.Hosts, ns)
	return ns
}
