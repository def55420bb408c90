package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/l2lb/l2lb/daemon/kube"
	"github.com/l2lb/l2lb/test/lab"
)

// The operator's l2lbd.yaml on every node: one pool on the lab segment;
// nodeName is the machine's hostname, the Node's name.
const (
	operatorPools  = "pools:\n  - name: lab\n    addresses:\n      - 198.51.100.200-198.51.100.209\n"
	operatorPools2 = operatorPools + "      - 198.51.100.210-198.51.100.219\n"
	// 198.51.100.300 is no address: the reload that brings it is refused.
	brokenPools = "pools:\n  - name: lab\n    addresses: [198.51.100.300]\n"
)

// installConfig is how the operator puts a config in place: readable by
// root and the daemon's group only, as the package ships it.
const installConfig = "install -m 0640 -o root -g l2lbd %s /etc/l2lb/l2lbd.yaml"

// TestBootedNodes installs the freshly built .deb on two booted systemd
// machines and does what an operator does, checking each step as the
// operator would see it (systemctl, journalctl, a client on the segment):
// install on a fresh node and on a prepared one, a Service answered,
// reloads good and bad, stop handing over, upgrade, the watchdog, the
// unit's security exposure, remove and purge.
func TestBootedNodes(t *testing.T) {
	start := time.Now()
	deb1 := buildDeb(t, "")
	v1 := debVersion(t, deb1)
	newer := strings.TrimSuffix(v1, "-1") + "+upgrade"
	deb2 := buildDeb(t, newer)
	t.Logf("packages %s and %s built in %v", v1, newer+"-1", time.Since(start).Round(time.Millisecond))

	l := lab.Start(t, lab.Options{Nodes: 2})
	m0, m1 := l.Boot(t, l.Nodes[0]), l.Boot(t, l.Nodes[1])
	machines := []*lab.Machine{m0, m1}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kubeconfig, err := l.KubeconfigRecipe(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	installCredential := map[*lab.Machine]string{}
	for _, m := range machines {
		share(t, m, deb1)
		share(t, m, deb2)
		installCredential[m] = shareCredential(t, m, kubeconfig)
		shareData(t, m, "pools.yaml", []byte(operatorPools))
		shareData(t, m, "pools2.yaml", []byte(operatorPools2))
		shareData(t, m, "broken.yaml", []byte(brokenPools))
	}
	deb1In, deb2In := lab.SharePath+"/"+filepath.Base(deb1), lab.SharePath+"/"+filepath.Base(deb2)
	step := stepper(t)

	step("install on a fresh node, then configure and enable it")
	sh(t, m0, 2*time.Minute, "apt-get install -y "+deb1In)
	if got := sh(t, m0, 10*time.Second, "systemctl is-enabled l2lbd || true; systemctl is-active l2lbd || true"); got != "disabled\ninactive\n" {
		t.Fatalf("unconfigured node after install: is-enabled, is-active = %q, want disabled, inactive", got)
	}
	sh(t, m0, 30*time.Second, installCredential[m0]+"; "+
		fmt.Sprintf(installConfig, lab.SharePath+"/pools.yaml")+"; l2lbd check >/dev/null; systemctl enable --now l2lbd")
	checkRunning(t, m0)
	// Alone, node-0 leads IPAM: its STATUS says so once it does.
	if leader := ipamLeader(t, l); leader != m0.Name {
		t.Fatalf("IPAM leader %s, want %s", leader, m0.Name)
	}
	waitStatusText(t, m0, "config ok (digest "+checkDigest(t, m0)+"); IPAM leader; answering for 0 IPs here")

	step("install on a prepared node (kubeconfig in place): the shipped config starts, serving nothing")
	sh(t, m1, 2*time.Minute, "groupadd --system l2lbd; "+installCredential[m1]+"; "+
		"apt-get install -y "+deb1In)
	if got := sh(t, m1, 10*time.Second, "systemctl is-enabled l2lbd"); got != "enabled\n" {
		t.Fatalf("prepared node after install: is-enabled = %q, want enabled", got)
	}
	checkRunning(t, m1)
	waitStatusText(t, m1, "config ok (digest "+checkDigest(t, m1)+"); no pools configured: serving no address; not the IPAM leader; answering for 0 IPs here")
	wantJournal(t, m1, "4", `msg="no pools configured: serving no address; declare pools, then systemctl reload l2lbd"`)
	sh(t, m1, 30*time.Second, fmt.Sprintf(installConfig, lab.SharePath+"/pools.yaml")+"; systemctl reload l2lbd")
	waitStatusText(t, m1, "config ok (digest "+checkDigest(t, m1)+"); not the IPAM leader; answering for 0 IPs here")

	step("a Service gets an address, answered by one node, whose STATUS says so")
	l.CreateLBService(ctx, "default", "web")
	ip := waitIngress(t, l, "default", "web", 1)[0]
	owner := answerer(t, l, machines, ip, nil)
	peer := other(machines, owner)
	statusTellsTruth(t, l, owner, peer)
	prober := l.StartProber(t, 10*time.Millisecond)
	prober.Watch(ip)

	step("systemctl reload after a good edit, then after a bad one")
	pid := mainPID(t, owner)
	sh(t, owner, 30*time.Second, fmt.Sprintf(installConfig, lab.SharePath+"/pools2.yaml")+"; systemctl reload l2lbd")
	digest2 := checkDigest(t, owner)
	waitStatusTextHas(t, owner, "config ok (digest "+digest2+");")
	wantJournal(t, owner, "6", `msg="config reloaded"`, "digest="+digest2)
	sh(t, owner, 30*time.Second, fmt.Sprintf(installConfig, lab.SharePath+"/broken.yaml")+"; systemctl reload l2lbd")
	waitStatusTextHas(t, owner, "config edit refused, running digest "+digest2+": /etc/l2lb/l2lbd.yaml:3:17: pools[0].addresses[0]")
	wantJournal(t, owner, "3", `msg="config problem"`, `/etc/l2lb/l2lbd.yaml:3:17: pools[0].addresses[0]: \"198.51.100.300\" is not an IP address`)
	wantJournal(t, owner, "3", `msg="config reload refused; keeping the last good config"`, "digest="+digest2)
	if got := mainPID(t, owner); got != pid {
		t.Fatalf("%s: reloads restarted the daemon (pid %d, then %d)", owner.Name, pid, got)
	}
	answerer(t, l, machines, ip, owner)
	sh(t, owner, 30*time.Second, fmt.Sprintf(installConfig, lab.SharePath+"/pools2.yaml")+"; systemctl reload l2lbd")
	waitStatusTextHas(t, owner, "config ok (digest "+digest2+");")

	step("a restart in the middle of a bad edit runs on the last good config, kept in /var/lib/l2lbd")
	// On the peer: it answers for nothing, so its restart moves nothing.
	digestPeer := checkDigest(t, peer)
	if got := sh(t, peer, 10*time.Second, "stat -c '%U %a' /var/lib/l2lbd /var/lib/l2lbd/last-good.yaml; cmp /var/lib/l2lbd/last-good.yaml /etc/l2lb/l2lbd.yaml && echo same"); got != "l2lbd 700\nl2lbd 600\nsame\n" {
		t.Fatalf("%s: the last good copy: owner, mode and content say %q, want l2lbd 700, l2lbd 600, the running file", peer.Name, got)
	}
	pid = mainPID(t, peer)
	sh(t, peer, 40*time.Second, fmt.Sprintf(installConfig, lab.SharePath+"/broken.yaml")+"; systemctl restart l2lbd")
	checkRunning(t, peer)
	if got := mainPID(t, peer); got == pid {
		t.Fatalf("%s: systemctl restart kept pid %d", peer.Name, pid)
	}
	waitStatusTextHas(t, peer, "config edit refused, running digest "+digestPeer+": /etc/l2lb/l2lbd.yaml:3:17: pools[0].addresses[0]")
	wantJournal(t, peer, "3", `msg="config refused at start; running the last good config"`, "digest="+digestPeer)
	statusTellsTruth(t, l, owner, peer)
	sh(t, peer, 30*time.Second, fmt.Sprintf(installConfig, lab.SharePath+"/pools.yaml"))
	waitStatusTextHas(t, peer, "config ok (digest "+digestPeer+");")
	answerer(t, l, machines, ip, owner)

	step("systemctl stop hands over to the peer at once")
	wasLeader := ipamLeader(t, l)
	stopAt := time.Now()
	sh(t, owner, 40*time.Second, "systemctl stop l2lbd")
	took := waitTakeover(t, prober, ip, owner, peer, stopAt)
	t.Logf("stop on %s: the client saw %s answer %v after the last answer of %s", owner.Name, peer.Name, took, owner.Name)
	if took > 1500*time.Millisecond {
		t.Errorf("handover on stop took %v, want about 1 s at most", took)
	}
	// The peer is the only node left: it answers and leads IPAM, and its
	// STATUS follows both.
	waitStatusTextHas(t, peer, "; IPAM leader; answering for 1 IPs here")
	t.Logf("the IPAM leader was %s", wasLeader)
	sh(t, owner, 40*time.Second, "systemctl start l2lbd")
	checkRunning(t, owner)
	owner, peer = peer, owner
	answerer(t, l, machines, ip, owner) // sticky: the restarted node does not take it back
	statusTellsTruth(t, l, owner, peer)

	step("upgrade to a newer build, unattended as the README says: the daemon restarts on it, the address stays answered, the config stays")
	pid = mainPID(t, owner)
	conf := sh(t, owner, 10*time.Second, "cat /etc/l2lb/l2lbd.yaml")
	upAt := time.Now()
	sh(t, owner, 2*time.Minute, strings.ReplaceAll(readmeUnattendedInstall(t), "./l2lb_*.deb", deb2In)+" </dev/null")
	upDone := time.Now()
	if got := sh(t, owner, 10*time.Second, "cat /etc/l2lb/l2lbd.yaml"); got != conf {
		t.Errorf("%s: the upgrade changed /etc/l2lb/l2lbd.yaml from %q to %q", owner.Name, conf, got)
	}
	if got := sh(t, owner, 10*time.Second, "dpkg-query -W -f '${Version}' l2lb; echo; l2lbd version"); !strings.HasPrefix(got, newer+"-1\n") || !strings.Contains(got, newer) {
		t.Fatalf("%s after upgrade: dpkg-query and l2lbd version say %q, want %s", owner.Name, got, newer)
	}
	checkRunning(t, owner)
	if got := mainPID(t, owner); got == pid {
		t.Fatalf("%s: the upgrade did not restart the daemon (pid %d)", owner.Name, pid)
	}
	wantJournal(t, owner, "6", `msg="l2lbd starting"`, "version="+newer)
	lab.WaitFor(t, 10*time.Second, "member Lease of "+owner.Name+" at version "+newer, func(ctx context.Context) bool {
		lease, err := l.Client.CoordinationV1().Leases(lab.LeaseNamespace).Get(ctx, kube.MemberLeasePrefix+owner.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		_, m, ok := kube.ParseMember(lease)
		return ok && m.Version == newer
	})
	time.Sleep(200 * time.Millisecond) // answers after the restart are recorded
	if gap := longestSilence(prober.Log(ip), upAt, upDone); gap > 1500*time.Millisecond {
		t.Errorf("during the upgrade the address went unanswered for %v", gap)
	}

	step("journalctl -u l2lbd: structured lines with priorities")
	for _, m := range machines {
		entries := journal(t, m)
		for _, e := range findJournal(entries, "level=") {
			if strings.HasPrefix(e.Message, "<") || strings.Contains(e.Message, "time=") {
				t.Errorf("%s: journal line keeps its priority prefix or a time: %q", m.Name, e.Message)
			}
		}
		wantJournal(t, m, "6", `level=INFO msg="l2lbd starting"`, "node="+m.Name)
		wantJournal(t, m, "6", `level=INFO msg=ready status=`)
	}

	step("the watchdog restarts a hung daemon")
	watchdogRestart(t, peer)

	step("systemd-analyze security on the installed unit")
	out := sh(t, m0, 30*time.Second, "systemd-analyze security l2lbd.service --no-pager | tail -n 1")
	exposure := regexp.MustCompile(`Overall exposure level for l2lbd.service: ([0-9.]+)`).FindStringSubmatch(out)
	if exposure == nil {
		t.Fatalf("systemd-analyze security: no overall exposure in %q", out)
	}
	if v, _ := strconv.ParseFloat(exposure[1], 64); v > 2.5 {
		t.Errorf("systemd-analyze security: exposure %v, want at most 2.5", v)
	}
	t.Logf("systemd-analyze security: %s", strings.TrimSpace(out))

	step("remove: the daemon stops and hands over, the configuration stays")
	// The upgrade's restart handed the address over; whoever has it now
	// is removed.
	owner = answerer(t, l, machines, ip, nil)
	peer = other(machines, owner)
	statusTellsTruth(t, l, owner, peer)
	sh(t, owner, 2*time.Minute, "apt-get remove -y l2lb")
	answerer(t, l, machines, ip, peer)
	waitStatusTextHas(t, peer, "; IPAM leader; answering for 1 IPs here")
	if got := sh(t, owner, 10*time.Second, "dpkg-query -W -f '${db:Status-Abbrev}' l2lb; echo; systemctl is-active l2lbd || true; "+
		"test ! -e /usr/bin/l2lbd && echo binary gone; ls /etc/l2lb"); got != "rc \ninactive\nbinary gone\nkubeconfig\nl2lbd.yaml\ntoken\n" {
		t.Errorf("%s after remove = %q, want package rc (config files), daemon inactive, binary gone, kubeconfig, l2lbd.yaml and token kept", owner.Name, got)
	}

	step("purge: the configuration and the credential go, the system user stays")
	sh(t, owner, 2*time.Minute, "apt-get purge -y l2lb")
	if got := sh(t, owner, 10*time.Second, "dpkg-query -W -f '${db:Status-Abbrev}' l2lb 2>&1 || true; test ! -e /etc/l2lb && echo etc gone; "+
		"ls /etc/systemd/system /etc/systemd/system/*.wants | grep -c l2lbd || true; systemctl show -p LoadState l2lbd; id -un l2lbd"); got != "dpkg-query: no packages found matching l2lb\netc gone\n0\nLoadState=not-found\nl2lbd\n" {
		t.Errorf("%s after purge = %q, want: no package, /etc/l2lb gone, no unit links, unit not found, user l2lbd kept", owner.Name, got)
	}
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// readmeUnattendedInstall is the README's command for an unattended
// install over an existing config, with its ./l2lb_*.deb.
func readmeUnattendedInstall(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(readme), "```sh\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "--force-confold") && strings.Contains(block, "./l2lb_*.deb") {
			return strings.ReplaceAll(strings.TrimSpace(block), "\\\n", " ")
		}
	}
	t.Fatal("README.md: no ```sh block installing ./l2lb_*.deb with --force-confold")
	return ""
}

// stepper logs each step with the time the previous one took.
func stepper(t *testing.T) func(string) {
	var name string
	var at time.Time
	return func(next string) {
		if name != "" {
			t.Logf("step done in %v: %s", time.Since(at).Round(time.Millisecond), name)
		}
		name, at = next, time.Now()
		t.Logf("step: %s", name)
	}
}

// checkRunning: systemctl status says active (running), and READY came
// (for Type=notify, systemd leaves activating only then).
func checkRunning(t *testing.T, m *lab.Machine) {
	t.Helper()
	waitUnit(t, m, 30*time.Second, "l2lbd active (running)", unit.running)
	out, _ := m.Exec(context.Background(), "systemctl", "status", "--no-pager", "l2lbd")
	if !strings.Contains(string(out), "Active: active (running)") {
		t.Fatalf("%s: systemctl status l2lbd:\n%s", m.Name, out)
	}
}

// checkDigest is the digest `l2lbd check` reports for the installed config.
func checkDigest(t *testing.T, m *lab.Machine) string {
	t.Helper()
	out := sh(t, m, 10*time.Second, "l2lbd check --config /etc/l2lb/l2lbd.yaml")
	match := regexp.MustCompile(`: ok \(digest (\S+)\)`).FindStringSubmatch(out)
	if match == nil {
		t.Fatalf("%s: l2lbd check: no digest in %q", m.Name, out)
	}
	return match[1]
}

// statusTellsTruth checks the STATUS of the running machines against the
// cluster and the segment: the IPAM leader by the member Leases says it
// leads and no other does, the one whose MAC the client gets for the
// address says it answers for one, the other for none.
func statusTellsTruth(t *testing.T, l *lab.Lab, owner, peer *lab.Machine) {
	t.Helper()
	leader := ipamLeader(t, l)
	for _, m := range []*lab.Machine{owner, peer} {
		role, n := "; not the IPAM leader;", 0
		if m.Name == leader {
			role = "; IPAM leader;"
		}
		if m == owner {
			n = 1
		}
		waitStatusTextHas(t, m, fmt.Sprintf("%s answering for %d IPs here", role, n))
	}
}

// waitStatusText waits until STATUS is exactly want.
func waitStatusText(t *testing.T, m *lab.Machine, want string) {
	t.Helper()
	waitUnit(t, m, 15*time.Second, "STATUS "+strconv.Quote(want), func(u unit) bool { return u["StatusText"] == want })
}

// waitStatusTextHas waits until STATUS contains part.
func waitStatusTextHas(t *testing.T, m *lab.Machine, part string) {
	t.Helper()
	waitUnit(t, m, 15*time.Second, "STATUS with "+strconv.Quote(part), func(u unit) bool { return strings.Contains(u["StatusText"], part) })
}

func mainPID(t *testing.T, m *lab.Machine) int {
	t.Helper()
	u := waitUnit(t, m, 10*time.Second, "a main PID", func(u unit) bool { return u["MainPID"] != "0" })
	pid, _ := strconv.Atoi(u["MainPID"])
	return pid
}

// wantJournal fails t unless a line of l2lbd's journal contains every part
// at the given syslog priority.
func wantJournal(t *testing.T, m *lab.Machine, priority string, parts ...string) {
	t.Helper()
	var found []journalEntry
	lab.WaitFor(t, 5*time.Second, fmt.Sprintf("%s: journal line with %q", m.Name, parts), func(context.Context) bool {
		found = findJournal(journal(t, m), parts...)
		return len(found) > 0
	})
	for _, e := range found {
		if e.Priority != priority {
			t.Errorf("%s: journal line %q has PRIORITY %s, want %s", m.Name, e.Message, e.Priority, priority)
		}
	}
}

// answerer waits until the client's ARP request for ip is answered, by want
// if not nil, and returns the machine that answered.
func answerer(t *testing.T, l *lab.Lab, machines []*lab.Machine, ip netip.Addr, want *lab.Machine) *lab.Machine {
	t.Helper()
	var got *lab.Machine
	what := "ARP answer for " + ip.String()
	if want != nil {
		what += " from " + want.Name
	}
	lab.WaitFor(t, 15*time.Second, what, func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		mac, err := l.Net.Client.ARPResolve(ctx, ip)
		if err != nil {
			return false
		}
		for _, m := range machines {
			if m.MAC.String() == mac.String() {
				got = m
			}
		}
		return got != nil && (want == nil || got == want)
	})
	return got
}

