package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/l2lb/l2lb/test/lab"
)

// configVariant is one valid configuration the run may switch every node
// to. Each changes something the daemons re-decide on, and none changes an
// address's pool or a node's eligibility: a valid edit must move nothing.
type configVariant struct {
	name  string
	extra string
}

const pools = `pools:
  - name: lan
    addresses: [198.51.100.200-198.51.100.215, "2001:db8:100::200-2001:db8:100::20f"]
`

var configVariants = []configVariant{
	{"plain", ""},
	// A pool no Service uses: every node's servable pools change.
	{"spare pool", `  - name: spare
    addresses: [198.51.100.230-198.51.100.231]
    autoAssign: false
`},
	// Restart-only fields: the daemons keep their timings and say so.
	{"announce refresh", "announce: {refresh: 30s}\n"},
	{"no rebalance", "placement: {rebalance: false}\n"},
}

// garbage is what a bad edit writes: each is refused with the last good
// configuration kept.
var garbage = []string{
	"pools: [\n",                  // truncated YAML
	"nodeName: %s\nbogusKey: 1\n", // unknown key
	"pools:\n  - name: lan\n    addresses: [nope]\n", // bad address
	"", // empty: no pools, no kubeconfig
}

// daemon is l2lbd on one lab node, across its restarts.
type daemon struct {
	index  int
	node   *lab.Node
	config string // path of its config file
	log    string // path of its log, appended to by every process
	state  string // its --state-dir

	mu       sync.Mutex
	proc     *lab.Proc
	starts   []time.Time
	expected bool          // the harness signalled the process to end
	cpuDone  time.Duration // of the processes that ended
	exits    []string      // unexpected exits
}

func newDaemon(i int, n *lab.Node, dir string) *daemon {
	return &daemon{index: i, node: n, config: filepath.Join(dir, n.Name+".yaml"), log: filepath.Join(dir, n.Name+".log"),
		state: filepath.Join(dir, n.Name+".state")}
}

// writeConfig writes the node's configuration: identity, the pools and
// the variant.
func (d *daemon) writeConfig(v configVariant) error {
	// Debug: the timelines show where each daemon placed each address.
	conf := fmt.Sprintf("nodeName: %s\nkubeconfig: %s\nmetrics: {address: \"\"}\nlog: {level: debug}\n%s", d.node.Name, d.node.Kubeconfig, pools)
	return writeFileAtomic(d.config, conf+v.extra)
}

// writeGarbage writes a configuration the daemon must refuse.
func (d *daemon) writeGarbage(i int) error {
	g := garbage[i%len(garbage)]
	if strings.Contains(g, "%s") {
		g = fmt.Sprintf(g, d.node.Name)
	}
	// In place, as an editor that saves badly would.
	return os.WriteFile(d.config, []byte(g), 0o644)
}

// writeFileAtomic replaces path by a new file, as editors and config
// management do: the watcher sees one complete file.
func writeFileAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// start runs a new l2lbd process, its output appended to the log file (a
// run may outlast a process's in-memory output).
func (d *daemon) start(t testing.TB, l2lbd string) {
	t.Helper()
	// exec: the process the harness signals is l2lbd itself.
	// A state directory, as the unit's StateDirectory=: a restart while the
	// config is garbage runs on the last good copy.
	p := d.node.Start(t, "sh", "-c", `exec "$0" "$@" >>'`+d.log+`' 2>&1`, l2lbd, "run", "--config", d.config, "--state-dir", d.state)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.proc, d.expected = p, false
	d.starts = append(d.starts, time.Now())
}

// signal sends sig to the current process; ending signals are expected
// exits.
func (d *daemon) signal(sig syscall.Signal) error {
	d.mu.Lock()
	p := d.proc
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		d.expected = true
		if cpu, err := lab.ProcCPU(p.PID); err == nil {
			d.cpuDone += cpu
		}
	}
	d.mu.Unlock()
	return p.Signal(sig)
}

// current returns the running process.
func (d *daemon) current() *lab.Proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}

// checkExit records an exit the harness did not cause (invariant 4).
func (d *daemon) checkExit() (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil || d.expected || !d.proc.Exited() {
		return "", false
	}
	d.expected = true // reported once
	msg := fmt.Sprintf("l2lbd on %s (pid %d) exited without being killed: %v", d.node.Name, d.proc.PID, d.proc.Wait(0))
	d.exits = append(d.exits, msg)
	return msg, true
}

// cpu returns the CPU time all its processes used so far.
func (d *daemon) cpu() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	total := d.cpuDone
	if d.proc != nil && !d.proc.Exited() {
		if cpu, err := lab.ProcCPU(d.proc.PID); err == nil {
			total += cpu
		}
	}
	return total
}

// rssKB returns the current process's resident set size.
func (d *daemon) rssKB() int64 {
	p := d.current()
	kb, _ := lab.ProcStatusKB(p.PID, "VmRSS")
	return kb
}
