package config

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const minimal = "pools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n"

func TestParseDefaults(t *testing.T) {
	c, err := Parse("l2lbd.yaml", []byte(minimal), "Worker-1")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"nodeName", c.NodeName, "worker-1"},
		{"kubeconfig", c.Kubeconfig, want.Kubeconfig},
		{"loadBalancerClass", c.LoadBalancerClass, "l2lb.dev/layer2"},
		{"serveUnclassed", c.ServeUnclassed, true},
		{"renewInterval", c.Coordination.RenewInterval, time.Second},
		{"leaseDuration", c.Coordination.LeaseDuration, 3 * time.Second},
		{"namespace", c.Coordination.Namespace, "l2lb-system"},
		{"placement.rebalance", c.Placement.Rebalance, true},
		{"kubernetes.qps", c.Kubernetes.QPS, float64(DefaultQPS)},
		{"kubernetes.burst", c.Kubernetes.Burst, DefaultBurst},
		{"announce.count", c.Announce.Count, 3},
		{"announce.interval", c.Announce.Interval, time.Second},
		{"announce.refresh", c.Announce.Refresh, time.Minute},
		{"metrics", c.Metrics.Address, "127.0.0.1:9473"},
		{"log", c.Log.Level, slog.LevelInfo},
		{"pool autoAssign", c.Pools[0].AutoAssign, true},
		{"pool range", c.Pools[0].Addresses[0], Range{netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("198.51.100.207")}},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if c.Digest() == "" {
		t.Error("digest is empty")
	}
}

func TestParseExample(t *testing.T) {
	c, _, err := Load("../examples/l2lbd.yaml", "ignored")
	if err != nil {
		t.Fatalf("the shipped example must be valid: %v", err)
	}
	if c.NodeName != "worker-1" || len(c.Pools) != 2 || c.Pools[1].AutoAssign || c.Pools[0].Interface != "eth0" {
		t.Errorf("example parsed to an unexpected value: %+v", c)
	}
	if got := c.Pools[0].Addresses[1].String(); got != "2001:db8:100::200/120" {
		t.Errorf("IPv6 range: got %s", got)
	}
}