func other(machines []*lab.Machine, m *lab.Machine) *lab.Machine {
	for _, o := range machines {
		if o != m {
			return o
		}
	}
	return nil
}

// waitTakeover waits until the prober saw to answer for ip after since and
// returns how long the client went without an answer: from the last answer
// of from to the first of to.
func waitTakeover(t *testing.T, p *lab.Prober, ip netip.Addr, from, to *lab.Machine, since time.Time) time.Duration {
	t.Helper()
	var took time.Duration
	lab.WaitFor(t, 10*time.Second, to.Name+" answering for "+ip.String(), func(context.Context) bool {
		var lastFrom, firstTo time.Time
		for _, r := range p.Log(ip).Replies {
			switch r.MAC {
			case from.MAC.String():
				if r.Last.After(lastFrom) {
					lastFrom = r.Last
				}
			case to.MAC.String():
				if r.Last.After(since) && (firstTo.IsZero() || r.First.Before(firstTo)) {
					firstTo = r.First
				}
			}
		}
		if firstTo.IsZero() || lastFrom.IsZero() {
			return false
		}
		took = firstTo.Sub(lastFrom)
		return true
	})
	return took
}

// longestSilence is the longest time between answers for an address, from
// any MAC, within [from, to].
func longestSilence(log lab.ProbeLog, from, to time.Time) time.Duration {
	type span struct{ first, last time.Time }
	var spans []span
	for _, r := range log.Replies {
		if r.Last.After(from) && r.First.Before(to) {
			spans = append(spans, span{r.First, r.Last})
		}
	}
	longest, covered := time.Duration(0), from
	for {
		// The span reaching furthest among those starting by covered.
		next := covered
		for _, s := range spans {
			if !s.first.After(covered) && s.last.After(next) {
				next = s.last
			}
		}
		if next.After(covered) {
			covered = next
			if !covered.Before(to) {
				return longest
			}
			continue
		}
		// A gap: jump to the earliest span starting after covered.
		var start time.Time
		for _, s := range spans {
			if s.first.After(covered) && (start.IsZero() || s.first.Before(start)) {
				start = s.first
			}
		}
		if start.IsZero() || start.After(to) {
			return max(longest, to.Sub(covered))
		}
		longest = max(longest, start.Sub(covered))
		covered = start
	}
}

