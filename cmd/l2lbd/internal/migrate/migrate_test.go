package migrate

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2lb/l2lb/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func importFiles(t *testing.T, from string, files ...string) *Result {
	t.Helper()
	var objs []Object
	var names []string
	for _, f := range files {
		path := filepath.Join("testdata", f)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		o, err := Read(path, data)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
		names = append(names, path)
	}
	var r *Result
	var err error
	if from == "openelb" {
		r, err = FromOpenELB(names, objs)
	} else {
		r, err = FromMetalLB(names, objs)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestImport imports realistic `kubectl get -o yaml` output; the file must
// pass the parser `l2lbd check` uses, match its golden file, and every
// limitation must be reported.
func TestImport(t *testing.T) {
	tests := []struct {
		name, from string
		files      []string
		golden     string
		notes      []string // exactly these, in order
	}{
		{
			name: "openelb", from: "openelb", files: []string{"openelb-eips.yaml", "openelb-more.yaml"}, golden: "openelb.golden",
			notes: []string{
				"testdata/openelb-eips.yaml:31: Eip eip-bgp: protocol bgp; l2lb does Layer 2 only; skipped",
				"testdata/openelb-eips.yaml:49: Eip Team.Reserved: its pool is named team-reserved (a pool name is a DNS label); Services that name Eip Team.Reserved in their annotation need l2lb.dev/pool: team-reserved",
				"testdata/openelb-eips.yaml:49: Eip Team.Reserved: interface can_reach:198.51.100.1 has no l2lb equivalent; l2lb answers on the interface whose subnet holds the address (set interface: if that is not it)",
				"testdata/openelb-eips.yaml:49: Eip Team.Reserved: priority 10 has no l2lb equivalent; pools are tried in file order",
				"testdata/openelb-more.yaml:2: Eip eip-v6: disabled; kept with autoAssign: false so that its addresses in use stay (l2lb still gives its addresses to Services that request them)",
				"testdata/openelb-more.yaml:2: Eip eip-v6: namespaceSelector has no l2lb equivalent (list the namespaces instead); ignored, so more namespaces may use the pool",
				"testdata/openelb-more.yaml:16: Eip eip-vip: protocol vip; l2lb does Layer 2 only; skipped",
			},
		},
		{
			name: "metallb", from: "metallb", files: []string{"metallb-pools.yaml", "metallb-adverts.yaml"}, golden: "metallb.golden",
			notes: []string{
				"testdata/metallb-adverts.yaml:52: BGPAdvertisement bgp: l2lb does Layer 2 only; skipped",
				"testdata/metallb-pools.yaml:20: IPAddressPool reserved: serviceAllocation.serviceSelectors has no l2lb equivalent; ignored, so any Service may use the pool (l2lb.dev/pool on a Service picks it)",
				"testdata/metallb-pools.yaml:20: IPAddressPool reserved: serviceAllocation.priority 50 has no l2lb equivalent; pools are tried in file order",
				"testdata/metallb-pools.yaml:48: IPAddressPool bgp-only: no L2Advertisement announces it (BGP only?); skipped",
				"testdata/metallb-pools.yaml:56: IPAddressPool dmz: announced on interfaces eth2, eth3; an l2lb pool names one interface or none, so it answers on the interface whose subnet holds the address (list them in the top-level interfaces: to restrict every pool)",
				"testdata/metallb-pools.yaml:56: IPAddressPool dmz: announced from nodes matching any of 2 nodeSelectors; l2lb takes one selector, so the pool has none and every node may announce it (write one selector that matches the same nodes)",
			},
		},
		{
			name: "metallb objects given to openelb", from: "openelb", files: []string{"metallb-adverts.yaml"}, golden: "empty-openelb.golden",
			notes: []string{
				"testdata/metallb-adverts.yaml:3: L2Advertisement by-zone: not an OpenELB Eip; skipped",
				"testdata/metallb-adverts.yaml:17: L2Advertisement reserved: not an OpenELB Eip; skipped",
				"testdata/metallb-adverts.yaml:25: L2Advertisement edge-nodes: not an OpenELB Eip; skipped",
				"testdata/metallb-adverts.yaml:38: L2Advertisement dmz: not an OpenELB Eip; skipped",
				"testdata/metallb-adverts.yaml:52: BGPAdvertisement bgp: not an OpenELB Eip; skipped",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := importFiles(t, tc.from, tc.files...)
			out := r.Render()
			if _, err := config.Parse("out.yaml", []byte(out), "h"); err != nil {
				t.Errorf("the result does not pass check: %v\n%s", err, out)
			}
			golden := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s (go test -update to rewrite):\ngot:\n%s", golden, out)
			}
			if got := strings.Join(r.Notes, "\n"); got != strings.Join(tc.notes, "\n") {
				t.Errorf("notes:\ngot:\n  %s\nwant:\n  %s", strings.Join(r.Notes, "\n  "), strings.Join(tc.notes, "\n  "))
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"syntax", "kind: [\n", "f.yaml: yaml: line 1: did not find expected node content"},
		{"not an object", "- a\n", "f.yaml:1: want a Kubernetes object or list, got a list"},
		{"items not a list", "kind: List\nitems: x\n", "f.yaml:2: items: want a list"},
		{"no kind", "metadata: {name: x}\n", "f.yaml:1: not a Kubernetes object: it has no kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read("f.yaml", []byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	objs, err := Read("f.yaml", []byte("---\n# only a comment\n---\n"))
	if err != nil || len(objs) != 0 {
		t.Errorf("empty documents: %v, %v", objs, err)
	}
}

func TestPoolName(t *testing.T) {
	taken := map[string]bool{}
	for _, tc := range []struct{ in, want string }{
		{"lan", "lan"},
		{"lan", "lan-2"},
		{"Team.Reserved", "team-reserved"},
		{"..", "pool"},
		{strings.Repeat("a", 100), strings.Repeat("a", 60)},
	} {
		if got := poolName(tc.in, taken); got != tc.want {
			t.Errorf("poolName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
