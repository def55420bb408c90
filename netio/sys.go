package netio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// system is what Run needs from the kernel. Tests replace it to run the
// Announcer without root; linuxSystem is the real one.
type system interface {
	// watch subscribes to link and address changes.
	watch() (watcher, error)
	// list returns every link and address now.
	list() ([]linkMsg, []addrMsg, error)
	openARP(iface) (net.PacketConn, error)
	openNDP(iface) (net.PacketConn, error)
	openGroups(iface) (groupJoiner, error)
}

type watcher interface {
	// read blocks for the next batch of changes; it fails once close was
	// called.
	read() (netEvent, error)
	close() error
}

// groupJoiner holds IPv6 multicast memberships on one interface; Close
// drops them all.
type groupJoiner interface {
	join(group netip.Addr) error
	leave(group netip.Addr) error
	Close() error
}

type linkMsg struct {
	link
	deleted bool
}

// addrMsg is an address with the length of its subnet's prefix
// (ifa_prefixlen), as configured: not masked.
type addrMsg struct {
	index   int
	prefix  netip.Prefix
	deleted bool
}

// netEvent is one batch of kernel notifications. resync means some were
// lost and everything must be listed again.
type netEvent struct {
	links  []linkMsg
	addrs  []addrMsg
	resync bool
}

type linuxSystem struct{}

var _ system = linuxSystem{}

func (linuxSystem) openARP(ifi iface) (net.PacketConn, error) { return listenARP(ifi) }
func (linuxSystem) openNDP(ifi iface) (net.PacketConn, error) { return listenNDP(ifi) }
func (linuxSystem) openGroups(ifi iface) (groupJoiner, error) {
	return &ipv6Groups{index: ifi.index, where: make(map[netip.Addr]int), held: make(map[int]int)}, nil
}

// list dumps links and addresses over a fresh rtnetlink socket, in the
// network namespace of the calling thread.
func (linuxSystem) list() ([]linkMsg, []addrMsg, error) {
	var links []linkMsg
	var addrs []addrMsg
	for _, req := range []int{unix.RTM_GETLINK, unix.RTM_GETADDR} {
		b, err := syscall.NetlinkRIB(req, unix.AF_UNSPEC)
		if err != nil {
			return nil, nil, fmt.Errorf("netlink dump: %w", err)
		}
		l, a, err := parseRoute(b)
		if err != nil {
			return nil, nil, err
		}
		links = append(links, l...)
		addrs = append(addrs, a...)
	}
	return links, addrs, nil
}

// watch subscribes to link and IPv4/IPv6 address notifications.
func (linuxSystem) watch() (watcher, error) {
	c, err := socket.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE, "netlink", nil)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	// Room for a burst of thousands of address changes before the kernel
	// drops notifications (which costs a full re-listing).
	_ = c.SetReadBuffer(1 << 20)
	sa := &unix.SockaddrNetlink{
		Family: unix.AF_NETLINK,
		Groups: unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR,
	}
	if err := c.Bind(sa); err != nil {
		c.Close()
		return nil, fmt.Errorf("subscribe rtnetlink: %w", err)
	}
	return &rtnetlink{c: c, buf: make([]byte, 1<<16)}, nil
}

type rtnetlink struct {
	c   *socket.Conn
	buf []byte
}

func (r *rtnetlink) read() (netEvent, error) {
	n, _, err := r.c.Recvfrom(context.Background(), r.buf, 0)
	if errors.Is(err, unix.ENOBUFS) {
		return netEvent{resync: true}, nil
	}
	if err != nil {
		return netEvent{}, fmt.Errorf("read rtnetlink: %w", err)
	}
	links, addrs, err := parseRoute(r.buf[:n])
	if err != nil {
		// A message we cannot parse is a message we lost.
		return netEvent{resync: true}, nil
	}
	return netEvent{links: links, addrs: addrs}, nil
}

func (r *rtnetlink) close() error { return r.c.Close() }

