package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the tests run this binary as l2lbd itself.
func TestMain(m *testing.M) {
	if os.Getenv("L2LBD_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("nodeName: n1\nkubeconfig: "+filepath.Join(dir, "absent.kubeconfig")+"\npools:\n  - name: lan\n    addresses: [198.51.100.200/29, \"2001:db8:100::/120\"]\n    interface: eth0\n"), 0o644)
	os.WriteFile(bad, []byte("pools:\n  - name: lan\n    addresses: [198.51.100.7/24]\n    intreface: eth0\nannounce:\n  count: 0\n"), 0o644)
	selected := filepath.Join(dir, "selected.yaml")
	badSelector := filepath.Join(dir, "bad-selector.yaml")
	os.WriteFile(selected, []byte("nodeName: n1\npools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n    nodeSelector:\n      matchLabels: {lb: \"yes\"}\n      matchExpressions: [{key: zone, operator: NotIn, values: [c]}]\n"), 0o644)
	os.WriteFile(badSelector, []byte("pools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n    nodeSelector:\n      matchExpressions:\n        - {key: zone, operator: In}\n"), 0o644)

	tests := []struct {
		args       []string
		code       int
		stdout     []string // substrings
		stderr     []string
		stderrOnly bool
	}{
		{args: []string{"check", "--config", good}, code: 0, stdout: []string{
			good + ": ok (digest ",
			"node n1 serves class l2lb.dev/layer2 and LoadBalancer Services with no class",
			"pools: 1",
			"lan  8 IPv4  256 IPv6  on eth0  auto-assign  all namespaces",
			"addresses: 8 IPv4, 256 IPv6",
			"credential: check skipped, no API server reachable (kubeconfig " + filepath.Join(dir, "absent.kubeconfig") + " does not exist",
		}},
		{args: []string{"check", "--config", bad}, code: 1, stderr: []string{
			bad + `:3:17: pools[0].addresses[0]: "198.51.100.7/24" has host bits set; did you mean 198.51.100.0/24?`,
			bad + `:4:5: pools[0].intreface: unknown field; did you mean "interface"?`,
			bad + ":6:10: announce.count: must be between 1 and 100, got 0",
			bad + ": 3 problem(s); not valid",
		}},
		{args: []string{"check", "--config", selected}, code: 0, stdout: []string{
			"lan  8 IPv4  0 IPv6  any interface  auto-assign  all namespaces  nodes lb=yes,zone notin (c)",
		}},
		{args: []string{"check", "--config", badSelector}, code: 1, stderr: []string{
			badSelector + ":6:11: pools[0].nodeSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
		}},
		{args: []string{"check", "--config", filepath.Join(dir, "missing.yaml")}, code: 1, stderr: []string{"no such file or directory"}},
		{args: []string{"check", "--help"}, code: 0, stdout: []string{"Usage: l2lbd check", "-config string", "/etc/l2lb/l2lbd.yaml"}},
		{args: []string{"run", "--help"}, code: 0, stdout: []string{"Usage: l2lbd run", "SIGHUP reloads"}},
		{args: []string{"status", "--help"}, code: 0, stdout: []string{"Usage: l2lbd status", "-kubeconfig string", "-o string"}},
		{args: []string{"status", "--config", good, "-o", "yaml"}, code: 2, stderr: []string{`-o "yaml": want table or json`}},
		{args: []string{"status", "--config", bad}, code: 2, stderr: []string{"announce.count: must be between 1 and 100"}},
		{args: []string{"status", "--config", good, "--kubeconfig", filepath.Join(dir, "missing.kubeconfig")}, code: 2, stderr: []string{"l2lbd status: kubeconfig ", "missing.kubeconfig"}},
		{args: []string{"version", "--help"}, code: 0, stdout: []string{"Usage: l2lbd version"}},
		{args: []string{"version"}, code: 0, stdout: []string{"l2lbd "}},
		{args: []string{"--help"}, code: 0, stdout: []string{"l2lbd check   [--config PATH]"}},
		{args: []string{}, code: 2, stderr: []string{"Usage:"}},
		{args: []string{"frob"}, code: 2, stderr: []string{`unknown command "frob"`}},
		{args: []string{"check", "--config"}, code: 2, stderr: []string{"flag needs an argument"}},
		{args: []string{"check", "extra"}, code: 2, stderr: []string{`unexpected argument "extra"`}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			runExpecting(t, tc.args, tc.code, tc.stdout, tc.stderr)
		})
	}
}

