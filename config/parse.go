package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxSize bounds the configuration file; a real one is a few kilobytes.
const MaxSize = 4 << 20

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File      string
	Line, Col int    // 1-based; 0 when unknown
	Path      string // field path such as pools[1].addresses[0]; "" for the whole file
	Msg       string
}

func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Col)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems returns every *Problem joined into err.
func Problems(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(e error) {
		var p *Problem
		if errors.As(e, &p) && p == e {
			out = append(out, p)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// LogProblems logs each problem of err as "config problem", or err itself
// when it holds none (the file is missing or unreadable), and returns how
// many lines it logged.
func LogProblems(log *slog.Logger, err error) int {
	problems := Problems(err)
	for _, p := range problems {
		log.Error("config problem", "problem", p.Error())
	}
	if len(problems) == 0 {
		log.Error("config problem", "problem", err.Error())
		return 1
	}
	return len(problems)
}

// Load reads and parses the file at path. hostname is NodeName's default.
func Load(path, hostname string) (*Config, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := readBounded(f, MaxSize)
	if err != nil {
		return nil, nil, &Problem{File: path, Msg: err.Error()}
	}
	c, err := Parse(path, data, hostname)
	return c, data, err
}

func readBounded(f *os.File, limit int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("file is larger than %d MiB; this is not an l2lbd configuration", limit>>20)
	}
	return data, nil
}

// Parse decodes, defaults and validates a configuration file's content. file
// names it in errors; hostname is NodeName's default. The error joins one
// *Problem per thing wrong, each with its field path and file:line:col.
func Parse(file string, data []byte, hostname string) (*Config, error) {
	if len(data) > MaxSize {
		return nil, &Problem{File: file, Msg: fmt.Sprintf("file is larger than %d MiB; this is not an l2lbd configuration", MaxSize>>20)}
	}
	if p := findTabIndent(data); p != nil {
		p.File = file
		return nil, p
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlProblem(file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &Problem{File: file, Msg: "the file is empty (or only comments); it needs at least a pools: section (pools: [] for none yet) — see the annotated example l2lbd.yaml"}
	}
	d := &decoder{file: file, pos: map[string]*yaml.Node{}}
	c := Default()
	d.config(doc.Content[0], &c)
	if c.NodeName == "" {
		c.NodeName = strings.ToLower(hostname)
	}
	c.digest = digestOf(data)
	// Validate what did decode, leaving out fields that already failed to
	// decode, so that one run reports every problem.
	problems := d.problems
	for _, err := range validate(&c, d.locate) {
		if !d.failed(err.(*Problem).Path) {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b error) int {
			pa, pb := a.(*Problem), b.(*Problem)
			return cmp.Or(cmp.Compare(placeKey(pa.Line), placeKey(pb.Line)), cmp.Compare(pa.Col, pb.Col))
		})
		return nil, errors.Join(problems...)
	}
	if err := compileSelectors(&c); err != nil {
		return nil, &Problem{File: file, Msg: err.Error()} // validated above; kept as a guard
	}
	return &c, nil
}

// placeKey orders problems by line, those without a position last.
func placeKey(line int) int {
	if line == 0 {
		return math.MaxInt
	}
	return line
}

// findTabIndent reports the first tab used for indentation, which YAML forbids
// and which its parser reports confusingly.
func findTabIndent(data []byte) *Problem {
	line := 1
	for _, l := range bytes.Split(data, []byte("\n")) {
		for col, ch := range l {
			if ch == '\t' {
				return &Problem{Line: line, Col: col + 1, Msg: "tab character in indentation; YAML indents with spaces"}
			}
			if ch != ' ' {
				break
			}
		}
		line++
	}
	return nil
}

// yamlProblem turns a yaml.v3 syntax error ("yaml: line 3: ...") into a Problem.
func yamlProblem(file string, err error) *Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := &Problem{File: file, Msg: "invalid YAML: " + msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				p.Line, p.Col, p.Msg = n, 1, "invalid YAML: "+tail
			}
		}
	}
	return p
}

