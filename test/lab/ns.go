package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// NS is a network namespace on the lab segment: the client or a node.
type NS struct {
	Name string           // network namespace name (ip netns)
	Link string           // the namespace's interface on the bridge: "eth0"
	MAC  net.HardwareAddr // of Link
	IPv4 netip.Addr       // on Link, /24
	IPv6 netip.Addr       // on Link, /64

	run *run
}

// Exec runs a command in the namespace and returns its combined output. A
// context without deadline is bounded to 30 s.
func (ns *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	return command(ctx, nil, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn opens
// stay in the namespace and may be used from any goroutine afterwards;
// goroutines fn starts do not run in the namespace. fn runs on another
// goroutine, so it must not call t.Fatal.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", ns.Name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with this goroutine
			// rather than serve others from the wrong namespace.
			errc <- errors.Join(fnErr, fmt.Errorf("setns back from %s: %w", ns.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// waitSeconds turns the context's remaining time into a whole number of
// seconds (at least 1) for tools taking -w; def applies without deadline.
func waitSeconds(ctx context.Context, def time.Duration) int {
	d := def
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	return max(1, int(math.Floor(d.Seconds())))
}

var arpReplyRE = regexp.MustCompile(`reply from (\S+) \[([0-9A-Fa-f:]+)\]`)

// ARPResolve asks for ip with iputils arping from the namespace's link and
// returns the MAC address of the first reply. It waits until the context's
// deadline (2 s without one).
func (ns *NS) ARPResolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("arping %v: not an IPv4 address", ip)
	}
	w := waitSeconds(ctx, 2*time.Second)
	out, err := ns.Exec(ctx, "arping", "-c1", "-w", strconv.Itoa(w), "-I", ns.Link, ip.String())
	for _, m := range arpReplyRE.FindAllStringSubmatch(string(out), -1) {
		if from, perr := netip.ParseAddr(m[1]); perr == nil && from == ip {
			return net.ParseMAC(m[2])
		}
	}
	if err == nil {
		err = fmt.Errorf("arping %v: no reply in output %q", ip, out)
	}
	return nil, fmt.Errorf("arp resolve %v from %s: %w", ip, ns.Name, err)
}

var ndpTargetRE = regexp.MustCompile(`Target link-layer address: ([0-9A-Fa-f:]+)`)

// NDPResolve sends Neighbor Solicitations for ip with ndisc6 from the
// namespace's link and returns the target link-layer address of the first
// advertisement. It waits until the context's deadline (2 s without one).
func (ns *NS) NDPResolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("ndisc6 %v: not an IPv6 address", ip)
	}
	tries := waitSeconds(ctx, 2*time.Second)
	out, err := ns.Exec(ctx, "ndisc6", "-1", "-r", strconv.Itoa(tries), "-w", "1000", ip.String(), ns.Link)
	if m := ndpTargetRE.FindStringSubmatch(string(out)); m != nil {
		return net.ParseMAC(m[1])
	}
	if err == nil {
		err = fmt.Errorf("ndisc6 %v: no advertisement in output %q", ip, out)
	}
	return nil, fmt.Errorf("ndp resolve %v from %s: %w", ip, ns.Name, err)
}

// Neigh reads the kernel neighbour cache entry for ip on the namespace's
// link (ip -j neigh). With no entry, mac is nil and state empty; an entry
// being resolved or failed has a state (INCOMPLETE, FAILED) but no MAC.
func (ns *NS) Neigh(ctx context.Context, ip netip.Addr) (mac net.HardwareAddr, state string, err error) {
	out, err := ns.Exec(ctx, "ip", "-j", "neigh", "show", "to", ip.String(), "dev", ns.Link)
	if err != nil {
		return nil, "", err
	}
	var entries []struct {
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, "", fmt.Errorf("parse ip neigh: %w: %q", err, out)
	}
	if len(entries) == 0 {
		return nil, "", nil
	}
	e := entries[0]
	if e.LLAddr != "" {
		if mac, err = net.ParseMAC(e.LLAddr); err != nil {
			return nil, "", fmt.Errorf("parse ip neigh: %w", err)
		}
	}
	return mac, strings.Join(e.State, ","), nil
}

// Curl fetches http://ip:port/ with curl from the namespace and returns the
// body without surrounding white space. It gives up at the context's
// deadline (5 s without one).
func (ns *NS) Curl(ctx context.Context, ip netip.Addr, port int) (string, error) {
	w := waitSeconds(ctx, 5*time.Second)
	url := "http://" + netip.AddrPortFrom(ip, uint16(port)).String() + "/"
	out, err := ns.Exec(ctx, "curl", "-sS", "--globoff", "--noproxy", "*", "--max-time", strconv.Itoa(w), url)
	if err != nil {
		return "", fmt.Errorf("curl from %s: %w", ns.Name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// AddAddr adds an address to dev in the namespace (IPv6 without duplicate
// address detection).
func (ns *NS) AddAddr(ctx context.Context, dev string, p netip.Prefix) error {
	args := []string{"-n", ns.Name, "addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	_, err := ipCmd(ctx, nil, args...)
	return err
}

// DelAddr removes an address from dev in the namespace.
func (ns *NS) DelAddr(ctx context.Context, dev string, p netip.Prefix) error {
	_, err := ipCmd(ctx, nil, "-n", ns.Name, "addr", "del", p.String(), "dev", dev)
	return err
}

// SetLinkUp sets dev up in the namespace.
func (ns *NS) SetLinkUp(ctx context.Context, dev string) error {
	_, err := ipCmd(ctx, nil, "-n", ns.Name, "link", "set", dev, "up")
	return err
}

// SetLinkDown sets dev down in the namespace; addresses stay
// (keep_addr_on_down).
func (ns *NS) SetLinkDown(ctx context.Context, dev string) error {
	_, err := ipCmd(ctx, nil, "-n", ns.Name, "link", "set", dev, "down")
	return err
}
