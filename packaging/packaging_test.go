package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// root is the repository root, where `make package` runs.
const root = ".."

// need fails the test, rather than skipping it, when a tool is missing:
// make test installs them all (test/deps.sh), so a missing one is a bug.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed, and this test needs it (test/deps.sh installs it; make test runs deps first)", tool)
		}
	}
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("must run as root: %s (make test runs as root)", why)
	}
}

// cmd runs name with a deadline and returns stdout, stderr and the error.
func cmd(timeout time.Duration, dir string, env []string, stdin string, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = dir
	c.Env = append(os.Environ(), env...)
	c.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return stdout.String(), stderr.String(), err
}

// run is cmd that fails the test on error.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := cmd(2*time.Minute, "", env, "", name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

type builtPackages struct {
	deb, rpm string
	// version is the upstream version, revision is version-1.
	version, revision string
}

var (
	buildOnce sync.Once
	built     builtPackages
	buildErr  error
)

// packages runs `make package` once per test binary and returns what it built.
func packages(t *testing.T) builtPackages {
	t.Helper()
	need(t, "make", "git", "gzip", "dpkg-deb", "rpm")
	buildOnce.Do(func() {
		// A cold Go build cache makes this the slow step (about 2 minutes on
		// two cores); afterwards it takes seconds.
		stdout, stderr, err := cmd(8*time.Minute, root, nil, "", "make", "--no-print-directory", "package")
		if err != nil {
			buildErr = fmt.Errorf("make package: %v\n%s%s", err, stdout, stderr)
			return
		}
		debs, _ := filepath.Glob(filepath.Join(root, "dist", "l2lb_*.deb"))
		rpms, _ := filepath.Glob(filepath.Join(root, "dist", "l2lb-*.rpm"))
		if len(debs) != 1 || len(rpms) != 1 {
			buildErr = fmt.Errorf("make package: want one .deb and one .rpm in dist/, got %q and %q", debs, rpms)
			return
		}
		built.deb, _ = filepath.Abs(debs[0])
		built.rpm, _ = filepath.Abs(rpms[0])
		out, _, err := cmd(time.Minute, "", nil, "", "dpkg-deb", "--field", built.deb, "Version")
		if err != nil {
			buildErr = fmt.Errorf("dpkg-deb --field Version: %v", err)
			return
		}
		built.revision = strings.TrimSpace(out)
		built.version = strings.TrimSuffix(built.revision, "-1")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// versionRE is what packaging/version.sh produces, plus the revision.
var versionRE = regexp.MustCompile(`^(0\.0\.0~git\d+\.[0-9a-f]{12}|\d+\.\d+\.\d+(~[0-9A-Za-z.]+)?(\+git\d+\.[0-9a-f]{12})?)(\.dirty)?-1$`)

// entry is one file of a package as the test expects it.
type entry struct {
	mode        string // ls -l style
	owner       string // user/group
	rpmFlags    string // rpm's fflags: c config, n noreplace, d doc, l license
	deb, rpmPkg bool   // in the .deb, in the .rpm
}

var contents = map[string]entry{
	"/etc/l2lb":                                  {"drwxr-x---", "root/l2lbd", "", true, true},
	"/etc/l2lb/l2lbd.yaml":                       {"-rw-r-----", "root/l2lbd", "cn", true, true},
	"/usr/bin/l2lbd":                             {"-rwxr-xr-x", "root/root", "", true, true},
	"/usr/lib/systemd/system/l2lbd.service":      {"-rw-r--r--", "root/root", "", true, true},
	"/usr/lib/sysusers.d/l2lbd.conf":             {"-rw-r--r--", "root/root", "", true, true},
	"/usr/lib/tmpfiles.d/l2lbd.conf":             {"-rw-r--r--", "root/root", "", true, true},
	"/usr/share/man/man8/l2lbd.8.gz":             {"-rw-r--r--", "root/root", "d", true, true},
	"/usr/share/man/man5/l2lbd.yaml.5.gz":        {"-rw-r--r--", "root/root", "d", true, true},
	"/usr/share/doc/l2lb/examples/l2lbd.yaml":    {"-rw-r--r--", "root/root", "d", true, true},
	"/usr/share/doc/l2lb/examples/rbac.yaml":     {"-rw-r--r--", "root/root", "d", true, true},
	"/usr/share/doc/l2lb/examples/kubeconfig.md": {"-rw-r--r--", "root/root", "d", true, true},
	"/usr/share/doc/l2lb/copyright":              {"-rw-r--r--", "root/root", "", true, false},
	"/usr/share/doc/l2lb/changelog.Debian.gz":    {"-rw-r--r--", "root/root", "", true, false},
	"/usr/share/lintian/overrides/l2lb":          {"-rw-r--r--", "root/root", "", true, false},
	"/usr/share/licenses/l2lb/LICENSE":           {"-rw-r--r--", "root/root", "l", false, true},
}

func TestDebContents(t *testing.T) {
	p := packages(t)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, nil, "dpkg-deb", "--contents", p.deb)), "\n") {
		// drwxr-x--- root/l2lbd 0 2026-01-02 03:04 ./etc/l2lb/
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("unexpected dpkg-deb --contents line %q", line)
		}
		path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		got[path] = f[0] + " " + f[1]
	}
	// nfpm writes the changelog it generates with numeric owners only.
	if got["/usr/share/doc/l2lb/changelog.Debian.gz"] == "-rw-r--r-- 0/0" {
		got["/usr/share/doc/l2lb/changelog.Debian.gz"] = "-rw-r--r-- root/root"
	}
	for path, want := range contents {
		if !want.deb {
			if _, ok := got[path]; ok {
				t.Errorf("%s: in the .deb, want it only in the .rpm", path)
			}
			continue
		}
		if g, w := got[path], want.mode+" "+want.owner; g != w {
			t.Errorf("%s: want %q, got %q", path, w, g)
		}
		delete(got, path)
	}
	for path, g := range got {
		// Only the parent directories remain, and they are plain.
		if g != "drwxr-xr-x root/root" {
			t.Errorf("unexpected entry %s (%s) in the .deb", path, g)
		}
	}
}

