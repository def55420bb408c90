package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/validate/content"
)

// MinRenewInterval bounds how hard the nodes may drive the API server.
const MinRenewInterval = 100 * time.Millisecond

// Validate checks a Config built in code; Parse already validates what it returns.
func Validate(c *Config) error {
	return errors.Join(validate(c, func(path, msg string) *Problem {
		return &Problem{File: "config", Path: path, Msg: msg}
	})...)
}

type locator func(path, msg string) *Problem

// validate returns every problem with c, each placed by locate.
func validate(c *Config, locate locator) []error {
	v := &validator{locate: locate}
	v.check("nodeName", c.NodeName, dnsSubdomain)
	if c.Kubeconfig == "" || !filepath.IsAbs(c.Kubeconfig) {
		v.fail("kubeconfig", "want an absolute path, got %q", c.Kubeconfig)
	}
	v.check("loadBalancerClass", c.LoadBalancerClass, qualifiedName)
	v.interfaces("interfaces", c.Interfaces)
	v.pools(c)

	co := c.Coordination
	v.check("coordination.namespace", co.Namespace, dnsLabel)
	if co.RenewInterval < MinRenewInterval {
		v.fail("coordination.renewInterval", "must be at least %v, got %v", MinRenewInterval, co.RenewInterval)
	}
	if co.LeaseDuration < 2*co.RenewInterval {
		v.fail("coordination.leaseDuration", "must be at least twice renewInterval (%v), got %v", 2*co.RenewInterval, co.LeaseDuration)
	}

	if k := c.Kubernetes; !(k.QPS > 0) {
		v.fail("kubernetes.qps", "must be more than 0 requests per second, got %v", k.QPS)
	}
	if k := c.Kubernetes; k.Burst < 1 {
		v.fail("kubernetes.burst", "must be at least 1, got %d", k.Burst)
	}

	an := c.Announce
	if an.Count < 1 || an.Count > 100 {
		v.fail("announce.count", "must be between 1 and 100, got %d", an.Count)
	}
	if an.Interval <= 0 {
		v.fail("announce.interval", "must be positive, got %v", an.Interval)
	}
	if an.Refresh != 0 && an.Refresh < time.Second {
		v.fail("announce.refresh", "must be 0 (off) or at least 1s, got %v", an.Refresh)
	}

	if a := c.Metrics.Address; a != "" {
		if err := hostPort(a); err != nil {
			v.fail("metrics.address", "%v", err)
		}
	}
	return v.problems
}

type validator struct {
	locate   locator
	problems []error
}

func (v *validator) fail(path, format string, args ...any) {
	v.problems = append(v.problems, v.locate(path, fmt.Sprintf(format, args...)))
}

func (v *validator) check(path, value string, rule func(string) error) {
	if err := rule(value); err != nil {
		v.fail(path, "%v", err)
	}
}

func (v *validator) interfaces(path string, names []string) {
	seen := map[string]int{}
	for i, name := range names {
		p := fmt.Sprintf("%s[%d]", path, i)
		v.check(p, name, interfaceName)
		if first, dup := seen[name]; dup {
			v.fail(p, "%q is listed twice (also %s[%d])", name, path, first)
		}
		seen[name] = i
	}
}

// span is one pool range with where it came from, for overlap reports.
type span struct {
	r          Range
	path       string
	pool, addr int // indexes, for reporting the later of two overlapping entries
}

// No pools is valid: the daemon runs and serves nothing, so that a package
// installed on a prepared node starts, and says so (see daemon.warnNoPools).
func (v *validator) pools(c *Config) {
	names := map[string]int{}
	var spans []span
	for i, p := range c.Pools {
		path := fmt.Sprintf("pools[%d]", i)
		v.check(path+".name", p.Name, dnsLabel)
		if first, dup := names[p.Name]; dup && p.Name != "" {
			v.fail(path+".name", "pool name %q is already used by pools[%d]", p.Name, first)
		} else {
			names[p.Name] = i
		}
		if len(p.Addresses) == 0 {
			v.fail(path+".addresses", "a pool needs at least one address")
		}
		for j, r := range p.Addresses {
			if !r.First.IsValid() {
				continue // failed to parse, already reported
			}
			spans = append(spans, span{r: r, path: fmt.Sprintf("%s.addresses[%d]", path, j), pool: i, addr: j})
		}
		if p.Interface != "" {
			v.check(path+".interface", p.Interface, interfaceName)
			if len(c.Interfaces) > 0 && !slices.Contains(c.Interfaces, p.Interface) {
				v.fail(path+".interface", "%q is not among interfaces %v", p.Interface, c.Interfaces)
			}
		}
		ns := map[string]bool{}
		for j, n := range p.Namespaces {
			np := fmt.Sprintf("%s.namespaces[%d]", path, j)
			v.check(np, n, dnsLabel)
			if ns[n] {
				v.fail(np, "namespace %q is listed twice", n)
			}
			ns[n] = true
		}
		v.selector(path+".nodeSelector", p.NodeSelector)
	}
	v.overlaps(spans)
}

// overlaps reports every range that shares addresses with one before it, in
// O(n log n) so that a file with thousands of pools checks quickly.
func (v *validator) overlaps(spans []span) {
	slices.SortStableFunc(spans, func(a, b span) int {
		if c := a.r.First.Compare(b.r.First); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	var reach *span // the span reaching furthest so far, within one family
	for i := range spans {
		s := &spans[i]
		if reach != nil && reach.r.Overlaps(s.r) {
			a, b := reach, s
			if cmp.Or(cmp.Compare(a.pool, b.pool), cmp.Compare(a.addr, b.addr)) > 0 {
				a, b = b, a
			}
			v.fail(b.path, "%s overlaps %s (%s)", b.r, a.r, a.path)
		}
		if reach == nil || reach.r.First.BitLen() != s.r.First.BitLen() || reach.r.Last.Less(s.r.Last) {
			reach = s
		}
	}
}

func dnsLabel(s string) error      { return firstMsg(s, content.IsDNS1123Label(s)) }
func dnsSubdomain(s string) error  { return firstMsg(s, content.IsDNS1123Subdomain(s)) }
func qualifiedName(s string) error { return firstMsg(s, content.IsLabelKey(s)) }
func firstMsg(s string, msgs []string) error {
	if len(msgs) == 0 {
		return nil
	}
	if s == "" {
		return errors.New("must not be empty")
	}
	return fmt.Errorf("%q is not valid: %s", s, msgs[0])
}

// interfaceName applies the kernel's rule for network device names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or space.
func interfaceName(s string) error {
	switch {
	case s == "":
		return errors.New("interface name must not be empty")
	case len(s) > 15:
		return fmt.Errorf("interface name %q is longer than 15 characters", s)
	case s == "." || s == "..":
		return fmt.Errorf("%q is not a valid interface name", s)
	case strings.ContainsAny(s, "/: \t\n\r\v\f"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", s)
	}
	return nil
}

func hostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port such as 127.0.0.1:9473, got %q", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("host in %q must be an IP address (or empty for all)", s)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port in %q must be a number from 1 to 65535", s)
	}
	return nil
}
