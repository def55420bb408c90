package chaos

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	l2lbdaemon "github.com/l2lb/l2lb/daemon"
)

// logLine is one line of a daemon's log that says what it decided.
type logLine struct {
	at    time.Time
	node  int
	level string
	msg   string
	ip    netip.Addr // zero when the line is about the node as a whole
	text  string     // the line without its time
}

// nodeWide are the messages (prefixes) about a daemon as a whole that a
// timeline shows: its life, its view's health, its role, its config.
var nodeWide = []string{
	"l2lbd starting", "l2lbd stopping", "l2lbd stopped", "ready", "connected to the Kubernetes API",
	"view of the cluster is", "this node did not run", "own Lease renewals are not coming back",
	"answering again for the addresses claimed", "keeping the member Lease", "cannot delete the member Lease",
	"became the IPAM leader", "no longer the IPAM leader", "config reload", "config reloaded",
	"cannot renew member Lease", "member Lease renewed again", "replacing the informers",
	l2lbdaemon.NoCopyLog,
}

// checkAsInstalled finds lines that say a daemon runs unlike under its
// unit: without a state directory it keeps no copy of its config, and a
// restart during a garbage config exits instead of serving on it.
func checkAsInstalled(logs []logLine, nodes []string) []violation {
	var out []violation
	seen := map[int]bool{}
	for _, l := range logs {
		if l.msg == l2lbdaemon.NoCopyLog && !seen[l.node] {
			seen[l.node] = true
			out = append(out, violation{invariant: "4: daemons run as installed", at: l.at, node: nodes[l.node],
				what: fmt.Sprintf("l2lbd on %s cannot keep a copy of its config: %s", nodes[l.node], parseSlog(l.text)["err"])})
		}
	}
	return out
}

// readLog reads the decisions of daemon node from its log file: every
// line about an address, and the node-wide ones.
func readLog(path string, node int) ([]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		kv := parseSlog(sc.Text())
		at, err := time.Parse(time.RFC3339Nano, kv["time"])
		if err != nil {
			continue // not a line of slog's text handler
		}
		l := logLine{at: at, node: node, level: kv["level"], msg: kv["msg"]}
		if ip, err := netip.ParseAddr(kv["ip"]); err == nil {
			l.ip = ip
		} else if !hasPrefix(l.msg, nodeWide) {
			continue
		}
		l.text = strings.TrimSpace(strings.TrimPrefix(sc.Text(), "time="+kv["time"]))
		out = append(out, l)
	}
	return out, sc.Err()
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// parseSlog splits a line of slog's text handler into its keys and values
// (quoted values unquoted).
func parseSlog(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		key, rest, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsRune(key, ' ') {
			return kv
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				return kv
			}
			value, _ = strconv.Unquote(rest[:end+1])
			rest = rest[end+1:]
		} else {
			value, rest, _ = strings.Cut(rest, " ")
		}
		kv[key] = value
		line = rest
	}
	return kv
}
