package config

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// Range is an inclusive span of addresses of one family, First <= Last.
type Range struct {
	First, Last netip.Addr
}

// ParseRange parses a CIDR ("198.51.100.0/28"), a "first-last" range
// ("198.51.100.10-198.51.100.20") or a single address.
func ParseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Range{}, errors.New("empty address")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Range{}, fmt.Errorf("%q is not a CIDR: %w", s, unwrapParse(err))
		}
		if err := plainAddr(p.Addr()); err != nil {
			return Range{}, fmt.Errorf("%q: %w", s, err)
		}
		if p.Masked() != p {
			return Range{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		return prefixRange(p), nil
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := parseAddr(strings.TrimSpace(first))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: first address: %w", s, err)
		}
		b, err := parseAddr(strings.TrimSpace(last))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: last address: %w", s, err)
		}
		if a.Is4() != b.Is4() {
			return Range{}, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		}
		if b.Less(a) {
			return Range{}, fmt.Errorf("range %q: first address is after the last", s)
		}
		return Range{First: a, Last: b}, nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return Range{}, err
	}
	return Range{First: a, Last: a}, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address: %w", s, unwrapParse(err))
	}
	return a, plainAddr(a)
}

// plainAddr refuses the address forms that cannot be announced on a link.
func plainAddr(a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("%s: zones are not allowed", a)
	case a.Is4In6():
		return fmt.Errorf("%s: write IPv4-mapped addresses as IPv4 (%s)", a, a.Unmap())
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast():
		return fmt.Errorf("%s is not a unicast address that can be announced", a)
	}
	return nil
}

// unwrapParse drops netip's repetition of the input from its error.
func unwrapParse(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return errors.New(msg[i+3:])
	}
	return err
}

func prefixRange(p netip.Prefix) Range {
	first := p.Addr()
	b := first.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return Range{First: first, Last: last}
}

// Contains reports whether ip lies in the range.
func (r Range) Contains(ip netip.Addr) bool {
	return r.First.BitLen() == ip.BitLen() && r.First.Compare(ip) <= 0 && ip.Compare(r.Last) <= 0
}

// Overlaps reports whether the ranges share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.BitLen() == o.First.BitLen() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Size is the number of addresses in the range.
func (r Range) Size() *big.Int {
	n := new(big.Int).SetBytes(r.Last.AsSlice())
	n.Sub(n, new(big.Int).SetBytes(r.First.AsSlice()))
	return n.Add(n, big.NewInt(1))
}

// String renders the range as a single address, a CIDR when it is exactly one,
// or "first-last".
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	for bits := 0; bits <= r.First.BitLen(); bits++ {
		p := netip.PrefixFrom(r.First, bits)
		if p.Masked() == p && prefixRange(p) == r {
			return p.String()
		}
	}
	return r.First.String() + "-" + r.Last.String()
}