// decoder walks the YAML node tree by hand: that is what gives every problem
// its position, reports all of them at once, and makes unknown or duplicate
// keys errors.
type decoder struct {
	file     string
	problems []error
	pos      map[string]*yaml.Node // field path -> value node, for validation
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, &Problem{File: d.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// locate returns the problem for path, placed at the closest recorded node.
func (d *decoder) locate(path, msg string) *Problem {
	p := &Problem{File: d.file, Path: path, Msg: msg}
	for q := path; q != ""; q = parentPath(q) {
		if n, ok := d.pos[q]; ok {
			p.Line, p.Col = n.Line, n.Column
			break
		}
	}
	return p
}

// failed reports whether decoding already reported path or a field around it.
func (d *decoder) failed(path string) bool {
	for _, err := range d.problems {
		p := err.(*Problem).Path
		if p == path || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// usable rejects aliases and records n's position; false means skip the value.
func (d *decoder) usable(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		d.fail(n, path, "YAML aliases are not supported; write the value out")
		return false
	}
	d.pos[path] = n
	return !(n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

type fieldFunc func(n *yaml.Node, path string)

// mapping decodes a mapping whose keys must be among fields.
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]fieldFunc) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of fields, got %s", describe(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain field names")
			continue
		}
		kpath := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, kpath, "duplicate key; first set at line %d:%d", first.Line, first.Column)
			continue
		}
		seen[k.Value] = k
		f, ok := fields[k.Value]
		if !ok {
			d.fail(k, kpath, "unknown field%s", suggest(k.Value, fields))
			continue
		}
		if d.usable(v, kpath) {
			f(v, kpath)
		}
	}
}

// suggest names the known field an unknown one most likely meant.
func suggest(name string, fields map[string]fieldFunc) string {
	if name == "<<" {
		return " (YAML merge keys are not supported)"
	}
	best, bestDist := "", 3
	for f := range fields {
		dist := editDistance(strings.ToLower(name), strings.ToLower(f))
		if dist < bestDist || (dist == bestDist && best != "" && f < best) {
			best, bestDist = f, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "something else"
}

func (d *decoder) str(dst *string) fieldFunc {
	return func(n *yaml.Node, path string) {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.fail(n, path, "want a string, got %s", describe(n))
			return
		}
		*dst = n.Value
	}
}

func (d *decoder) boolean(dst *bool) fieldFunc {
	return func(n *yaml.Node, path string) {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, path, "want true or false, got %s", describe(n))
			return
		}
		*dst = n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
	}
}

func (d *decoder) integer(dst *int) fieldFunc {
	return func(n *yaml.Node, path string) {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, "want a whole number, got %s", describe(n))
			return
		}
		v, err := strconv.ParseInt(n.Value, 0, 32)
		if err != nil {
			d.fail(n, path, "want a whole number, got %q", n.Value)
			return
		}
		*dst = int(v)
	}
}

func (d *decoder) number(dst *float64) fieldFunc {
	return func(n *yaml.Node, path string) {
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			d.fail(n, path, "want a number, got %s", describe(n))
			return
		}
		var v float64
		var err error
		if n.Tag == "!!int" {
			var i int64
			i, err = strconv.ParseInt(n.Value, 0, 64)
			v = float64(i)
		} else {
			v, err = strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		}
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			d.fail(n, path, "want a finite number, got %q", n.Value)
			return
		}
		*dst = v
	}
}

func (d *decoder) duration(dst *time.Duration) fieldFunc {
	return func(n *yaml.Node, path string) {
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
			d.fail(n, path, "want a duration such as 1s or 500ms, got %s", describe(n))
			return
		}
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			if n.Value == "0" {
				*dst = 0
				return
			}
			d.fail(n, path, "want a duration such as 1s or 500ms, got %q", n.Value)
			return
		}
		*dst = v
	}
}