func TestDebControl(t *testing.T) {
	p := packages(t)
	if !versionRE.MatchString(p.revision) {
		t.Errorf("Version %q does not look like packaging/version.sh output plus -1", p.revision)
	}
	fields := map[string]string{
		"Package":      "l2lb",
		"Architecture": strings.TrimSpace(run(t, nil, "dpkg", "--print-architecture")),
		"Section":      "net",
		"Priority":     "optional",
		"Depends":      "systemd-sysusers | adduser",
		"Homepage":     "https://github.com/l2lb/l2lb",
	}
	for field, want := range fields {
		if got := strings.TrimSpace(run(t, nil, "dpkg-deb", "--field", p.deb, field)); got != want {
			t.Errorf("control field %s: want %q, got %q", field, want, got)
		}
	}
	if got := run(t, nil, "dpkg-deb", "--info", p.deb, "conffiles"); got != "/etc/l2lb/l2lbd.yaml\n" {
		t.Errorf("conffiles: want only /etc/l2lb/l2lbd.yaml, got %q", got)
	}
}

// The maintainer scripts in the package are the reviewed files, byte for
// byte, executable, and valid POSIX sh.
func TestDebScripts(t *testing.T) {
	p := packages(t)
	dir := t.TempDir()
	run(t, nil, "dpkg-deb", "--control", p.deb, dir)
	for _, name := range []string{"preinst", "postinst", "prerm", "postrm"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s missing from the .deb: %v", name, err)
			continue
		}
		want, err := os.ReadFile(filepath.Join("scripts", "deb", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s in the .deb differs from packaging/scripts/deb/%s", name, name)
		}
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: want mode 0755, got %v (%v)", name, fi.Mode().Perm(), err)
		}
		run(t, nil, "dash", "-n", filepath.Join(dir, name))
	}
}