// TestRunLifecycle runs l2lbd run as a process: it starts, says clearly that
// it waits for its kubeconfig (instead of exiting), picks up a good edit,
// refuses a bad one, reloads on SIGHUP and exits cleanly on SIGTERM.
func TestRunLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l2lbd.yaml")
	kubeconfig := filepath.Join(dir, "kubeconfig") // missing: the daemon waits for it
	conf := func(node string) []byte {
		return []byte("nodeName: " + node + "\nkubeconfig: " + kubeconfig + "\npools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n")
	}
	os.WriteFile(path, conf("first"), 0o644)

	cmd := exec.Command(os.Args[0], "run", "--config", path)
	cmd.Env = append(os.Environ(), "L2LBD_AS_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(substr string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("l2lbd exited before logging %q", substr)
				}
				if strings.Contains(l, substr) {
					return
				}
			case <-deadline:
				t.Fatalf("l2lbd did not log %q within 10s", substr)
			}
		}
	}

	expect(`msg="l2lbd starting"`)
	expect("kubeconfig " + kubeconfig + " does not exist (see the kubeconfig recipe in the examples)")
	// The watch is up once a SIGHUP round-trips through the reload path.
	cmd.Process.Signal(syscall.SIGHUP)
	expect("config unchanged from the one in force")

	os.WriteFile(path, conf("second"), 0o644)
	expect(`msg="config reloaded"`)

	os.WriteFile(path, []byte("pools: [\n"), 0o644)
	expect("invalid YAML")
	expect("config reload refused; keeping the last good config")

	os.WriteFile(path, conf("third"), 0o644)
	expect(`msg="config reloaded"`)

	cmd.Process.Signal(syscall.SIGTERM)
	expect(`msg="l2lbd stopped"`)
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestRunRefusesBadConfig: the daemon does not start on a broken file, and says why.
func TestRunRefusesBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l2lbd.yaml")
	os.WriteFile(path, []byte("pools: lan\n"), 0o644)
	cmd := exec.Command(os.Args[0], "run", "--config", path)
	cmd.Env = append(os.Environ(), "L2LBD_AS_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit code 1, got %v", err)
	}
	if !strings.Contains(out.String(), `pools: want a list, got str "lan"`) {
		t.Errorf("output does not name the problem:\n%s", &out)
	}
}

// BenchmarkCheck1000Pools times the whole `l2lbd check` process on a file with
// 1,000 pools of 128 IPv4 and 256 IPv6 addresses each.
func BenchmarkCheck1000Pools(b *testing.B) {
	var conf strings.Builder
	conf.WriteString("pools:\n")
	for i := range 1000 {
		fmt.Fprintf(&conf, "  - {name: p%d, addresses: [10.%d.%d.0/25, \"2001:db8:%x::/120\"]}\n", i, i/256, i%256, i)
	}
	path := filepath.Join(b.TempDir(), "l2lbd.yaml")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "check", "--config", path)
		cmd.Env = append(os.Environ(), "L2LBD_AS_MAIN=1")
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), "addresses: 128000 IPv4, 256000 IPv6") {
			b.Fatalf("check failed: %v\n%s", err, out)
		}
	}
}

// TestImportCommand: import's output passes check; bad input and results
// that would not pass are refused with the exit status the help promises.
func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	testdata := filepath.Join("internal", "migrate", "testdata")
	overlap := filepath.Join(dir, "overlap.yaml")
	os.WriteFile(overlap, []byte("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [198.51.100.0/28]}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [198.51.100.8/29]}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: all}\n"), 0o644)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("kind: [\n"), 0o644)
	tests := []struct {
		args           []string
		code           int
		stdout, stderr []string
	}{
		{[]string{"import", "--from", "metallb", filepath.Join(testdata, "metallb-pools.yaml"), filepath.Join(testdata, "metallb-adverts.yaml")}, 0,
			[]string{"  - name: lan\n", "          values: [\"edge-1\", \"edge-2\"]\n"}, []string{"IPAddressPool bgp-only: no L2Advertisement announces it"}},
		{[]string{"import", "--from", "openelb", filepath.Join(testdata, "openelb-eips.yaml")}, 0,
			[]string{"serveUnclassed: false\n", "  - name: eip-lan\n"}, []string{"Eip eip-bgp: protocol bgp; l2lb does Layer 2 only; skipped"}},
		{[]string{"import", "--from", "metallb", overlap}, 1, nil, []string{"pools[1].addresses[0]: 198.51.100.8/29 overlaps 198.51.100.0/28", "does not pass l2lbd check"}},
		{[]string{"import", "--from", "kube-vip", overlap}, 2, nil, []string{`--from "kube-vip": want openelb or metallb`}},
		{[]string{"import", "--from", "metallb"}, 2, nil, []string{"name at least one FILE"}},
		{[]string{"import", "--from", "metallb", filepath.Join(dir, "missing.yaml")}, 2, nil, []string{"no such file or directory"}},
		{[]string{"import", "--from", "metallb", broken}, 2, nil, []string{broken + ": yaml: line 1: did not find expected node content"}},
		{[]string{"import", "--help"}, 0, []string{"Usage: l2lbd import --from openelb|metallb FILE..."}, nil},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			stdout, code := runExpecting(t, tc.args, tc.code, tc.stdout, tc.stderr)
			if code == 0 && tc.args[1] != "--help" {
				// What was printed is a file check accepts.
				out := filepath.Join(t.TempDir(), "l2lbd.yaml")
				os.WriteFile(out, []byte(stdout), 0o644)
				var cout, cerr bytes.Buffer
				if c := run([]string{"check", "--config", out}, &cout, &cerr); c != 0 {
					t.Errorf("l2lbd check of the output: exit %d\n%s", c, &cerr)
				}
			}
		})
	}
}

// runExpecting runs the command line args and checks its exit code and
// that stdout and stderr contain the given strings; it returns stdout.
func runExpecting(t *testing.T, args []string, wantCode int, wantOut, wantErr []string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	if code != wantCode {
		t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, wantCode, &stdout, &stderr)
	}
	for _, want := range wantOut {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, &stdout)
		}
	}
	for _, want := range wantErr {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &stderr)
		}
	}
	return stdout.String(), code
}

func TestProcessorsSet(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"", false},
		{"2", true},
		{"1", true},
		{"0", false},  // the runtime's default then, not 0
		{"-1", false}, // likewise
		{"two", false},
		{"+2", true},
		{" 2", false},
		{"4294967297", false}, // over 32 bits
	} {
		if got := processorsSet(tc.env); got != tc.want {
			t.Errorf("processorsSet(%q) = %v, want %v", tc.env, got, tc.want)
		}
	}
}