func (d *decoder) strings(dst *[]string) fieldFunc {
	return func(n *yaml.Node, path string) {
		d.list(n, path, func(item *yaml.Node, ipath string) {
			var s string
			d.str(&s)(item, ipath)
			*dst = append(*dst, s)
		})
	}
}

func (d *decoder) list(n *yaml.Node, path string, each fieldFunc) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", describe(n))
		return
	}
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if d.usable(item, ipath) {
			each(item, ipath)
		}
	}
}

func (d *decoder) logLevel(dst *slog.Level) fieldFunc {
	return func(n *yaml.Node, path string) {
		var s string
		d.str(&s)(n, path)
		switch s {
		case "debug":
			*dst = slog.LevelDebug
		case "info":
			*dst = slog.LevelInfo
		case "warn":
			*dst = slog.LevelWarn
		case "error":
			*dst = slog.LevelError
		default:
			if n.Tag == "!!str" {
				d.fail(n, path, "want one of debug, info, warn, error; got %q", s)
			}
		}
	}
}

func (d *decoder) config(n *yaml.Node, c *Config) {
	if !d.usable(n, "") {
		return
	}
	d.mapping(n, "", map[string]fieldFunc{
		"nodeName":          d.str(&c.NodeName),
		"kubeconfig":        d.str(&c.Kubeconfig),
		"loadBalancerClass": d.str(&c.LoadBalancerClass),
		"serveUnclassed":    d.boolean(&c.ServeUnclassed),
		"interfaces":        d.strings(&c.Interfaces),
		"pools": func(n *yaml.Node, path string) {
			d.list(n, path, func(item *yaml.Node, ipath string) {
				c.Pools = append(c.Pools, d.pool(item, ipath))
			})
		},
		"placement": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]fieldFunc{"rebalance": d.boolean(&c.Placement.Rebalance)})
		},
		"kubernetes": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]fieldFunc{
				"qps":   d.number(&c.Kubernetes.QPS),
				"burst": d.integer(&c.Kubernetes.Burst),
			})
		},
		"coordination": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]fieldFunc{
				"namespace":     d.str(&c.Coordination.Namespace),
				"renewInterval": d.duration(&c.Coordination.RenewInterval),
				"leaseDuration": d.duration(&c.Coordination.LeaseDuration),
			})
		},
		"announce": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]fieldFunc{
				"count":    d.integer(&c.Announce.Count),
				"interval": d.duration(&c.Announce.Interval),
				"refresh":  d.duration(&c.Announce.Refresh),
			})
		},
		"metrics": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]fieldFunc{"address": d.str(&c.Metrics.Address)})
		},
		"log": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]fieldFunc{"level": d.logLevel(&c.Log.Level)})
		},
	})
}

func (d *decoder) pool(n *yaml.Node, path string) Pool {
	p := defaultPool()
	d.mapping(n, path, map[string]fieldFunc{
		"name": d.str(&p.Name),
		"addresses": func(n *yaml.Node, path string) {
			d.list(n, path, func(item *yaml.Node, ipath string) {
				// A range that fails to parse keeps its place (as the zero
				// Range), so later entries keep their index in messages.
				var s string
				var r Range
				if d.str(&s)(item, ipath); item.Tag == "!!str" {
					var err error
					if r, err = ParseRange(s); err != nil {
						d.fail(item, ipath, "%v", err)
					}
				}
				p.Addresses = append(p.Addresses, r)
			})
		},
		"interface":     d.str(&p.Interface),
		"autoAssign":    d.boolean(&p.AutoAssign),
		"avoidBuggyIPs": d.boolean(&p.AvoidBuggyIPs),
		"namespaces":    d.strings(&p.Namespaces),
		"nodeSelector":  d.labelSelector(&p.NodeSelector),
	})
	return p
}
