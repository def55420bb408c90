package migrate

import (
	"fmt"
	"strings"

	"github.com/l2lb/l2lb/config"
)

// eipSpec is OpenELB's Eip spec (network.kubesphere.io/v1alpha2).
type eipSpec struct {
	Address           string    `yaml:"address"`
	Protocol          string    `yaml:"protocol"`
	Interface         string    `yaml:"interface"`
	Disable           bool      `yaml:"disable"`
	UsingKnownIPs     bool      `yaml:"usingKnownIPs"`
	Priority          int       `yaml:"priority"`
	Namespaces        []string  `yaml:"namespaces"`
	NamespaceSelector *selector `yaml:"namespaceSelector"`
}

var eipFields = []string{"address", "protocol", "interface", "disable", "usingKnownIPs", "priority", "namespaces", "namespaceSelector"}

// openELBDefault marks the Eip that Services without an Eip annotation use.
const openELBDefault = "eip.openelb.kubesphere.io/is-default-eip"

// FromOpenELB imports OpenELB Eips. Only layer2 Eips become pools: BGP (the
// default protocol) and VIP ones are skipped with a note. Services keep
// working unchanged: l2lb honours OpenELB's Service annotations.
func FromOpenELB(files []string, objs []Object) (*Result, error) {
	r := &Result{Source: "openelb", Files: files}
	off := false
	r.ServeUnclassed = &off
	r.ServeUnclassedComment = []string{
		"OpenELB served only Services that opt in with the annotation",
		"lb.kubesphere.io/v1alpha1: openelb; l2lb honours it (and OpenELB's Eip",
		"annotations) and, like OpenELB, serves no other Service without a class.",
	}
	taken := map[string]bool{}
	var defaults, others []Pool
	for i := range objs {
		o := &objs[i]
		if o.Kind != "Eip" {
			r.note("%s: %s: not an OpenELB Eip; skipped", o.At, o)
			continue
		}
		var s eipSpec
		if err := decodeSpec(o, &s, eipFields, r.note); err != nil {
			return nil, err
		}
		protocol := s.Protocol
		if protocol == "" {
			protocol = "bgp" // OpenELB's default
		}
		if protocol != "layer2" {
			r.note("%s: %s: protocol %s; l2lb does Layer 2 only; skipped", o.At, o, protocol)
			continue
		}
		rng, err := config.ParseRange(s.Address)
		if err != nil {
			r.note("%s: %s: spec.address: %v; skipped", o.At, o, err)
			continue
		}
		p := Pool{Name: poolName(o.Metadata.Name, taken), Addresses: []string{rng.String()}, Namespaces: s.Namespaces}
		p.From = fmt.Sprintf("From Eip %s (%s).", o.Metadata.Name, o.At)
		if p.Name != o.Metadata.Name {
			r.note("%s: %s: its pool is named %s (a pool name is a DNS label); Services that name Eip %s in their annotation need l2lb.dev/pool: %s", o.At, o, p.Name, o.Metadata.Name, p.Name)
		}
		switch iface := s.Interface; {
		case strings.HasPrefix(iface, "can_reach:"):
			p.Comments = append(p.Comments, "OpenELB chose the interface that reaches "+strings.TrimPrefix(iface, "can_reach:")+"; l2lb answers on the interface whose subnet holds the address.")
			r.note("%s: %s: interface %s has no l2lb equivalent; l2lb answers on the interface whose subnet holds the address (set interface: if that is not it)", o.At, o, iface)
		case iface != "":
			p.Interface = iface
		}
		isDefault := o.Metadata.Annotations[openELBDefault] == "true"
		p.AutoAssign = isDefault && !s.Disable
		switch {
		case s.Disable:
			p.Comments = append(p.Comments, "Disabled in OpenELB: kept so that the addresses in use stay, but given only on request.")
			r.note("%s: %s: disabled; kept with autoAssign: false so that its addresses in use stay (l2lb still gives its addresses to Services that request them)", o.At, o)
		case isDefault:
			p.Comments = append(p.Comments, "OpenELB's default Eip: Services that name no Eip get addresses from it.")
		default:
			p.Comments = append(p.Comments, "Given only to Services that name it, as in OpenELB.")
		}
		if s.NamespaceSelector != nil {
			r.note("%s: %s: namespaceSelector has no l2lb equivalent (list the namespaces instead); ignored, so more namespaces may use the pool", o.At, o)
		}
		if s.Priority != 0 {
			r.note("%s: %s: priority %d has no l2lb equivalent; pools are tried in file order", o.At, o, s.Priority)
		}
		if s.UsingKnownIPs {
			r.note("%s: %s: usingKnownIPs has no l2lb equivalent; l2lb never announces an address a host on the segment has configured, but it may allocate it", o.At, o)
		}
		if isDefault {
			defaults = append(defaults, p)
		} else {
			others = append(others, p)
		}
	}
	// The default Eip first: l2lb gives a Service that names no pool an
	// address from the first auto-assign pool.
	r.Pools = append(defaults, others...)
	return r, nil
}