// TestParseErrors checks the exact message of each rule, with its position.
func TestParseErrors(t *testing.T) {
	pool := func(extra string) string {
		return "pools:\n  - name: lan\n    addresses: [198.51.100.200/29]\n" + extra
	}
	tests := []struct {
		name string
		in   string
		want []string // every problem, in order
	}{
		{"empty file", "", []string{"f.yaml: the file is empty (or only comments); it needs at least a pools: section (pools: [] for none yet) — see the annotated example l2lbd.yaml"}},
		{"only comments", "# nothing\n   \n# here\n", []string{"f.yaml: the file is empty (or only comments); it needs at least a pools: section (pools: [] for none yet) — see the annotated example l2lbd.yaml"}},
		{"not a mapping", "- a\n- b\n", []string{"f.yaml:1:1: want a mapping of fields, got a list"}},
		{"tab indent", "pools:\n\t- name: lan\n", []string{"f.yaml:2:1: tab character in indentation; YAML indents with spaces"}},
		{"syntax", "pools: [\n", []string{"f.yaml:1:1: invalid YAML: did not find expected node content"}},
		{"unknown top", pool("nodname: a\n"), []string{`f.yaml:4:1: nodname: unknown field; did you mean "nodeName"?`}},
		{"unknown far", pool("frobnicate: 1\n"), []string{`f.yaml:4:1: frobnicate: unknown field`}},
		{"unknown nested", pool("announce:\n  cout: 2\n"), []string{`f.yaml:5:3: announce.cout: unknown field; did you mean "count"?`}},
		{"duplicate key", pool("nodeName: a\nnodeName: b\n"), []string{"f.yaml:5:1: nodeName: duplicate key; first set at line 4:1"}},
		{"alias", "x: &a 1\n" + pool(""), []string{`f.yaml:1:1: x: unknown field`}},
		{"alias value", pool("nodeName: &n a\nkubeconfig: *n\n"), []string{"f.yaml:5:13: kubeconfig: YAML aliases are not supported; write the value out"}},
		{"merge key", pool("announce:\n  <<: {count: 1}\n"), []string{"f.yaml:5:3: announce.<<: unknown field (YAML merge keys are not supported)"}},
		{"pools not list", "pools: lan\n", []string{`f.yaml:1:8: pools: want a list, got str "lan"`}},
		{"pool name label", "pools:\n  - name: Lan_1\n    addresses: [198.51.100.1]\n", []string{`f.yaml:2:11: pools[0].name: "Lan_1" is not valid: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		{"pool name missing", "pools:\n  - addresses: [198.51.100.1]\n", []string{"f.yaml:2:5: pools[0].name: must not be empty"}},
		{"pool name dup", pool("  - name: lan\n    addresses: [198.51.100.1]\n"), []string{`f.yaml:4:11: pools[1].name: pool name "lan" is already used by pools[0]`}},
		{"no addresses", "pools:\n  - name: lan\n", []string{"f.yaml:2:5: pools[0].addresses: a pool needs at least one address"}},
		{"bad cidr", "pools:\n  - name: lan\n    addresses: [198.51.100.0/33]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: "198.51.100.0/33" is not a CIDR: prefix length out of range`}},
		{"host bits", "pools:\n  - name: lan\n    addresses: [198.51.100.7/24]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: "198.51.100.7/24" has host bits set; did you mean 198.51.100.0/24?`}},
		{"bad ip", "pools:\n  - name: lan\n    addresses: [198.51.100.256]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: "198.51.100.256" is not an IP address: IPv4 field has value >255`}},
		{"mixed range", "pools:\n  - name: lan\n    addresses: [198.51.100.1-2001:db8::1]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: range "198.51.100.1-2001:db8::1" mixes IPv4 and IPv6`}},
		{"reversed range", "pools:\n  - name: lan\n    addresses: [198.51.100.9-198.51.100.1]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: range "198.51.100.9-198.51.100.1": first address is after the last`}},
		{"zone", "pools:\n  - name: lan\n    addresses: [\"2001:db8::1%eth0\"]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: 2001:db8::1%eth0: zones are not allowed`}},
		{"link local", "pools:\n  - name: lan\n    addresses: [\"fe80::1\"]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: fe80::1 is not a unicast address that can be announced`}},
		{"mapped", "pools:\n  - name: lan\n    addresses: [\"::ffff:198.51.100.1\"]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: ::ffff:198.51.100.1: write IPv4-mapped addresses as IPv4 (198.51.100.1)`}},
		{"address not string", "pools:\n  - name: lan\n    addresses: [42]\n", []string{`f.yaml:3:17: pools[0].addresses[0]: want a string, got int "42"`}},
		{"overlap within pool", "pools:\n  - name: lan\n    addresses: [198.51.100.0/28, 198.51.100.15]\n", []string{`f.yaml:3:34: pools[0].addresses[1]: 198.51.100.15 overlaps 198.51.100.0/28 (pools[0].addresses[0])`}},
		{"overlap between pools", pool("  - name: b\n    addresses: [198.51.100.190-198.51.100.201]\n"), []string{`f.yaml:5:17: pools[1].addresses[0]: 198.51.100.190-198.51.100.201 overlaps 198.51.100.200/29 (pools[0].addresses[0])`}},
		{"overlap v6", "pools:\n  - name: a\n    addresses: [\"2001:db8:100::/64\"]\n  - name: b\n    addresses: [\"2001:db8:100::5\"]\n", []string{`f.yaml:5:17: pools[1].addresses[0]: 2001:db8:100::5 overlaps 2001:db8:100::/64 (pools[0].addresses[0])`}},
		{"pool interface syntax", pool("    interface: eth0/1\n"), []string{`f.yaml:4:16: pools[0].interface: interface name "eth0/1" contains '/', ':' or white space`}},
		{"pool interface not listed", "interfaces: [eth0]\n" + pool("    interface: eth1\n"), []string{`f.yaml:5:16: pools[0].interface: "eth1" is not among interfaces [eth0]`}},
		{"interface too long", pool("interfaces: [abcdefghijklmnop]\n"), []string{`f.yaml:4:14: interfaces[0]: interface name "abcdefghijklmnop" is longer than 15 characters`}},
		{"interface twice", pool("interfaces: [eth0, eth0]\n"), []string{`f.yaml:4:20: interfaces[1]: "eth0" is listed twice (also interfaces[0])`}},
		{"namespace label", pool("    namespaces: [Default]\n"), []string{`f.yaml:4:18: pools[0].namespaces[0]: "Default" is not valid: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		{"selector not mapping", pool("    nodeSelector: lb\n"), []string{`f.yaml:4:19: pools[0].nodeSelector: want a mapping of fields, got str "lb"`}},
		{"selector unknown", pool("    nodeSelector:\n      matchLabel: {a: b}\n"), []string{`f.yaml:5:7: pools[0].nodeSelector.matchLabel: unknown field; did you mean "matchLabels"?`}},
		{"selector label key", pool("    nodeSelector:\n      matchLabels: {\"-bad\": x}\n"), []string{`f.yaml:5:29: pools[0].nodeSelector.matchLabels.-bad: label key "-bad" is not valid: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`}},
		{"selector label value", pool("    nodeSelector:\n      matchLabels:\n        zone: \"a b\"\n"), []string{`f.yaml:6:15: pools[0].nodeSelector.matchLabels.zone: label value "a b" is not valid: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`}},
		{"selector label null", pool("    nodeSelector:\n      matchLabels:\n        lb:\n"), []string{`f.yaml:6:12: pools[0].nodeSelector.matchLabels.lb: want a label value (write "" for an empty one), got null`}},
		{"selector label number", pool("    nodeSelector:\n      matchLabels: {rack: 7}\n"), []string{`f.yaml:5:27: pools[0].nodeSelector.matchLabels.rack: want a string, got int "7"`}},
		{"selector operator", pool("    nodeSelector:\n      matchExpressions:\n        - {key: zone, operator: in, values: [a]}\n"), []string{`f.yaml:6:33: pools[0].nodeSelector.matchExpressions[0].operator: "in" is not an operator; want In, NotIn, Exists or DoesNotExist`}},
		{"selector no operator", pool("    nodeSelector:\n      matchExpressions:\n        - key: zone\n"), []string{`f.yaml:6:11: pools[0].nodeSelector.matchExpressions[0]: key and operator (In, NotIn, Exists or DoesNotExist) are required`}},
		{"selector In without values", pool("    nodeSelector:\n      matchExpressions:\n        - {key: zone, operator: In}\n"), []string{"f.yaml:6:11: pools[0].nodeSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"}},
		{"selector Exists with values", pool("    nodeSelector:\n      matchExpressions:\n        - {key: zone, operator: Exists, values: [a]}\n"), []string{"f.yaml:6:49: pools[0].nodeSelector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"}},
		{"selector empty key", pool("    nodeSelector:\n      matchExpressions:\n        - {operator: Exists}\n"), []string{`f.yaml:6:11: pools[0].nodeSelector.matchExpressions[0]: key and operator (In, NotIn, Exists or DoesNotExist) are required`}},
		{"autoAssign not bool", pool("    autoAssign: yes\n"), []string{`f.yaml:4:17: pools[0].autoAssign: want true or false, got str "yes"`}},
		{"renew too small", pool("coordination:\n  renewInterval: 10ms\n  leaseDuration: 1s\n"), []string{"f.yaml:5:18: coordination.renewInterval: must be at least 100ms, got 10ms"}},
		{"renew negative", pool("coordination:\n  renewInterval: -1s\n"), []string{"f.yaml:5:18: coordination.renewInterval: must be at least 100ms, got -1s"}},
		{"lease too short", pool("coordination:\n  renewInterval: 2s\n"), []string{"f.yaml:5:3: coordination.leaseDuration: must be at least twice renewInterval (4s), got 3s"}},
		{"duration syntax", pool("coordination:\n  leaseDuration: 3\n"), []string{`f.yaml:5:18: coordination.leaseDuration: want a duration such as 1s or 500ms, got "3"`}},
		{"namespace bad", pool("coordination:\n  namespace: kube_system\n"), []string{`f.yaml:5:14: coordination.namespace: "kube_system" is not valid: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		{"rebalance not bool", pool("placement:\n  rebalance: no\n"), []string{`f.yaml:5:14: placement.rebalance: want true or false, got str "no"`}},
		{"placement unknown", pool("placement:\n  rebalanced: false\n"), []string{`f.yaml:5:3: placement.rebalanced: unknown field; did you mean "rebalance"?`}},
		{"placement not mapping", pool("placement: true\n"), []string{`f.yaml:4:12: placement: want a mapping of fields, got bool "true"`}},
		{"qps zero", pool("kubernetes:\n  qps: 0\n"), []string{"f.yaml:5:8: kubernetes.qps: must be more than 0 requests per second, got 0"}},
		{"qps negative", pool("kubernetes:\n  qps: -2.5\n"), []string{"f.yaml:5:8: kubernetes.qps: must be more than 0 requests per second, got -2.5"}},
		{"qps word", pool("kubernetes:\n  qps: fast\n"), []string{`f.yaml:5:8: kubernetes.qps: want a number, got str "fast"`}},
		{"qps infinite", pool("kubernetes:\n  qps: .inf\n"), []string{`f.yaml:5:8: kubernetes.qps: want a finite number, got ".inf"`}},
		{"qps nan", pool("kubernetes:\n  qps: .nan\n"), []string{`f.yaml:5:8: kubernetes.qps: want a finite number, got ".nan"`}},
		{"burst zero", pool("kubernetes:\n  burst: 0\n"), []string{"f.yaml:5:10: kubernetes.burst: must be at least 1, got 0"}},
		{"burst fraction", pool("kubernetes:\n  burst: 1.5\n"), []string{`f.yaml:5:10: kubernetes.burst: want a whole number, got float "1.5"`}},
		{"kubernetes unknown", pool("kubernetes:\n  qpd: 5\n"), []string{`f.yaml:5:3: kubernetes.qpd: unknown field; did you mean "qps"?`}},
		{"count zero", pool("announce:\n  count: 0\n"), []string{"f.yaml:5:10: announce.count: must be between 1 and 100, got 0"}},
		{"count word", pool("announce:\n  count: three\n"), []string{`f.yaml:5:10: announce.count: want a whole number, got str "three"`}},
		{"count huge", pool("announce:\n  count: 99999999999999\n"), []string{`f.yaml:5:10: announce.count: want a whole number, got "99999999999999"`}},
		{"interval zero", pool("announce:\n  interval: 0s\n"), []string{"f.yaml:5:13: announce.interval: must be positive, got 0s"}},
		{"refresh small", pool("announce:\n  refresh: 10ms\n"), []string{"f.yaml:5:12: announce.refresh: must be 0 (off) or at least 1s, got 10ms"}},
		{"class invalid", pool("loadBalancerClass: \"l2lb.dev/-x\"\n"), []string{`f.yaml:4:20: loadBalancerClass: "l2lb.dev/-x" is not valid: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`}},
		{"metrics no port", pool("metrics:\n  address: 127.0.0.1\n"), []string{`f.yaml:5:12: metrics.address: want host:port such as 127.0.0.1:9473, got "127.0.0.1"`}},
		{"metrics bad port", pool("metrics:\n  address: 127.0.0.1:99999\n"), []string{`f.yaml:5:12: metrics.address: port in "127.0.0.1:99999" must be a number from 1 to 65535`}},
		{"metrics host name", pool("metrics:\n  address: localhost:9473\n"), []string{`f.yaml:5:12: metrics.address: host in "localhost:9473" must be an IP address (or empty for all)`}},
		{"log level", pool("log:\n  level: verbose\n"), []string{`f.yaml:5:10: log.level: want one of debug, info, warn, error; got "verbose"`}},
		{"kubeconfig relative", pool("kubeconfig: kc\n"), []string{`f.yaml:4:13: kubeconfig: want an absolute path, got "kc"`}},
		{"nodeName invalid", pool("nodeName: Worker_1\n"), []string{`f.yaml:4:11: nodeName: "Worker_1" is not valid: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`}},
		{"several at once", "nodeName: a\npools:\n  - name: x\n    addresses: [bogus, 198.51.100.1]\nannounce:\n  count: 0\n  interval: x\n", []string{
			`f.yaml:4:17: pools[0].addresses[0]: "bogus" is not an IP address: unable to parse IP`,
			"f.yaml:6:10: announce.count: must be between 1 and 100, got 0",
			`f.yaml:7:13: announce.interval: want a duration such as 1s or 500ms, got "x"`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.in), "node")
			if err == nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			var got []string
			for _, p := range Problems(err) {
				got = append(got, p.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestParseValidForms(t *testing.T) {
	in := `
nodeName: node-1.example
serveUnclassed: false
interfaces: [eth0, "bond0.100"]
pools:
  - name: a
    addresses: [198.51.100.10-198.51.100.20, 198.51.100.30, "2001:db8:100::/120", "2001:db8:100::1:1-2001:db8:100::1:9"]
    interface: eth0
    autoAssign: false
    avoidBuggyIPs: true
    namespaces: [default, web]
    nodeSelector:
      matchLabels: {node-role.kubernetes.io/lb: ""}
      matchExpressions:
        - {key: topology.kubernetes.io/zone, operator: In, values: [a, b]}
        - {key: l2lb.dev/drain, operator: DoesNotExist}
  - name: b
    addresses: [198.51.100.21/32]
coordination: {namespace: l2lb, renewInterval: 100ms, leaseDuration: 200ms}
placement: {rebalance: false}
kubernetes: {qps: 2.5, burst: 1}
announce: {count: 100, interval: 10ms, refresh: 30s}
metrics: {address: ""}
log: {level: debug}
kubeconfig: ~
`
	c, err := Parse("f.yaml", []byte(in), "h")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServeUnclassed || c.Pools[0].AutoAssign || !c.Pools[0].AvoidBuggyIPs || c.Metrics.Address != "" || c.Log.Level != slog.LevelDebug {
		t.Errorf("booleans/strings not applied: %+v", c)
	}
	if c.Placement.Rebalance || c.Kubernetes != (Kubernetes{QPS: 2.5, Burst: 1}) {
		t.Errorf("placement/kubernetes not applied: %+v %+v", c.Placement, c.Kubernetes)
	}
	if c.Kubeconfig != Default().Kubeconfig {
		t.Errorf("null kubeconfig should keep the default, got %q", c.Kubeconfig)
	}
	var got []string
	for _, r := range c.Pools[0].Addresses {
		got = append(got, r.String())
	}
	want := "198.51.100.10-198.51.100.20 198.51.100.30 2001:db8:100::/120 2001:db8:100::1:1-2001:db8:100::1:9"
	if strings.Join(got, " ") != want {
		t.Errorf("ranges: got %q, want %q", strings.Join(got, " "), want)
	}
	if p, ok := c.PoolFor(netip.MustParseAddr("198.51.100.21")); !ok || p.Name != "b" {
		t.Errorf("PoolFor(198.51.100.21) = %v, %v", p, ok)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"node-role.kubernetes.io/lb": "", "topology.kubernetes.io/zone": "a"}, true},
		{map[string]string{"node-role.kubernetes.io/lb": "", "topology.kubernetes.io/zone": "c"}, false},
		{map[string]string{"node-role.kubernetes.io/lb": "", "topology.kubernetes.io/zone": "b", "l2lb.dev/drain": "1"}, false},
		{map[string]string{"topology.kubernetes.io/zone": "a"}, false},
		{nil, false},
	} {
		if got := c.Pools[0].SelectsNode(tc.labels); got != tc.want {
			t.Errorf("pools[0].SelectsNode(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if !c.Pools[1].SelectsNode(nil) {
		t.Error("a pool without nodeSelector must select every node")
	}
	built := Pool{NodeSelector: c.Pools[0].NodeSelector} // not compiled by Parse
	if !built.SelectsNode(map[string]string{"node-role.kubernetes.io/lb": "", "topology.kubernetes.io/zone": "b"}) {
		t.Error("a Pool built in code must match too")
	}
	if c.Pools[0].AllowsNamespace("kube-system") || !c.Pools[1].AllowsNamespace("kube-system") {
		t.Error("AllowsNamespace wrong")
	}
}

func TestParseHugeInputs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"too large", minimal + "#" + strings.Repeat("x", MaxSize), "f.yaml: file is larger than 4 MiB; this is not an l2lbd configuration"},
		{"deep nesting", "pools: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n", ""},
		{"billion laughs", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n", ""},
		{"many keys", strings.Repeat("nodeName: a\n", 10000), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse("f.yaml", []byte(tc.in), "h")
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.want != "" && err.Error() != tc.want {
				t.Errorf("got %q, want %q", err, tc.want)
			}
			t.Logf("%v in %v", firstLine(err.Error()), time.Since(start))
		})
	}
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// TestValidateNoPools: a file without pools is valid (the daemon runs and
// serves nothing), whether pools is absent or empty.
func TestValidateNoPools(t *testing.T) {
	c := Default()
	c.NodeName = "n"
	if err := Validate(&c); err != nil {
		t.Errorf("defaults without pools: %v", err)
	}
	for _, in := range []string{"nodeName: a\n", "pools: []\n"} {
		if c, err := Parse("f.yaml", []byte(in), "h"); err != nil || len(c.Pools) != 0 {
			t.Errorf("Parse(%q) = %d pools, %v; want 0 pools, no error", in, len(c.Pools), err)
		}
	}
}

// TestParseNumbers checks the forms YAML allows for kubernetes.qps.
func TestParseNumbers(t *testing.T) {
	for in, want := range map[string]float64{"500": 500, "1_000": 1000, "0x10": 16, "2.5": 2.5, "1e3": 1000, ".5": 0.5} {
		c, err := Parse("f.yaml", []byte(minimal+"kubernetes: {qps: "+in+"}\n"), "h")
		if err != nil {
			t.Errorf("qps: %s: %v", in, err)
			continue
		}
		if c.Kubernetes.QPS != want {
			t.Errorf("qps: %s: got %v, want %v", in, c.Kubernetes.QPS, want)
		}
	}
}

func TestRange(t *testing.T) {
	tests := []struct {
		in, str, size string
	}{
		{"198.51.100.0/24", "198.51.100.0/24", "256"},
		{"198.51.100.5", "198.51.100.5", "1"},
		{"198.51.100.5-198.51.100.5", "198.51.100.5", "1"},
		{" 198.51.100.0 - 198.51.100.127 ", "198.51.100.0/25", "128"},
		{"198.51.100.1-198.51.100.4", "198.51.100.1-198.51.100.4", "4"},
		{"2001:db8::/64", "2001:db8::/64", "18446744073709551616"},
		{"2001:db8::/128", "2001:db8::", "1"},
	}
	for _, tc := range tests {
		r, err := ParseRange(tc.in)
		if err != nil {
			t.Errorf("ParseRange(%q): %v", tc.in, err)
			continue
		}
		if r.String() != tc.str || r.Size().String() != tc.size {
			t.Errorf("ParseRange(%q) = %s size %s, want %s size %s", tc.in, r, r.Size(), tc.str, tc.size)
		}
	}
	a, _ := ParseRange("198.51.100.0/30")
	b, _ := ParseRange("198.51.100.3-198.51.100.9")
	c, _ := ParseRange("2001:db8::/126")
	if !a.Overlaps(b) || !b.Overlaps(a) || a.Overlaps(c) || a.Contains(netip.MustParseAddr("::c633:6400")) {
		t.Error("Overlaps/Contains wrong across families")
	}
}

// TestLogProblems: one "config problem" line per problem, naming its place;
// an error that holds none (a missing file) is logged itself, once.
func TestLogProblems(t *testing.T) {
	_, parseErr := Parse("bad.yaml", []byte("nodeName: a\nbogus: 1\npools:\n  - name: lan\n    addresses: [nope]\n"), "a")
	if parseErr == nil {
		t.Fatal("the broken config parsed")
	}
	_, _, missing := Load("/nonexistent/l2lbd.yaml", "a")
	for _, tc := range []struct {
		name  string
		err   error
		lines int
		want  string
	}{
		{"a broken file: each problem, with its place", parseErr, len(Problems(parseErr)), "bad.yaml:"},
		{"a missing file: the error itself", missing, 1, "/nonexistent/l2lbd.yaml"},
	} {
		var buf strings.Builder
		n := LogProblems(slog.New(slog.NewTextHandler(&buf, nil)), tc.err)
		got := strings.Count(buf.String(), `msg="config problem"`)
		if n != tc.lines || got != tc.lines || tc.lines == 0 || !strings.Contains(buf.String(), tc.want) {
			t.Errorf("%s: returned %d, logged %d lines, want %d naming %q:\n%s", tc.name, n, got, tc.lines, tc.want, buf.String())
		}
	}
	if len(Problems(parseErr)) < 2 {
		t.Errorf("the broken config has %d problems, want several for the test to mean something", len(Problems(parseErr)))
	}
}
