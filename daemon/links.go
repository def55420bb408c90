package daemon

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/l2lb/l2lb/config"
)

// hostLink is an interface of this host, as far as choosing where to answer
// goes.
type hostLink struct {
	Name     string
	Up       bool
	Prefixes []netip.Prefix
}

// hostLinks lists the host's non-loopback interfaces, sorted by name.
func hostLinks() ([]hostLink, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []hostLink
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		l := hostLink{Name: ifi.Name, Up: ifi.Flags&net.FlagUp != 0}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue // vanished meanwhile
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ip, _ := netip.AddrFromSlice(n.IP)
				ones, _ := n.Mask.Size()
				if p := netip.PrefixFrom(ip.Unmap(), ones); p.IsValid() {
					l.Prefixes = append(l.Prefixes, p.Masked())
				}
			}
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b hostLink) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// interfaceFor picks the interface this node answers for ip of pool on: the
// pool's interface if it names one, else the first allowed interface whose
// subnet contains ip. Never an interface that is down or not allowed: a
// multi-NIC host must answer on one interface with one MAC.
func interfaceFor(cfg *config.Config, pool *config.Pool, ip netip.Addr, links []hostLink) (string, bool) {
	for _, l := range links {
		if !l.Up {
			continue
		}
		if pool.Interface != "" {
			if l.Name == pool.Interface {
				return l.Name, true
			}
			continue
		}
		if len(cfg.Interfaces) > 0 && !slices.Contains(cfg.Interfaces, l.Name) {
			continue
		}
		for _, p := range l.Prefixes {
			if p.Contains(ip) {
				return l.Name, true
			}
		}
	}
	return "", false
}

// servablePools names the pools this node has an interface for.
func servablePools(cfg *config.Config, links []hostLink) []string {
	var out []string
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		for _, r := range p.Addresses {
			if _, ok := interfaceFor(cfg, p, r.First, links); ok {
				out = append(out, p.Name)
				break
			}
		}
	}
	return out
}
