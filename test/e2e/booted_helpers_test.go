package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
)

// buildDeb builds the .deb of this checkout as `make package` does, with the
// given version, into its own directory (dist/ is left alone), and returns
// its path. An empty version is packaging/version.sh's.
func buildDeb(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"--no-print-directory", "-C", "../..", "package", "DIST=" + dir}
	if version != "" {
		args = append(args, "PKG_VERSION="+version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "l2lb_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make package: want one .deb in %s, got %q", dir, debs)
	}
	return debs[0]
}

// debVersion is the Version field of a .deb.
func debVersion(t *testing.T, deb string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "--field", deb, "Version").Output()
	if err != nil {
		t.Fatalf("dpkg-deb --field %s Version: %v", deb, err)
	}
	return strings.TrimSpace(string(out))
}

// share copies a host file into the machine's share and returns its path
// inside the machine.
func share(t *testing.T, m *lab.Machine, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	return shareData(t, m, filepath.Base(src), data)
}

// shareCredential shares the recipe's kubeconfig and the machine's own token
// (examples/kubeconfig.md) and returns the shell commands that install them
// as the recipe says, for the group l2lbd.
func shareCredential(t *testing.T, m *lab.Machine, kubeconfig string) string {
	t.Helper()
	kc := share(t, m, kubeconfig)
	data, err := os.ReadFile(lab.RecipeToken(kubeconfig, m.Name))
	if err != nil {
		t.Fatal(err)
	}
	tok := shareData(t, m, "l2lbd.token", data)
	return "install -D -m 0640 -o root -g l2lbd " + kc + " /etc/l2lb/kubeconfig && " +
		"install -D -m 0640 -o root -g l2lbd " + tok + " " + lab.RecipeTokenPath
}

// shareData writes data as name into the machine's share and returns its
// path inside the machine.
func shareData(t *testing.T, m *lab.Machine, name string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.Share, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return lab.SharePath + "/" + name
}

// sh runs a script as root in the machine and fails t if it fails.
func sh(t *testing.T, m *lab.Machine, timeout time.Duration, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := m.Shell(ctx, script)
	if err != nil {
		t.Fatalf("%s: %v", m.Name, err)
	}
	return string(out)
}

// unit is `systemctl show l2lbd` for some properties.
type unit map[string]string

func showUnit(ctx context.Context, m *lab.Machine) (unit, error) {
	out, err := m.Exec(ctx, "systemctl", "show", "l2lbd.service",
		"-p", "ActiveState,SubState,Result,MainPID,NRestarts,StatusText,UnitFileState,LoadState,ExecMainStartTimestampMonotonic")
	if err != nil {
		return nil, err
	}
	u := unit{}
	for line := range strings.SplitSeq(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			u[k] = v
		}
	}
	return u, nil
}

// running: active (running), which for Type=notify means READY=1 came.
func (u unit) running() bool { return u["ActiveState"] == "active" && u["SubState"] == "running" }

func (u unit) String() string {
	return fmt.Sprintf("%s (%s) result %s, pid %s, restarts %s, status %q",
		u["ActiveState"], u["SubState"], u["Result"], u["MainPID"], u["NRestarts"], u["StatusText"])
}

// waitUnit polls the unit until cond holds and returns its state then.
func waitUnit(t *testing.T, m *lab.Machine, timeout time.Duration, what string, cond func(unit) bool) unit {
	t.Helper()
	var last unit
	done := false
	defer func() {
		if !done { // waitFor failed t
			t.Logf("%s: l2lbd.service last seen %v", m.Name, last)
		}
	}()
	lab.WaitFor(t, timeout, m.Name+": "+what, func(ctx context.Context) bool {
		u, err := showUnit(ctx, m)
		if err != nil {
			return false
		}
		last = u
		return cond(u)
	})
	done = true
	return last
}

// journalEntry is one line of `journalctl -o json` with the fields the
// tests read.
type journalEntry struct {
	Message  string `json:"MESSAGE"`
	Priority string `json:"PRIORITY"`
	PID      string `json:"_PID"`
}

// journal reads l2lbd's journal (the daemon's lines and systemd's about the
// unit).
func journal(t *testing.T, m *lab.Machine) []journalEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Whatever the daemon wrote is in the journal before journalctl reads.
	out, err := m.Exec(ctx, "sh", "-c", "journalctl --sync; journalctl -u l2lbd.service -o json --no-pager")
	if err != nil {
		t.Fatalf("%s: journalctl: %v", m.Name, err)
	}
	var entries []journalEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e journalEntry
		// MESSAGE is an array of bytes when not valid UTF-8; such lines
		// are none of the daemon's.
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			entries = append(entries, e)
		}
	}
	return entries
}

// findJournal returns the entries whose message contains every part.
func findJournal(entries []journalEntry, parts ...string) []journalEntry {
	var out []journalEntry
next:
	for _, e := range entries {
		for _, p := range parts {
			if !strings.Contains(e.Message, p) {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}
