package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/l2lb/l2lb/test/lab"
)

// checkAnswers fails t if anyone but an address's owner answered for it,
// if its owner left more than maxLoss of the requests unanswered over all
// addresses or went silent for longer than maxSilence, and logs the
// numbers.
func checkAnswers(t *testing.T, who string, r lab.Report, owners map[netip.Addr]net.HardwareAddr, maxLoss float64) {
	t.Helper()
	asked, lost := 0, 0
	var lines []string
	for ip, n := range r.Asked {
		if wrong := r.Wrong(ip); len(wrong) > 0 {
			t.Errorf("%s: %s answered by %v besides its owner %s", who, ip, wrong, owners[ip])
		}
		asked += n
		lost += max(0, n-r.Answered(ip))
		if r.Silence[ip] > maxSilence {
			t.Errorf("%s: %s went unanswered for %v", who, ip, r.Silence[ip].Round(time.Millisecond))
		}
		lines = append(lines, fmt.Sprintf("%s %d/%d (longest silence %v)", ip, r.Answered(ip), n, r.Silence[ip].Round(time.Millisecond)))
	}
	t.Logf("%s: answered %s", who, strings.Join(sortedStrings(lines), ", "))
	if asked == 0 {
		t.Errorf("%s: no requests", who)
	} else if float64(lost) > maxLoss*float64(asked) {
		t.Errorf("%s: %d of %d requests unanswered, want at most %.1f%%", who, lost, asked, 100*maxLoss)
	}
}

func sortedStrings(s []string) []string {
	slices.Sort(s)
	return s
}

// checkAlive fails t if the daemon exited or reported a crash or a failed
// socket.
func checkAlive(t *testing.T, d *daemon) {
	t.Helper()
	if d.proc.Exited() {
		t.Errorf("l2lbd on %s exited", d.node.Name)
	}
	out := d.proc.Output()
	for _, bad := range []string{"panic:", "fatal error:", "socket failed; reopening"} {
		if strings.Contains(out, bad) {
			t.Errorf("l2lbd on %s wrote %q", d.node.Name, bad)
		}
	}
}

var conflictLineRE = regexp.MustCompile(`msg="another host announces an address this node answers for" ip=(\S+) mac=(\S+)`)

// checkConflictLogs fails t unless each forged claim is logged exactly once,
// by the owner of the address, and nothing else is logged as a conflict.
func checkConflictLogs(t *testing.T, ds []*daemon, owners map[netip.Addr]string, forged []lab.Claim) {
	t.Helper()
	for _, d := range ds {
		got := map[lab.Claim]int{}
		for _, m := range conflictLineRE.FindAllStringSubmatch(d.proc.Output(), -1) {
			got[lab.Claim{IP: netip.MustParseAddr(m[1]), MAC: m[2]}]++
		}
		for _, c := range forged {
			want := 0
			if owners[c.IP] == d.node.Name {
				want = 1
			}
			if got[c] != want {
				t.Errorf("%s logged the claim of %s by %s %d times, want %d", d.node.Name, c.IP, c.MAC, got[c], want)
			}
			delete(got, c)
		}
		for c, n := range got {
			t.Errorf("%s logged %d conflicts for %s from %s, which nobody forged", d.node.Name, n, c.IP, c.MAC)
		}
		t.Logf("%s: %d conflict lines", d.node.Name, len(conflictLineRE.FindAllString(d.proc.Output(), -1)))
	}
}

// checkConflictEvents waits for one IPConflict Event per forged claim on
// its Service and fails t if any is repeated (its count above 1) or
// unexpected.
func checkConflictEvents(t *testing.T, l *lab.Lab, owners map[netip.Addr]string, services map[netip.Addr]string, forged []lab.Claim) {
	t.Helper()
	want := map[string]bool{}
	for _, c := range forged {
		want[services[c.IP]+": "+fmt.Sprintf("Another host (%s) announces %s on eth0 of node %s", c.MAC, c.IP, owners[c.IP])] = true
	}
	var got map[string]int32
	lab.WaitFor(t, 20*time.Second, fmt.Sprintf("%d IPConflict Events", len(want)), func(ctx context.Context) bool {
		list, err := l.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("reason", "IPConflict").String(),
		})
		if err != nil {
			return false
		}
		got = map[string]int32{}
		for _, e := range list.Items {
			got[e.InvolvedObject.Name+": "+e.Message] += e.Count
		}
		return len(got) >= len(want)
	})
	for k, n := range got {
		switch {
		case !want[k]:
			t.Errorf("unexpected Event %q", k)
		case n != 1:
			t.Errorf("Event %q counted %d times, want once", k, n)
		}
	}
}

// daemonsCPU is the CPU time each daemon has used.
func daemonsCPU(t *testing.T, ds []*daemon) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, d := range ds {
		out = append(out, cpuOf(t, d.proc.PID))
	}
	return out
}

// selfCPU is the CPU time this process has used.
func selfCPU(t *testing.T) time.Duration { return cpuOf(t, os.Getpid()) }

func cpuOf(t *testing.T, pid int) time.Duration {
	t.Helper()
	sec, err := procCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(sec * float64(time.Second))
}

// machineCPU is the CPU time every core of the machine has spent busy.
func machineCPU(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] {
		if n, err := strconv.ParseInt(f, 10, 64); err == nil && i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond // USER_HZ
}
