package migrate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/l2lb/l2lb/config"
)

// poolSpec is MetalLB's IPAddressPool spec (metallb.io/v1beta1).
type poolSpec struct {
	Addresses         []string `yaml:"addresses"`
	AutoAssign        *bool    `yaml:"autoAssign"`
	AvoidBuggyIPs     bool     `yaml:"avoidBuggyIPs"`
	ServiceAllocation *struct {
		Priority           int        `yaml:"priority"`
		Namespaces         []string   `yaml:"namespaces"`
		NamespaceSelectors []selector `yaml:"namespaceSelectors"`
		ServiceSelectors   []selector `yaml:"serviceSelectors"`
	} `yaml:"serviceAllocation"`
}

var poolFields = []string{"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"}

// l2AdvSpec is MetalLB's L2Advertisement spec (metallb.io/v1beta1).
type l2AdvSpec struct {
	IPAddressPools         []string   `yaml:"ipAddressPools"`
	IPAddressPoolSelectors []selector `yaml:"ipAddressPoolSelectors"`
	NodeSelectors          []selector `yaml:"nodeSelectors"`
	Interfaces             []string   `yaml:"interfaces"`
}

var l2AdvFields = []string{"ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces"}

type l2Adv struct {
	obj  *Object
	spec l2AdvSpec
}

// covers reports whether the L2Advertisement announces pool: it names it,
// or a selector matches its labels, or it names and selects none (all).
func (a *l2Adv) covers(pool *Object) (bool, error) {
	if len(a.spec.IPAddressPools) == 0 && len(a.spec.IPAddressPoolSelectors) == 0 {
		return true, nil
	}
	if slices.Contains(a.spec.IPAddressPools, pool.Metadata.Name) {
		return true, nil
	}
	for _, s := range a.spec.IPAddressPoolSelectors {
		sel, err := metav1.LabelSelectorAsSelector(s.label())
		if err != nil {
			return false, fmt.Errorf("%s: %s: ipAddressPoolSelectors: %w", a.obj.At, a.obj, err)
		}
		if sel.Matches(labels.Set(pool.Metadata.Labels)) {
			return true, nil
		}
	}
	return false, nil
}

