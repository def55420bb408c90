package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LockPath is the file whose exclusive flock a lab holds for its lifetime.
const LockPath = "/run/l2lb-lab.lock"

// LockWait bounds how long a lab waits for another lab on the machine to end.
const LockWait = 30 * time.Minute // under make test, every lab package queues here

// Addresses of the segment. Tests own ServiceV4First-ServiceV4Last and
// ServiceV6First-ServiceV6Last for Service IPs; the lab never uses them.
var (
	PrefixV4 = netip.MustParsePrefix("198.51.100.0/24")
	PrefixV6 = netip.MustParsePrefix("2001:db8:100::/64")

	BridgeV4 = netip.MustParseAddr("198.51.100.1")
	BridgeV6 = netip.MustParseAddr("2001:db8:100::1")
	ClientV4 = netip.MustParseAddr("198.51.100.2")
	ClientV6 = netip.MustParseAddr("2001:db8:100::2")

	ServiceV4First = netip.MustParseAddr("198.51.100.200")
	ServiceV4Last  = netip.MustParseAddr("198.51.100.250")
	ServiceV6First = netip.MustParseAddr("2001:db8:100::200")
	ServiceV6Last  = netip.MustParseAddr("2001:db8:100::2ff")
)

// maxNodes keeps node addresses (198.51.100.11+i, 2001:db8:100::11+i with
// the same digits) below the Service ranges.
const maxNodes = 189

// Names of everything a lab creates: netns and host-side veth
// "l2lb-<id>-n<i>", "l2lb-<id>-c" and "l2lb-<id>-h<i>", bridge "l2b<id>", directory
// "$TMPDIR/l2lb-lab-<id>". Four hex digits keep interface names within 15
// bytes.
var (
	nameRE   = regexp.MustCompile(`^l2lb-[0-9a-f]{4}-`)
	bridgeRE = regexp.MustCompile(`^l2b[0-9a-f]{4}$`)
	dirRE    = regexp.MustCompile(`^l2lb-lab-[0-9a-f]{4}$`)
)

func newRunID() (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// requirements reports what the lab needs and is missing, in one message.
func requirements(tools ...string) error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "root (network namespaces, veth and bridge links, binding port 80)")
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "the tools "+strings.Join(missing, ", ")+" (make deps, or apt-get install iproute2 iputils-arping ndisc6 curl etcd-server)")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("the test lab needs %s; run the tests as root, e.g. `sudo make test`", strings.Join(problems, " and "))
}