func TestRPMContents(t *testing.T) {
	p := packages(t)
	got := map[string]entry{}
	out := run(t, nil, "rpm", "-qp", "--qf", `[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEUSERNAME}/%{FILEGROUPNAME}\t%{FILEFLAGS:fflags}\n]`, p.rpm)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("unexpected rpm line %q", line)
		}
		got[f[0]] = entry{mode: f[1], owner: f[2], rpmFlags: f[3], deb: true, rpmPkg: true}
	}
	for path, want := range contents {
		g, ok := got[path]
		switch {
		case !want.rpmPkg && ok:
			t.Errorf("%s: in the .rpm, want it only in the .deb", path)
		case want.rpmPkg && !ok:
			t.Errorf("%s: missing from the .rpm", path)
		case want.rpmPkg:
			want.deb = true
			if g != want {
				t.Errorf("%s: want %+v, got %+v", path, want, g)
			}
		}
		delete(got, path)
	}
	for path := range got {
		t.Errorf("unexpected file %s in the .rpm", path)
	}

	if got := run(t, nil, "rpm", "-qp", "--configfiles", p.rpm); got != "/etc/l2lb/l2lbd.yaml\n" {
		t.Errorf("config files: want only /etc/l2lb/l2lbd.yaml, got %q", got)
	}
	info := run(t, nil, "rpm", "-qp", "--qf", `%{NAME} %{VERSION}-%{RELEASE} %{LICENSE}`, p.rpm)
	if want := "l2lb " + p.revision + " Apache-2.0"; info != want {
		t.Errorf("rpm header: want %q (the .deb's version), got %q", want, info)
	}
	if cl := run(t, nil, "rpm", "-qp", "--changelog", p.rpm); !strings.Contains(cl, "- "+p.revision+"\n") {
		t.Errorf("%%changelog does not name %s:\n%s", p.revision, cl)
	}
}

func TestRPMScripts(t *testing.T) {
	p := packages(t)
	for tag, file := range map[string]string{"PREIN": "pre", "POSTIN": "post", "PREUN": "preun", "POSTUN": "postun"} {
		got := run(t, nil, "rpm", "-qp", "--qf", "%{"+tag+"}", p.rpm)
		want, err := os.ReadFile(filepath.Join("scripts", "rpm", file))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
			t.Errorf("%%%s in the .rpm differs from packaging/scripts/rpm/%s:\n%s", file, file, got)
		}
		if prog := run(t, nil, "rpm", "-qp", "--qf", "%{"+tag+"PROG}", p.rpm); prog != "/bin/sh" {
			t.Errorf("%%%s runs with %q, want /bin/sh", file, prog)
		}
		run(t, nil, "dash", "-n", filepath.Join("scripts", "rpm", file))
	}
}

// shims returns a directory of stand-ins for names that log their command
// line (and stdin, when the last argument is "-") to the returned file. With
// offline set, a call that names --root= (work on files, never on a running
// manager, as deb-systemd-helper's `systemctl --root=/ preset`) is logged
// apart and then done by the real command.
func shims(t *testing.T, offline bool, names ...string) (dir, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "calls.log")
	for _, n := range names {
		script := `#!/bin/sh
line="${0##*/} $*"
for last; do :; done
if [ "${last:-}" = - ]; then line="$line <$(cat)"; fi
`
		if real, err := exec.LookPath(n); offline && err == nil {
			script += `case " $* " in *" --root="*)
	echo "$line" >> "$SHIM_LOG.offline"
	exec ` + real + ` "$@";;
esac
`
		}
		script += `echo "$line" >> "$SHIM_LOG"
`
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, log
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// sysusersLine is the one line of systemd/l2lbd.sysusers that creates the user.
func sysusersLine(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "systemd", "l2lbd.sysusers"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("systemd/l2lbd.sysusers: want one entry, got %q", lines)
	}
	return lines[0]
}

