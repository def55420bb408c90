package migrate

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Pool is one pool of the generated file.
type Pool struct {
	Name string
	// From says where it comes from, for its comment.
	From          string
	Addresses     []string
	Interface     string
	AutoAssign    bool
	AvoidBuggyIPs bool
	Namespaces    []string
	NodeSelector  *metav1.LabelSelector
	// Comments are further lines for its comment.
	Comments []string
}

// Result is an import: the file's content and what it could not express.
type Result struct {
	Source string // "openelb" or "metallb"
	Files  []string
	// Header lines are comments after the standard ones.
	Header []string
	// ServeUnclassed, when set, is written with its comment.
	ServeUnclassed        *bool
	ServeUnclassedComment []string
	Pools                 []Pool
	// Notes are for stderr: what was skipped or could not be expressed,
	// each naming the object and file:line.
	Notes []string
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// poolName turns an object name (a DNS subdomain, up to 253 characters)
// into a pool name (a DNS label), unique among taken.
func poolName(name string, taken map[string]bool) string {
	n := strings.ToLower(name)
	n = regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(n, "-")
	n = strings.Trim(n, "-")
	if len(n) > validation.DNS1123LabelMaxLength-3 {
		n = strings.Trim(n[:validation.DNS1123LabelMaxLength-3], "-")
	}
	if n == "" {
		n = "pool"
	}
	base := n
	for i := 2; taken[n]; i++ {
		n = base + "-" + strconv.Itoa(i)
	}
	taken[n] = true
	return n
}

// Render writes the commented l2lbd.yaml.
func (r *Result) Render() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# l2lbd.yaml made by `l2lbd import --from %s` from %s.\n", r.Source, strings.Join(r.Files, ", "))
	w("# Review it, check it (l2lbd check --config FILE), then install it as\n")
	w("# /etc/l2lb/l2lbd.yaml on every node. What the import could not express it\n")
	w("# reported on stderr when it made this file.\n")
	if len(r.Header) > 0 {
		w("#\n")
		for _, h := range r.Header {
			w("# %s\n", h)
		}
	}
	if r.ServeUnclassed != nil {
		w("\n")
		for _, c := range r.ServeUnclassedComment {
			w("# %s\n", c)
		}
		w("serveUnclassed: %v\n", *r.ServeUnclassed)
	}
	if len(r.Pools) == 0 {
		w("\npools: []\n")
		return b.String()
	}
	w("\npools:\n")
	for i, p := range r.Pools {
		if i > 0 {
			w("\n")
		}
		w("  # %s\n", p.From)
		for _, c := range p.Comments {
			w("  # %s\n", c)
		}
		w("  - name: %s\n", p.Name)
		w("    addresses:\n")
		for _, a := range p.Addresses {
			w("      - %s\n", strconv.Quote(a))
		}
		if p.Interface != "" {
			w("    interface: %s\n", strconv.Quote(p.Interface))
		}
		w("    autoAssign: %v\n", p.AutoAssign)
		if p.AvoidBuggyIPs {
			w("    avoidBuggyIPs: true\n")
		}
		if len(p.Namespaces) > 0 {
			w("    namespaces: [%s]\n", quoteAll(p.Namespaces))
		}
		if s := p.NodeSelector; s != nil {
			w("    nodeSelector:\n")
			if len(s.MatchLabels) > 0 {
				w("      matchLabels:\n")
				for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
					w("        %s: %s\n", strconv.Quote(k), strconv.Quote(s.MatchLabels[k]))
				}
			}
			if len(s.MatchExpressions) > 0 {
				w("      matchExpressions:\n")
				for _, e := range s.MatchExpressions {
					w("        - key: %s\n          operator: %s\n", strconv.Quote(e.Key), strconv.Quote(string(e.Operator)))
					if len(e.Values) > 0 {
						w("          values: [%s]\n", quoteAll(e.Values))
					}
				}
			}
		}
	}
	return b.String()
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