// parseRoute decodes RTM_NEWLINK/DELLINK and RTM_NEWADDR/DELADDR messages,
// skipping every other kind.
func parseRoute(b []byte) ([]linkMsg, []addrMsg, error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, nil, fmt.Errorf("parse netlink: %w", err)
	}
	var links []linkMsg
	var addrs []addrMsg
	for i := range msgs {
		m := &msgs[i]
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return nil, nil, fmt.Errorf("netlink: %w", syscall.Errno(-errno))
				}
			}
		case unix.RTM_NEWLINK, unix.RTM_DELLINK:
			if len(m.Data) < unix.SizeofIfInfomsg {
				continue
			}
			lm := linkMsg{deleted: m.Header.Type == unix.RTM_DELLINK}
			lm.index = int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
			lm.flags = binary.NativeEndian.Uint32(m.Data[8:12])
			attrs, err := syscall.ParseNetlinkRouteAttr(m)
			if err != nil {
				continue
			}
			for _, a := range attrs {
				switch a.Attr.Type {
				case unix.IFLA_IFNAME:
					lm.name = string(trimNUL(a.Value))
				case unix.IFLA_ADDRESS:
					lm.mac = net.HardwareAddr(append([]byte(nil), a.Value...))
				}
			}
			links = append(links, lm)
		case unix.RTM_NEWADDR, unix.RTM_DELADDR:
			if len(m.Data) < unix.SizeofIfAddrmsg {
				continue
			}
			am := addrMsg{deleted: m.Header.Type == unix.RTM_DELADDR}
			am.index = int(binary.NativeEndian.Uint32(m.Data[4:8]))
			attrs, err := syscall.ParseNetlinkRouteAttr(m)
			if err != nil {
				continue
			}
			// IFA_LOCAL is the address itself where it differs from
			// IFA_ADDRESS (the peer, on point-to-point links).
			var local, address netip.Addr
			for _, a := range attrs {
				ip, ok := netip.AddrFromSlice(a.Value)
				if !ok {
					continue
				}
				switch a.Attr.Type {
				case unix.IFA_LOCAL:
					local = ip
				case unix.IFA_ADDRESS:
					address = ip
				}
			}
			if local.IsValid() {
				address = local
			}
			am.prefix = netip.PrefixFrom(address, int(m.Data[1]))
			if am.prefix.IsValid() {
				addrs = append(addrs, am)
			}
		}
	}
	return links, addrs, nil
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// ipv6Groups joins multicast groups with IPV6_JOIN_GROUP, which opens the
// NIC's filter and sends MLD reports so snooping switches forward the
// solicitations. The kernel charges every membership to the socket's option
// memory (net.core.optmem_max), which caps one socket at a few thousand
// groups, so more sockets are opened as needed, and closed when their last
// group leaves. The sockets are unbound UDP sockets: they never receive
// anything.
type ipv6Groups struct {
	index int
	fds   []int              // new groups go to the last one
	where map[netip.Addr]int // group -> the socket it was joined on
	held  map[int]int        // socket -> how many groups it holds
}

func (g *ipv6Groups) join(group netip.Addr) error {
	mreq := &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(g.index)}
	if n := len(g.fds); n > 0 {
		err := unix.SetsockoptIPv6Mreq(g.fds[n-1], unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq)
		if err == nil {
			g.where[group] = g.fds[n-1]
			g.held[g.fds[n-1]]++
			return nil
		}
		if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.ENOMEM) {
			return fmt.Errorf("join %s: %w", group, err)
		}
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("join %s: open socket: %w", group, err)
	}
	if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
		unix.Close(fd)
		return fmt.Errorf("join %s: %w", group, err)
	}
	g.fds = append(g.fds, fd)
	g.where[group] = fd
	g.held[fd] = 1
	return nil
}

func (g *ipv6Groups) leave(group netip.Addr) error {
	fd, ok := g.where[group]
	if !ok {
		return nil
	}
	delete(g.where, group)
	g.held[fd]--
	if g.held[fd] == 0 && fd != g.fds[len(g.fds)-1] {
		// New groups never go to this socket again: as groups come and
		// go, sockets left open empty would pile up.
		delete(g.held, fd)
		g.fds = slices.DeleteFunc(g.fds, func(f int) bool { return f == fd })
		if err := unix.Close(fd); err != nil {
			return fmt.Errorf("leave %s: %w", group, err)
		}
		return nil
	}
	mreq := &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(g.index)}
	if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_LEAVE_GROUP, mreq); err != nil {
		return fmt.Errorf("leave %s: %w", group, err)
	}
	return nil
}

func (g *ipv6Groups) Close() error {
	var errs []error
	for _, fd := range g.fds {
		errs = append(errs, unix.Close(fd))
	}
	g.fds, g.where, g.held = nil, nil, nil
	return errors.Join(errs...)
}