// The RPM scriptlets, run as rpm runs them on a machine where systemd is not
// running (a container, a chroot, this test machine): what they call, with
// which arguments, for each $1.
func TestRPMScriptletsWithoutSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Fatal("systemd runs as PID 1 here; this test checks the scriptlets without it")
	}
	need(t, "dash")
	sysusers := sysusersLine(t)
	tests := []struct {
		script, arg string
		want        []string
	}{
		{"pre", "1", []string{"systemd-sysusers --replace=/usr/lib/sysusers.d/l2lbd.conf - <" + sysusers}},
		{"pre", "2", []string{"systemd-sysusers --replace=/usr/lib/sysusers.d/l2lbd.conf - <" + sysusers}},
		// %systemd_post: presets on first installation only, never a start.
		{"post", "1", []string{"systemd-tmpfiles --create l2lbd.conf", "systemctl --no-reload preset l2lbd.service"}},
		{"post", "2", []string{"systemd-tmpfiles --create l2lbd.conf"}},
		// %systemd_preun: disable on removal; no stop without systemd.
		{"preun", "0", []string{"systemctl --no-reload disable l2lbd.service"}},
		{"preun", "1", nil},
		// %systemd_postun_with_restart: nothing to reload or restart.
		{"postun", "0", nil},
		{"postun", "1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.script+" "+tt.arg, func(t *testing.T) {
			dir, log := shims(t, false, "systemctl", "systemd-sysusers", "systemd-tmpfiles")
			env := []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "SHIM_LOG=" + log}
			stdout, stderr, err := cmd(time.Minute, "", env, "", "dash", filepath.Join("scripts", "rpm", tt.script), tt.arg)
			if err != nil {
				t.Fatalf("%%%s %s: %v\n%s%s", tt.script, tt.arg, err, stdout, stderr)
			}
			if got := calls(t, log); !slices.Equal(got, tt.want) {
				t.Errorf("%%%s %s calls:\nwant %q\ngot  %q", tt.script, tt.arg, tt.want, got)
			}
		})
	}
}

// The user the scripts create before unpacking is the one sysusers.d
// declares.
func TestScriptsCreateTheSysusersUser(t *testing.T) {
	line := sysusersLine(t)
	for _, f := range []string{"scripts/deb/preinst", "scripts/rpm/pre"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "echo '"+line+"' |") {
			t.Errorf("%s does not feed systemd-sysusers the line of systemd/l2lbd.sysusers (%s)", f, line)
		}
	}
}

func TestLintian(t *testing.T) {
	need(t, "lintian")
	p := packages(t)
	// --pedantic -I: everything, so that a new tag shows up in the log;
	// --fail-on: errors and warnings fail. Overrides are in the package
	// (packaging/lintian-overrides), each with its reason.
	stdout, stderr, err := cmd(5*time.Minute, "", nil, "", "lintian", "--pedantic", "-I", "--fail-on", "error,warning", p.deb)
	t.Logf("lintian %s:\n%s", filepath.Base(p.deb), stdout)
	if err != nil {
		t.Fatalf("lintian: %v\n%s%s", err, stdout, stderr)
	}
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
}

