package netio

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

type rtattr struct {
	typ  uint16
	addr netip.Addr
}

// addrMessage builds an RTM_NEWADDR or RTM_DELADDR message as the kernel
// sends it.
func addrMessage(typ uint16, family, prefixLen uint8, index uint32, attrs ...rtattr) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfAddrmsg)
	binary.NativeEndian.PutUint16(b[4:6], typ)
	ifa := b[unix.SizeofNlMsghdr:]
	ifa[0], ifa[1] = family, prefixLen
	binary.NativeEndian.PutUint32(ifa[4:8], index)
	for _, a := range attrs {
		v := a.addr.AsSlice()
		n := unix.SizeofRtAttr + len(v)
		attr := make([]byte, (n+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1))
		binary.NativeEndian.PutUint16(attr[0:2], uint16(n))
		binary.NativeEndian.PutUint16(attr[2:4], a.typ)
		copy(attr[unix.SizeofRtAttr:], v)
		b = append(b, attr...)
	}
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	return b
}

func TestParseRouteAddrs(t *testing.T) {
	v4 := netip.MustParseAddr("198.51.100.11")
	peer := netip.MustParseAddr("198.51.100.99")
	v6 := netip.MustParseAddr("2001:db8:100::11")
	tests := []struct {
		name string
		msg  []byte
		want []addrMsg
	}{
		{
			name: "IPv4 with its prefix length",
			msg:  addrMessage(unix.RTM_NEWADDR, unix.AF_INET, 24, 2, rtattr{unix.IFA_ADDRESS, v4}, rtattr{unix.IFA_LOCAL, v4}),
			want: []addrMsg{{index: 2, prefix: netip.PrefixFrom(v4, 24)}},
		},
		{
			name: "point-to-point: the local address, not the peer",
			msg:  addrMessage(unix.RTM_NEWADDR, unix.AF_INET, 32, 2, rtattr{unix.IFA_ADDRESS, peer}, rtattr{unix.IFA_LOCAL, v4}),
			want: []addrMsg{{index: 2, prefix: netip.PrefixFrom(v4, 32)}},
		},
		{
			name: "IPv6",
			msg:  addrMessage(unix.RTM_NEWADDR, unix.AF_INET6, 64, 3, rtattr{unix.IFA_ADDRESS, v6}),
			want: []addrMsg{{index: 3, prefix: netip.PrefixFrom(v6, 64)}},
		},
		{
			name: "deleted",
			msg:  addrMessage(unix.RTM_DELADDR, unix.AF_INET6, 64, 3, rtattr{unix.IFA_ADDRESS, v6}),
			want: []addrMsg{{index: 3, prefix: netip.PrefixFrom(v6, 64), deleted: true}},
		},
		{
			name: "prefix longer than the address",
			msg:  addrMessage(unix.RTM_NEWADDR, unix.AF_INET, 33, 2, rtattr{unix.IFA_LOCAL, v4}),
		},
		{
			name: "no address",
			msg:  addrMessage(unix.RTM_NEWADDR, unix.AF_INET, 24, 2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links, addrs, err := parseRoute(tt.msg)
			if err != nil || len(links) != 0 || !slices.Equal(addrs, tt.want) {
				t.Errorf("parseRoute = %v, %v, %v; want no links, %v, nil", links, addrs, err, tt.want)
			}
		})
	}
}
