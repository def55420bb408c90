package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Machine is a node as users run one: the cached Debian root (see
// test/rootfs/build.sh) booted by systemd-nspawn with systemd as PID 1,
// inside the node's own network namespace. To the rest of the lab it is
// the same node (same namespace, eth0, MAC, addresses, strictARP sysctls);
// a kube-proxy or anything else started in the namespace shares its network.
// The root is read-only under a tmpfs overlay, so whatever the machine
// writes vanishes with it and the cache stays clean.
type Machine struct {
	*Node
	// Init is the host PID of the machine's systemd (PID 1 inside).
	Init int
	// Share is a host directory the machine sees read-only at SharePath.
	Share string

	nspawn *Proc
}

// SharePath is where a machine sees its Share directory.
const SharePath = "/l2lb"

// bootTimeout bounds a boot up to `systemctl is-system-running`; Debian's
// minimal root boots in a few seconds, more on a loaded machine.
const bootTimeout = 90 * time.Second

// Boot boots node n as a Machine and waits until its systemd reports the
// system running. The machine is killed at t's cleanup, and at the lab's
// teardown (an interrupt) at the latest.
func (l *Lab) Boot(t testing.TB, n *Node) *Machine {
	t.Helper()
	if err := requirements("systemd-nspawn", "nsenter"); err != nil {
		t.Fatalf("lab: %v (test/deps.sh installs systemd-container)", err)
	}
	root, err := rootfs()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	m := &Machine{Node: n, Share: filepath.Join(l.run.dir, n.Name+"-share")}
	if err := os.Mkdir(m.Share, 0o755); err != nil {
		t.Fatalf("lab: %v", err)
	}
	start := time.Now()
	// --register=no: these machines run no systemd-machined; --keep-unit:
	// and no systemd on the host to make a scope of the machine.
	m.nspawn, err = startProc(l.run, "systemd-nspawn", "--quiet", "--boot",
		"--register=no", "--keep-unit",
		"--directory="+root, "--volatile=overlay",
		"--machine="+n.NS.Name, "--hostname="+n.Name,
		"--network-namespace-path=/run/netns/"+n.NS.Name,
		"--bind-ro="+m.Share+":"+SharePath,
		"--console=read-only", "--setenv=SYSTEMD_COLORS=0")
	if err != nil {
		t.Fatalf("lab: boot %s: %v", n.Name, err)
	}
	// Killed, not powered off: everything it wrote is in its tmpfs, and a
	// shutdown of this Debian takes tens of seconds in nspawn.
	l.run.addCloser(m.kill)
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			journal, _ := m.Exec(ctx, "journalctl", "--no-pager", "-n", "150")
			t.Logf("lab: journal of %s:\n%s", n.Name, journal)
		}
		m.kill()
	})
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := m.waitInit(ctx); err != nil {
		t.Fatalf("lab: boot %s: %v\n%s", n.Name, err, tail(m.nspawn.Output(), 40))
	}
	if err := m.waitRunning(ctx); err != nil {
		t.Fatalf("lab: boot %s: %v\n%s", n.Name, err, tail(m.nspawn.Output(), 40))
	}
	t.Logf("lab: %s booted in %v", n.Name, time.Since(start).Round(time.Millisecond))
	return m
}

// waitInit finds the machine's PID 1: the process in a child PID namespace
// of systemd-nspawn's whose PID there is 1.
func (m *Machine) waitInit(ctx context.Context) error {
	return poll(ctx, func() error {
		if m.nspawn.exited() {
			return fmt.Errorf("systemd-nspawn exited: %v", m.nspawn.exitErr())
		}
		pid, err := nspawnInit(m.nspawn.PID)
		if err != nil {
			return err
		}
		m.Init = pid
		return nil
	})
}

// nspawnInit returns the PID of the container init below nspawn: systemd-
// nspawn forks a child in new namespaces, which forks the init, so the init
// is a child or grandchild of nspawn with "NSpid: <host pid> 1".
func nspawnInit(nspawn int) (int, error) {
	kids := childPIDs(nspawn)
	for _, k := range kids {
		kids = append(kids, childPIDs(k)...)
	}
	for _, k := range kids {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(k) + "/status")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == "1" {
				return k, nil
			}
		}
	}
	return 0, errors.New("init not started yet")
}

// childPIDs lists the child processes of pid.
func childPIDs(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// waitRunning waits until systemd has finished booting. "degraded" is final:
// the error names the failed units.
func (m *Machine) waitRunning(ctx context.Context) error {
	for {
		out, _ := m.Exec(ctx, "systemctl", "is-system-running")
		switch state := strings.TrimSpace(string(out)); state {
		case "running":
			return nil
		case "degraded":
			failed, _ := m.Exec(ctx, "systemctl", "--failed", "--no-legend", "--plain")
			return fmt.Errorf("system degraded: %s", bytes.TrimSpace(failed))
		default:
			select {
			case <-ctx.Done():
				return fmt.Errorf("system %q: %w", state, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// Exec runs a command inside the machine (all its namespaces, as root) and
// returns its combined output. A context without deadline is bounded to
// 30 s.
func (m *Machine) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	return command(ctx, nil, "nsenter", append([]string{"-t", strconv.Itoa(m.Init), "-a", "--",
		"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
		name}, args...)...)
}

// Shell runs a POSIX shell script inside the machine, stopping at the first
// failing command.
func (m *Machine) Shell(ctx context.Context, script string) ([]byte, error) {
	return m.Exec(ctx, "sh", "-euc", script)
}

// kill ends the machine at once: killing PID 1 of its PID namespace kills
// every process in it, then nspawn exits.
func (m *Machine) kill() {
	if m.Init > 0 && !m.nspawn.exited() {
		syscall.Kill(m.Init, syscall.SIGKILL)
		m.nspawn.Wait(5 * time.Second)
	}
	m.nspawn.Kill()
}

// rootfs returns the cached Debian root, building it first if needed
// (test/rootfs/build.sh; a few minutes when cold).
func rootfs() (string, error) {
	script, err := repoFile("test/rootfs/build.sh")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	out, err := command(ctx, nil, script)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}