func TestRpmlint(t *testing.T) {
	need(t, "rpmlint", "cpio")
	p := packages(t)
	// rpmlint unpacks with `rpm2cpio | cpio -id`, and nfpm's payload has
	// absolute names, which GNU cpio would write over this machine's /usr and
	// /etc. A cpio that keeps them relative comes first in PATH.
	dir := t.TempDir()
	wrapper := "#!/bin/sh\nexec " + must(exec.LookPath("cpio")) + " --no-absolute-filenames \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "cpio"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + dir + ":" + os.Getenv("PATH")}
	stdout, stderr, err := cmd(5*time.Minute, "", env, "", "rpmlint", "-c", must(filepath.Abs("rpmlint.toml")), p.rpm)
	t.Logf("rpmlint %s:\n%s", filepath.Base(p.rpm), stdout)
	if err != nil {
		t.Fatalf("rpmlint: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, " 0 errors, 0 warnings") {
		t.Errorf("rpmlint: want 0 errors, 0 warnings (overrides in packaging/rpmlint.toml, each with its reason)")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var exposureRE = regexp.MustCompile(`Overall exposure level for l2lbd\.service: (\d+\.\d+)`)

func TestUnitSecurity(t *testing.T) {
	need(t, "systemd-analyze")
	unit := filepath.Join(root, "systemd", "l2lbd.service")
	// --threshold is in tenths: 25 fails above 2.5. --offline works on the
	// file without a running systemd (systemd 250 and later).
	stdout, stderr, err := cmd(time.Minute, "", nil, "", "systemd-analyze", "security", "--offline=yes", "--threshold=25", "--no-pager", unit)
	m := exposureRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure in the output (%v):\n%s%s", err, stdout, stderr)
	}
	t.Logf("systemd-analyze security --offline=yes: exposure %s", m[1])
	if score, _ := strconv.ParseFloat(m[1], 64); score > 2.5 || err != nil {
		t.Errorf("exposure %s, want 2.5 or lower (%v):\n%s", m[1], err, stdout)
	}
}

// The settings the daemon and the packages depend on; the comments in the
// unit say why.
func TestUnitSettings(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "systemd", "l2lbd.service"))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			set[k] = append(set[k], v)
		}
	}
	want := map[string]string{
		"Type":                       "notify",
		"NotifyAccess":               "main",
		"ExecStart":                  "/usr/bin/l2lbd run",
		"ExecReload":                 `/bin/sh -c 'kill -HUP "$MAINPID"'`,
		"ConditionPathExists":        "/etc/l2lb/kubeconfig",
		"Restart":                    "on-failure",
		"User":                       "l2lbd",
		"Group":                      "l2lbd",
		"AmbientCapabilities":        "CAP_NET_RAW",
		"CapabilityBoundingSet":      "CAP_NET_RAW",
		"NoNewPrivileges":            "yes",
		"ProtectSystem":              "strict",
		"RestrictAddressFamilies":    "AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET",
		"ConfigurationDirectory":     "l2lb",
		"ConfigurationDirectoryMode": "0750",
		"RuntimeDirectory":           "l2lbd",
		"StateDirectory":             "l2lbd",
		"StateDirectoryMode":         "0700",
		"WantedBy":                   "multi-user.target",
	}
	for k, v := range want {
		if !slices.Contains(set[k], v) {
			t.Errorf("%s=%s: want it, got %q", k, v, set[k])
		}
	}
	for _, k := range []string{"WatchdogSec", "StartLimitBurst", "StartLimitIntervalSec", "RestartSec", "SystemCallFilter"} {
		if len(set[k]) == 0 {
			t.Errorf("%s= is not set", k)
		}
	}
	// The daemon must see the host's interfaces, and capabilities in a user
	// namespace would not open AF_PACKET sockets there.
	for _, k := range []string{"PrivateNetwork", "PrivateUsers"} {
		if len(set[k]) > 0 {
			t.Errorf("%s= is set; it would cut l2lbd off the host's network", k)
		}
	}
}

// ---- Installing the .deb on this machine ----

const (
	wantsLink = "/etc/systemd/system/multi-user.target.wants/l2lbd.service"
	dshState  = "/var/lib/systemd/deb-systemd-helper-enabled/l2lbd.service.dsh-also"
	maskLink  = "/etc/systemd/system/l2lbd.service"
)

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// passwd returns l2lbd's passwd fields, or nil.
func passwd(t *testing.T) []string {
	t.Helper()
	out, _, err := cmd(time.Minute, "", nil, "", "getent", "passwd", "l2lbd")
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(out), ":")
}

func gid(t *testing.T, group string) uint32 {
	t.Helper()
	out := run(t, nil, "getent", "group", group)
	n, err := strconv.ParseUint(strings.Split(out, ":")[2], 10, 32)
	if err != nil {
		t.Fatalf("getent group %s: %q", group, out)
	}
	return uint32(n)
}