// lockMachine takes the machine-wide lab lock, waiting at most wait and
// saying so through logf while it waits.
func lockMachine(wait time.Duration, logf func(string, ...any)) (*os.File, error) {
	f, err := os.OpenFile(LockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	start := time.Now()
	nextLog := start
	if time.Since(time.Unix(0, lastRelease.Load())) < 2*time.Second && othersWaiting() {
		time.Sleep(time.Second)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", LockPath, err)
		}
		touchWaiting()
		holder, _ := os.ReadFile(LockPath)
		waited := time.Since(start)
		if waited >= wait {
			f.Close()
			return nil, fmt.Errorf("lock %s: another lab (pid %s) held it for %v; only one lab fits on a machine, and the lock dies with its process, so that lab is live",
				LockPath, strings.TrimSpace(string(holder)), wait)
		}
		if time.Now().After(nextLog) {
			logf("lab: waiting for %s: another lab (pid %s) is running, only one fits on a machine (waited %v of at most %v)",
				LockPath, strings.TrimSpace(string(holder)), waited.Round(time.Second), wait)
			nextLog = nextLog.Add(30 * time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d %s\n", os.Getpid(), filepath.Base(os.Args[0]))
	}
	return f, nil
}

func unlockMachine(f *os.File) {
	f.Truncate(0)
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	f.Close()
	lastRelease.Store(time.Now().UnixNano())
}

// flock is not fair, and go test runs a package's tests back to back: a
// process that just released the lock would take it back before a waiting
// process polls again. Waiters touch waitPath on every poll; a process that
// released the lock within 2 s and sees waiters lets them go first.
const waitPath = "/run/l2lb-lab.wait"

var lastRelease atomic.Int64 // UnixNano of this process's last release

func touchWaiting() {
	now := time.Now()
	if err := os.Chtimes(waitPath, now, now); errors.Is(err, os.ErrNotExist) {
		os.WriteFile(waitPath, nil, 0o644)
	}
}

func othersWaiting() bool {
	fi, err := os.Stat(waitPath)
	return err == nil && time.Since(fi.ModTime()) < time.Second
}

// Clean removes what crashed labs left behind: their processes, links,
// namespaces and directories. It takes the lab lock first (waiting at most
// wait), so it never touches a running lab.
func Clean(wait time.Duration, logf func(string, ...any)) error {
	if err := requirements("ip"); err != nil {
		return err
	}
	f, err := lockMachine(wait, logf)
	if err != nil {
		return err
	}
	defer unlockMachine(f)
	return cleanLeftovers(logf)
}

// cleanLeftovers removes every lab-named object. The caller holds the lock,
// so none of them belongs to a live lab.
func cleanLeftovers(logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error

	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "l2lb-lab-*"))
	for _, dir := range dirs {
		if !dirRE.MatchString(filepath.Base(dir)) {
			continue
		}
		for _, pid := range recordedPIDs(dir) {
			logf("lab-clean: killing leftover process %d", pid)
			killGroup(pid)
		}
	}
	namespaces, err := listNetns(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range namespaces {
		if !nameRE.MatchString(name) {
			continue
		}
		out, _ := ipCmd(ctx, nil, "netns", "pids", name)
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				logf("lab-clean: killing process %d in leftover namespace %s", pid, name)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	links, err := listLinks(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, link := range links {
		if nameRE.MatchString(link) || bridgeRE.MatchString(link) {
			logf("lab-clean: deleting leftover link %s", link)
			if _, err := ipCmd(ctx, nil, "link", "del", link); err != nil && linkExists(ctx, link) {
				errs = append(errs, err)
			}
		}
	}
	for _, name := range namespaces {
		if nameRE.MatchString(name) {
			logf("lab-clean: deleting leftover namespace %s", name)
			if _, err := ipCmd(ctx, nil, "netns", "del", name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, dir := range dirs {
		if dirRE.MatchString(filepath.Base(dir)) {
			logf("lab-clean: removing leftover directory %s", dir)
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// recordPID notes a started process in the run directory so that a later
// clean can kill it by id if this test process dies without cleaning up.
// The start time guards against PID reuse.
func recordPID(dir string, pid int) {
	start, err := procStart(pid)
	if err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "pids"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s\n", pid, start)
}

// recordedPIDs returns the recorded processes of dir that still run.
func recordedPIDs(dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		if start, err := procStart(pid); err == nil && start == f[1] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStart returns field 22 of /proc/pid/stat, the start time in ticks.
func procStart(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces; fields after it do not.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return f[19], nil
}

// killGroup kills pid's process group (processes are started as group
// leaders) and pid itself.
func killGroup(pid int) {
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
}

func listNetns(ctx context.Context) ([]string, error) {
	out, err := ipCmd(ctx, nil, "-j", "netns", "list")
	if err != nil {
		return nil, err
	}
	var list []struct {
		Name string `json:"name"`
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("parse ip netns list: %w", err)
	}
	names := make([]string, 0, len(list))
	for _, n := range list {
		names = append(names, n.Name)
	}
	return names, nil
}

func listLinks(ctx context.Context) ([]string, error) {
	out, err := ipCmd(ctx, nil, "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var list []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("parse ip link show: %w", err)
	}
	names := make([]string, 0, len(list))
	for _, l := range list {
		names = append(names, l.Name)
	}
	return names, nil
}

func linkExists(ctx context.Context, name string) bool {
	_, err := ipCmd(ctx, nil, "link", "show", "dev", name)
	return err == nil
}

// checkRoutes refuses a host whose routes (any table, both families)
// overlap the lab prefixes: the lab would shadow or hijack them. Routes on
// lab bridges are leftovers and were removed before this runs.
func checkRoutes(ctx context.Context) error {
	for _, fam := range []string{"-4", "-6"} {
		out, err := ipCmd(ctx, nil, "-j", fam, "route", "show", "table", "all")
		if err != nil {
			return err
		}
		if err := overlappingRoute(out); err != nil {
			return err
		}
	}
	return nil
}

// overlappingRoute checks the output of ip -j route.
func overlappingRoute(ipRouteJSON []byte) error {
	var routes []struct {
		Dst  string `json:"dst"`
		Dev  string `json:"dev"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(ipRouteJSON, &routes); err != nil {
		return fmt.Errorf("parse ip route: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "" || r.Dst == "default" || bridgeRE.MatchString(r.Dev) {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, aerr := netip.ParseAddr(r.Dst)
			if aerr != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Overlaps(PrefixV4) || p.Overlaps(PrefixV6) {
			kind := ""
			if r.Type != "" {
				kind = r.Type + " "
			}
			return fmt.Errorf("host route %s%s dev %s overlaps the lab's documentation prefixes %v and %v; the lab refuses to shadow this machine's routes (remove the route, or run the lab on another machine)",
				kind, r.Dst, r.Dev, PrefixV4, PrefixV6)
		}
	}
	return nil
}