// FromMetalLB imports MetalLB IPAddressPools with the L2Advertisements that
// announce them. A pool no L2Advertisement announces (BGP only) is skipped
// with a note.
func FromMetalLB(files []string, objs []Object) (*Result, error) {
	r := &Result{Source: "metallb", Files: files, Header: []string{
		"l2lb does not read MetalLB's Service annotations; before switching, replace",
		"  metallb.universe.tf/address-pool (metallb.io/address-pool)    with l2lb.dev/pool",
		"  metallb.universe.tf/loadBalancerIPs (metallb.io/loadBalancerIPs) with l2lb.dev/ips",
		"  metallb.universe.tf/allow-shared-ip (metallb.io/allow-shared-ip) with l2lb.dev/allow-shared-ip",
		"Addresses already in Service status are kept if they lie in these pools.",
	}}
	var pools []*Object
	var advs []*l2Adv
	for i := range objs {
		o := &objs[i]
		switch o.Kind {
		case "IPAddressPool":
			pools = append(pools, o)
		case "L2Advertisement":
			a := &l2Adv{obj: o}
			if err := decodeSpec(o, &a.spec, l2AdvFields, r.note); err != nil {
				return nil, err
			}
			advs = append(advs, a)
		case "BGPAdvertisement", "BGPPeer", "BFDProfile", "Community":
			r.note("%s: %s: l2lb does Layer 2 only; skipped", o.At, o)
		default:
			r.note("%s: %s: not a MetalLB IPAddressPool or L2Advertisement; skipped", o.At, o)
		}
	}
	taken := map[string]bool{}
	for _, o := range pools {
		var s poolSpec
		if err := decodeSpec(o, &s, poolFields, r.note); err != nil {
			return nil, err
		}
		var covering []*l2Adv
		for _, a := range advs {
			ok, err := a.covers(o)
			if err != nil {
				return nil, err
			}
			if ok {
				covering = append(covering, a)
			}
		}
		if len(covering) == 0 {
			r.note("%s: %s: no L2Advertisement announces it (BGP only?); skipped", o.At, o)
			continue
		}
		p := Pool{Name: poolName(o.Metadata.Name, taken), AutoAssign: s.AutoAssign == nil || *s.AutoAssign, AvoidBuggyIPs: s.AvoidBuggyIPs}
		var from []string
		for _, a := range covering {
			from = append(from, fmt.Sprintf("%s (%s)", a.obj.Metadata.Name, a.obj.At))
		}
		p.From = fmt.Sprintf("From IPAddressPool %s (%s), announced by L2Advertisement %s.", o.Metadata.Name, o.At, strings.Join(from, ", "))
		if p.Name != o.Metadata.Name {
			r.note("%s: %s: its pool is named %s (a pool name is a DNS label, unique)", o.At, o, p.Name)
		}
		for _, a := range s.Addresses {
			rng, err := config.ParseRange(a)
			if err != nil {
				r.note("%s: %s: address %q: %v; left out", o.At, o, a, err)
				continue
			}
			p.Addresses = append(p.Addresses, rng.String())
		}
		if len(p.Addresses) == 0 {
			r.note("%s: %s: no usable address; skipped", o.At, o)
			continue
		}
		if sa := s.ServiceAllocation; sa != nil {
			p.Namespaces = sa.Namespaces
			if len(sa.NamespaceSelectors) > 0 {
				r.note("%s: %s: serviceAllocation.namespaceSelectors has no l2lb equivalent (list the namespaces instead); ignored, so more namespaces may use the pool", o.At, o)
			}
			if len(sa.ServiceSelectors) > 0 {
				r.note("%s: %s: serviceAllocation.serviceSelectors has no l2lb equivalent; ignored, so any Service may use the pool (l2lb.dev/pool on a Service picks it)", o.At, o)
			}
			if sa.Priority != 0 {
				r.note("%s: %s: serviceAllocation.priority %d has no l2lb equivalent; pools are tried in file order", o.At, o, sa.Priority)
			}
		}
		p.Interface = interfaces(r, o, covering)
		p.NodeSelector = nodeSelector(r, o, covering)
		r.Pools = append(r.Pools, p)
	}
	return r, nil
}

// interfaces merges the covering L2Advertisements' interfaces into the
// pool's one interface, if they allow exactly one.
func interfaces(r *Result, o *Object, advs []*l2Adv) string {
	set := map[string]bool{}
	for _, a := range advs {
		if len(a.spec.Interfaces) == 0 {
			return "" // this one announces on every interface
		}
		for _, i := range a.spec.Interfaces {
			set[i] = true
		}
	}
	names := slices.Sorted(maps.Keys(set))
	if len(names) == 1 {
		return names[0]
	}
	r.note("%s: %s: announced on interfaces %s; an l2lb pool names one interface or none, so it answers on the interface whose subnet holds the address (list them in the top-level interfaces: to restrict every pool)", o.At, o, strings.Join(names, ", "))
	return ""
}

// nodeSelector merges the covering L2Advertisements' nodeSelectors, which
// MetalLB ORs, into one selector where one can say it: a single selector,
// or selectors that each match one value of the same label (In).
func nodeSelector(r *Result, o *Object, advs []*l2Adv) *metav1.LabelSelector {
	var sels []selector
	for _, a := range advs {
		if len(a.spec.NodeSelectors) == 0 {
			return nil // this one announces from every node
		}
		sels = append(sels, a.spec.NodeSelectors...)
	}
	if len(sels) == 1 {
		return sels[0].label()
	}
	key := ""
	var values []string
	for _, s := range sels {
		if len(s.MatchExpressions) > 0 || len(s.MatchLabels) != 1 {
			key = ""
			break
		}
		for k, v := range s.MatchLabels {
			if key != "" && k != key {
				key = ""
				break
			}
			key = k
			if !slices.Contains(values, v) {
				values = append(values, v)
			}
		}
		if key == "" {
			break
		}
	}
	if key != "" {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}}}
	}
	r.note("%s: %s: announced from nodes matching any of %d nodeSelectors; l2lb takes one selector, so the pool has none and every node may announce it (write one selector that matches the same nodes)", o.At, o, len(sels))
	return nil
}