// checkFile checks mode and ownership of an installed file.
func checkFile(t *testing.T, path string, mode os.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: want %v %d:%d, got %v %d:%d", path, mode, uid, gid, fi.Mode(), st.Uid, st.Gid)
	}
}

// checkGone checks that purge left nothing of the package behind.
func checkGone(t *testing.T, when string) {
	t.Helper()
	for _, p := range []string{"/etc/l2lb", "/usr/bin/l2lbd", "/usr/lib/systemd/system/l2lbd.service",
		"/usr/lib/sysusers.d/l2lbd.conf", "/usr/lib/tmpfiles.d/l2lbd.conf", "/usr/share/doc/l2lb",
		"/usr/share/man/man8/l2lbd.8.gz", "/usr/share/man/man5/l2lbd.yaml.5.gz",
		wantsLink, dshState, maskLink, "/var/lib/systemd/deb-systemd-helper-masked/l2lbd.service", "/var/lib/l2lbd"} {
		if exists(p) {
			t.Errorf("%s: %s is left", when, p)
		}
	}
	if out, _, err := cmd(time.Minute, "", nil, "", "dpkg-query", "-W", "-f", "${Status}", "l2lb"); err == nil && strings.TrimSpace(out) != "unknown ok not-installed" {
		t.Errorf("%s: dpkg still knows l2lb: %q", when, out)
	}
}