// watchdogRestart stops the daemon with SIGSTOP and checks that systemd's
// watchdog restarts it. WatchdogSec is lowered to 4 s in a drop-in for the
// test's sake (the shipped 30 s would cost a minute); the mechanism is the
// installed unit's.
func watchdogRestart(t *testing.T, m *lab.Machine) {
	t.Helper()
	const dropIn = "/etc/systemd/system/l2lbd.service.d/watchdog-test.conf"
	sh(t, m, 40*time.Second, "mkdir -p "+dropIn[:strings.LastIndexByte(dropIn, '/')]+"; printf '[Service]\\nWatchdogSec=4s\\n' > "+dropIn+
		"; systemctl daemon-reload; systemctl restart l2lbd")
	checkRunning(t, m)
	before := waitUnit(t, m, 5*time.Second, "state", func(unit) bool { return true })
	restarts, _ := strconv.Atoi(before["NRestarts"])
	sh(t, m, 10*time.Second, "kill -STOP "+before["MainPID"])
	hungAt := time.Now()
	// Watchdog 4 s, then RestartSec=5s, then READY.
	after := waitUnit(t, m, 30*time.Second, "restarted by the watchdog", func(u unit) bool {
		n, _ := strconv.Atoi(u["NRestarts"])
		return n > restarts && u["MainPID"] != before["MainPID"] && u.running()
	})
	t.Logf("%s: hung daemon restarted by the watchdog after %v: %v", m.Name, time.Since(hungAt).Round(time.Millisecond), after)
	wantJournal(t, m, "3", "l2lbd.service: Watchdog timeout (limit 4s)!")
	sh(t, m, 40*time.Second, "rm "+dropIn+"; systemctl daemon-reload; systemctl restart l2lbd")
	checkRunning(t, m)
}
