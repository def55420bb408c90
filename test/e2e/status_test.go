package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/test/lab"
)

// statusJSON is the part of `l2lbd status -o json` the tests read.
type statusJSON struct {
	Leader string `json:"leader"`
	Nodes  []struct {
		Name         string   `json:"name"`
		Live         bool     `json:"live"`
		Ready        bool     `json:"ready"`
		ConfigDigest string   `json:"configDigest"`
		Pools        []string `json:"pools"`
	} `json:"nodes"`
	Pools []struct {
		Name string          `json:"name"`
		Used int             `json:"used"`
		Free json.RawMessage `json:"free"`
	} `json:"pools"`
	Addresses []struct {
		IP        string   `json:"ip"`
		Node      string   `json:"node"`
		Interface string   `json:"interface"`
		Services  []string `json:"services"`
	} `json:"addresses"`
	Pending []struct {
		Service string `json:"service"`
		Reason  string `json:"reason"`
	} `json:"pending"`
	Attention []string `json:"attention"`
}

// unprivileged copies the l2lbd binary, a config and a kubeconfig where
// user nobody can read them, so that status runs as an operator would,
// without root.
type unprivileged struct{ bin, config, kubeconfig string }

func newUnprivileged(t testing.TB, config, kubeconfig string) unprivileged {
	t.Helper()
	dir, err := os.MkdirTemp("", "l2lb-status-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	u := unprivileged{bin: filepath.Join(dir, "l2lbd"), config: filepath.Join(dir, "l2lbd.yaml"), kubeconfig: filepath.Join(dir, "kubeconfig")}
	for _, c := range []struct {
		from, to string
		mode     os.FileMode
	}{{l2lbd, u.bin, 0o755}, {config, u.config, 0o644}, {kubeconfig, u.kubeconfig, 0o644}} {
		data, err := os.ReadFile(c.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.to, data, c.mode); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// run runs l2lbd status as nobody and returns stdout, stderr, the exit
// code and how long it took.
func (u unprivileged) run(t testing.TB, args ...string) (string, string, int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxBg, 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.bin, append([]string{"status", "--config", u.config, "--kubeconfig", u.kubeconfig}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("l2lbd status: %v", err)
	}
	return stdout.String(), stderr.String(), code, took
}

func (u unprivileged) json(t testing.TB) (statusJSON, int) {
	t.Helper()
	out, errOut, code, took := u.run(t, "-o", "json")
	var s statusJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status -o json (exit %d, %v): %v\nstdout: %s\nstderr: %s", code, took, err, out, errOut)
	}
	return s, code
}

// TestStatus runs `l2lbd status` as an unprivileged user against the lab:
// it names the leader, the announcing node of an address (the one a real
// client sees answer), a pending Service and why; its exit status follows
// what needs attention; a killed daemon shows as not live.
func TestStatus(t *testing.T) {
	l, ds := placementLab(t, 3, "")
	l.CreateLBService(ctxBg, "default", "web")
	ip := waitIngress(t, l, "default", "web", 1)[0]
	standIn(t, l, ip)
	o := owner(t, l, ip)
	leader := ipamLeader(t, l)
	u := newUnprivileged(t, ds[0].config, l.AdminKubeconfig)

	// All is well: exit 0.
	var s statusJSON
	var code int
	lab.WaitFor(t, 10*time.Second, "status exit 0", func(context.Context) bool {
		s, code = u.json(t)
		if code != 0 {
			t.Logf("status exit %d: %q", code, s.Attention)
		}
		return code == 0
	})
	if s.Leader != leader {
		t.Errorf("leader %q, want %q", s.Leader, leader)
	}
	if len(s.Nodes) != 3 || !s.Nodes[0].Live || !s.Nodes[0].Ready || s.Nodes[0].ConfigDigest == "" || !slices.Contains(s.Nodes[0].Pools, "lan") {
		t.Errorf("nodes %+v: want 3, live, Ready, with digest and pools", s.Nodes)
	}
	i := slices.IndexFunc(s.Addresses, func(a struct {
		IP        string   `json:"ip"`
		Node      string   `json:"node"`
		Interface string   `json:"interface"`
		Services  []string `json:"services"`
	}) bool {
		return a.IP == ip.String()
	})
	if i < 0 {
		t.Fatalf("addresses %+v lack %s", s.Addresses, ip)
	}
	if a := s.Addresses[i]; a.Node != o.Name || a.Interface != o.Link || !slices.Equal(a.Services, []string{"default/web"}) {
		t.Errorf("address %+v: want announced by %s (the MAC arping sees) on %s for default/web", a, o.Name, o.Link)
	}

	// A Service asking for a pool that does not exist: pending, exit 1.
	l.CreateLBService(ctxBg, "default", "typo", lab.WithAnnotation("l2lb.dev/pool", "nosuch"))
	s, code = u.json(t)
	if code != 1 || len(s.Pending) != 1 || s.Pending[0].Service != "default/typo" || !strings.Contains(s.Pending[0].Reason, "nosuch") {
		t.Errorf("exit %d, pending %+v: want 1 and default/typo naming pool nosuch", code, s.Pending)
	}
	table, _, code, took := u.run(t)
	t.Logf("l2lbd status (exit %d, %v):\n%s", code, took, table)
	if code != 1 || !strings.Contains(table, "Needs attention:") || !strings.Contains(table, "default/typo") {
		t.Errorf("table (exit %d) does not flag default/typo", code)
	}
	l.DeleteService(ctxBg, "default", "typo")

	// A daemon whose renewal comes late, within a lease duration (stopped
	// for 1.5 s, longer than a renew interval and some slack): its peers
	// count it live, and so does the command.
	late := daemonOn(ds, l.Nodes[1])
	if err := late.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		resumed <- late.proc.Signal(syscall.SIGCONT)
	}()
	s, code = u.json(t)
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	lateLive := false
	for _, n := range s.Nodes {
		lateLive = lateLive || n.Name == l.Nodes[1].Name && n.Live
	}
	if !lateLive || code != 0 {
		t.Errorf("exit %d, nodes %+v: want %s live after a late renewal", code, s.Nodes, l.Nodes[1].Name)
	}

	// A daemon killed: its node is not live, said once a lease duration
	// (3 s) has been watched.
	victim := daemonOn(ds, l.Nodes[2])
	victim.proc.Signal(syscall.SIGKILL)
	victim.proc.Wait(5 * time.Second)
	out, _, code, took := u.run(t, "-o", "json")
	t.Logf("l2lbd status with a node not renewing: exit %d in %v", code, took)
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if code != 1 || !slices.ContainsFunc(s.Attention, func(a string) bool { return strings.Contains(a, "node "+l.Nodes[2].Name+": l2lbd is not live") }) {
		t.Errorf("exit %d, attention %q: want node %s not live", code, s.Attention, l.Nodes[2].Name)
	}
	if took > 5*time.Second {
		t.Errorf("status took %v with a node not renewing, want a lease duration and the lists", took)
	}
}

// BenchmarkStatus5000: `l2lbd status` against 5,000 Services, each with an
// address and an Announcing Event, 3 nodes; run as an operator would,
// unprivileged, with an admin kubeconfig. Reports the wall time per run.
//
//	go test -run '^$' -bench BenchmarkStatus5000 -benchtime=1x -timeout 30m ./test/e2e
func BenchmarkStatus5000(b *testing.B) {
	const n = 5000
	for b.Loop() {
		l := lab.Start(b, lab.Options{Nodes: 3})
		createV6Services(l, n)
		ds := startDaemons(b, l, bigV6Pools, "")
		lab.WaitFor(b, 5*time.Minute, "every Service allocated and claimed", func(ctx context.Context) bool {
			list, err := l.Client.CoreV1().Services("default").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return false
			}
			done := 0
			for _, s := range list.Items {
				if len(s.Status.LoadBalancer.Ingress) > 0 {
					done++
				}
			}
			if done < n {
				time.Sleep(time.Second)
				return false
			}
			return len(claims(b, l)) >= n
		})
		u := newUnprivileged(b, ds[0].config, l.AdminKubeconfig)
		var runs []time.Duration
		for range 5 {
			s, code := u.json(b)
			_, _, _, took := u.run(b, "-o", "json")
			runs = append(runs, took)
			if code != 0 || len(s.Addresses) != n {
				b.Errorf("exit %d, %d addresses, attention %q", code, len(s.Addresses), s.Attention)
			}
		}
		out, _, code, took := u.run(b)
		runs = append(runs, took)
		b.Logf("runs (5 JSON, then the table, exit %d, %d lines): %v", code, strings.Count(out, "\n"), runs)
		b.ReportMetric(lab.Percentile(runs, 0.5).Seconds(), "s-p50")
		b.ReportMetric(slices.Max(runs).Seconds(), "s-max")
	}
}