// TestDebInstallUpgradePurge installs the .deb on this machine, where
// systemd is not PID 1 (as in a container or a chroot), and checks what the
// maintainer scripts did: the user, the files, the unit's enablement only
// when a kubeconfig is present, no attempt to start anything, a local edit
// kept across a reinstall, and nothing left after a purge but the user.
func TestDebInstallUpgradePurge(t *testing.T) {
	need(t, "dpkg", "dpkg-query", "getent", "setpriv", "systemd-analyze", "userdel", "groupdel")
	needRoot(t, "it installs the .deb with dpkg -i and purges it")
	if exists("/run/systemd/system") {
		t.Fatal("systemd runs as PID 1 on this machine; this test checks the maintainer scripts without it, and would start l2lbd.service here")
	}
	if out, _, err := cmd(time.Minute, "", nil, "", "dpkg-query", "-W", "-f", "${Status}", "l2lb"); err == nil && strings.TrimSpace(out) != "unknown ok not-installed" {
		t.Fatalf("l2lb is already on this machine (%s); this test installs and purges it: run dpkg --purge l2lb first", strings.TrimSpace(out))
	}
	if exists("/etc/l2lb") {
		t.Fatal("/etc/l2lb exists; this test's purge would remove it: move it away first")
	}
	p := packages(t)
	hadUser := passwd(t) != nil
	t.Cleanup(func() {
		if out, _, err := cmd(2*time.Minute, "", nil, "", "dpkg", "--purge", "l2lb"); err != nil {
			t.Logf("cleanup: dpkg --purge l2lb: %v\n%s", err, out)
		}
		os.RemoveAll("/etc/l2lb") // did not exist before the test
		if !hadUser {
			cmd(time.Minute, "", nil, "", "userdel", "l2lbd")
			cmd(time.Minute, "", nil, "", "groupdel", "l2lbd")
		}
	})

	// systemctl and deb-systemd-invoke log instead of acting: while systemd
	// is not running the scripts must not ask it for anything (start,
	// restart, daemon-reload). Offline work on the unit files (systemctl
	// --root=/ preset, which deb-systemd-helper enable runs) is allowed.
	dir, log := shims(t, true, "systemctl", "deb-systemd-invoke")
	env := []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "SHIM_LOG=" + log}
	noCalls := func(when string) {
		t.Helper()
		if c := calls(t, log); len(c) > 0 {
			t.Errorf("%s: the scripts called %q although systemd is not running", when, c)
		}
	}

	// 1. First installation, not configured yet.
	run(t, env, "dpkg", "-i", p.deb)
	pw := passwd(t)
	if pw == nil {
		t.Fatal("after dpkg -i: no l2lbd user")
	}
	uid, _ := strconv.Atoi(pw[2])
	if uid == 0 || uid >= 1000 || pw[5] != "/" || !strings.HasSuffix(pw[6], "/nologin") {
		t.Errorf("l2lbd user: want a system UID, home /, no login shell; got %q", pw)
	}
	g := gid(t, "l2lbd")
	checkFile(t, "/etc/l2lb", os.ModeDir|0o750, 0, g)
	checkFile(t, "/etc/l2lb/l2lbd.yaml", 0o640, 0, g)
	checkFile(t, "/usr/bin/l2lbd", 0o755, 0, 0)
	checkFile(t, "/usr/lib/systemd/system/l2lbd.service", 0o644, 0, 0)
	if got := run(t, nil, "/usr/bin/l2lbd", "version"); got != "l2lbd "+p.version+"\n" {
		t.Errorf("l2lbd version: want %q, got %q", "l2lbd "+p.version, got)
	}
	if got := run(t, nil, "dpkg-query", "-W", "-f", "${Conffiles}", "l2lb"); !strings.Contains(got, "/etc/l2lb/l2lbd.yaml ") {
		t.Errorf("dpkg does not record /etc/l2lb/l2lbd.yaml as a conffile: %q", got)
	}
	// The daemon's user reads the configuration through its group; others
	// cannot. The shipped file is valid and declares no pools: a daemon
	// started with it runs and serves nothing, and check says so.
	as := func(user string, args ...string) (string, string, error) {
		return cmd(time.Minute, "", nil, "", "setpriv", append([]string{"--reuid=" + user, "--regid=" + user, "--init-groups", "--"}, args...)...)
	}
	if _, stderr, err := as("l2lbd", "cat", "/etc/l2lb/l2lbd.yaml"); err != nil {
		t.Errorf("user l2lbd cannot read /etc/l2lb/l2lbd.yaml: %v %s", err, stderr)
	}
	if _, _, err := as("nobody", "cat", "/etc/l2lb/l2lbd.yaml"); err == nil {
		t.Error("user nobody can read /etc/l2lb/l2lbd.yaml; want it private to root and l2lbd")
	}
	stdout, stderr, err := as("l2lbd", "/usr/bin/l2lbd", "check")
	if err != nil || !strings.Contains(stdout, "pools: 0\n  none: l2lbd runs and serves no address until pools are declared\n") {
		t.Errorf("l2lbd check on the shipped file: want exit 0 saying it serves nothing until pools are declared, got %v:\n%s%s", err, stdout, stderr)
	}
	// Not configured: recorded for purge, not enabled, nothing started.
	if exists(wantsLink) {
		t.Errorf("%s exists: enabled without a kubeconfig", wantsLink)
	}
	if !exists(dshState) {
		t.Errorf("%s missing: deb-systemd-helper did not record the unit", dshState)
	}
	noCalls("dpkg -i without kubeconfig")
	// The installed unit, with its binary and man pages in place.
	if out, stderr, err := cmd(time.Minute, "", nil, "", "systemd-analyze", "verify", "/usr/lib/systemd/system/l2lbd.service"); err != nil || out+stderr != "" {
		t.Errorf("systemd-analyze verify: %v\n%s%s", err, out, stderr)
	}

	// 2. Configured by hand, then the package again (an upgrade, as far as
	// the scripts know): the local edit and the kubeconfig stay, and the
	// unit stays as the administrator left it.
	f, err := os.OpenFile("/etc/l2lb/l2lbd.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "# local edit")
	f.Close()
	if err := os.WriteFile("/etc/l2lb/kubeconfig", []byte("apiVersion: v1\nkind: Config\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	run(t, env, "dpkg", "-i", p.deb)
	if b, _ := os.ReadFile("/etc/l2lb/l2lbd.yaml"); !strings.HasSuffix(string(b), "# local edit\n") {
		t.Error("reinstall replaced the edited /etc/l2lb/l2lbd.yaml")
	}
	if !exists("/etc/l2lb/kubeconfig") {
		t.Error("reinstall removed /etc/l2lb/kubeconfig")
	}
	if exists(wantsLink) {
		t.Errorf("%s exists: an upgrade enabled a unit the administrator had not enabled", wantsLink)
	}
	noCalls("dpkg -i over an installed package")

	// 3. Purge: everything goes, the kubeconfig too; the user stays.
	run(t, env, "dpkg", "--purge", "l2lb")
	checkGone(t, "after purge")
	if passwd(t) == nil {
		t.Error("purge removed the l2lbd user; the postrm keeps system users")
	}
	noCalls("dpkg --purge")

	// 4. First installation on a node that already has its kubeconfig:
	// enabled (started too, were systemd running), and purged cleanly.
	if err := os.MkdirAll("/etc/l2lb", 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/l2lb/kubeconfig", []byte("apiVersion: v1\nkind: Config\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	run(t, env, "dpkg", "-i", p.deb)
	if target, err := os.Readlink(wantsLink); err != nil || filepath.Base(target) != "l2lbd.service" {
		t.Errorf("configured first install: want %s -> l2lbd.service, got %q (%v)", wantsLink, target, err)
	}
	noCalls("dpkg -i with a kubeconfig")
	run(t, env, "dpkg", "--purge", "l2lb")
	checkGone(t, "after the second purge")
	noCalls("the second dpkg --purge")
}

// packaging/version.sh on a scratch repository, through a project's life,
// and the order dpkg and rpm give the results.
func TestVersion(t *testing.T) {
	need(t, "git", "dpkg", "rpm")
	repo := t.TempDir()
	script := must(filepath.Abs("version.sh"))
	git := func(args ...string) string {
		t.Helper()
		out, stderr, err := cmd(time.Minute, repo, nil, "", "git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "tag.gpgSign=false", "-c", "commit.gpgSign=false"}, args...)...)
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, stderr)
		}
		return strings.TrimSpace(out)
	}
	version := func() string {
		t.Helper()
		out, stderr, err := cmd(time.Minute, repo, nil, "", script)
		if err != nil {
			t.Fatalf("version.sh: %v %s", err, stderr)
		}
		return strings.TrimSpace(out)
	}
	commit := func(content string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(repo, "f"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "f")
		git("commit", "-q", "-m", content)
		return git("rev-parse", "--short=12", "HEAD")
	}
	git("init", "-q")

	var seen []string
	check := func(want string) {
		t.Helper()
		if got := version(); got != want {
			t.Errorf("version.sh: want %q, got %q", want, got)
		}
		seen = append(seen, want)
	}
	h := commit("1")
	check("0.0.0~git1." + h)
	h = commit("2")
	check("0.0.0~git2." + h)
	if err := os.WriteFile(filepath.Join(repo, "f"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := version(), "0.0.0~git2."+h+".dirty"; got != want {
		t.Errorf("version.sh with a modified file: want %q, got %q", want, got)
	}
	git("checkout", "-q", "f")
	commit("3")
	git("tag", "v1.0.0-rc.1")
	check("1.0.0~rc.1")
	git("tag", "v1.0.0")
	check("1.0.0")
	h = commit("4")
	check("1.0.0+git1." + h)
	commit("5")
	git("tag", "v1.0.1")
	check("1.0.1")

	// Each version sorts after the one before, for dpkg and for rpm.
	for i := 1; i < len(seen); i++ {
		a, b := seen[i-1], seen[i]
		if _, _, err := cmd(time.Minute, "", nil, "", "dpkg", "--compare-versions", a, "lt", b); err != nil {
			t.Errorf("dpkg: want %s < %s", a, b)
		}
		lua := fmt.Sprintf(`%%{lua: print(rpm.vercmp("%s", "%s"))}`, a, b)
		if out := strings.TrimSpace(run(t, nil, "rpm", "--eval", lua)); out != "-1" {
			t.Errorf("rpm: want %s < %s, rpm.vercmp says %s", a, b, out)
		}
	}
}
