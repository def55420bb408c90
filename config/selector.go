package config

import (
	"fmt"
	"maps"
	"slices"

	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// This file owns a pool's nodeSelector: Kubernetes label-selector syntax
// (matchLabels, matchExpressions) on Node objects, decoded with positions,
// validated by apimachinery's own rules and compiled once per config.

// labelSelector decodes a metav1.LabelSelector. matchLabels is a free-form
// mapping, so each value's position is recorded under its key.
func (d *decoder) labelSelector(dst **metav1.LabelSelector) fieldFunc {
	return func(n *yaml.Node, path string) {
		sel := &metav1.LabelSelector{}
		d.mapping(n, path, map[string]fieldFunc{
			"matchLabels": func(n *yaml.Node, path string) {
				if n.Kind != yaml.MappingNode {
					d.fail(n, path, "want a mapping of label keys to values, got %s", describe(n))
					return
				}
				sel.MatchLabels = map[string]string{}
				for i := 0; i+1 < len(n.Content); i += 2 {
					k, v := n.Content[i], n.Content[i+1]
					kpath := join(path, k.Value)
					if k.Kind != yaml.ScalarNode {
						d.fail(k, path, "label keys must be strings")
						continue
					}
					if _, dup := sel.MatchLabels[k.Value]; dup {
						d.fail(k, kpath, "duplicate label key")
						continue
					}
					var s string
					if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
						d.fail(v, kpath, `want a label value (write "" for an empty one), got null`)
						continue
					}
					if !d.usable(v, kpath) {
						continue
					}
					d.str(&s)(v, kpath)
					sel.MatchLabels[k.Value] = s
				}
			},
			"matchExpressions": func(n *yaml.Node, path string) {
				d.list(n, path, func(item *yaml.Node, ipath string) {
					var r metav1.LabelSelectorRequirement
					var op string
					d.mapping(item, ipath, map[string]fieldFunc{
						"key":      d.str(&r.Key),
						"operator": d.str(&op),
						"values":   d.strings(&r.Values),
					})
					r.Operator = metav1.LabelSelectorOperator(op)
					sel.MatchExpressions = append(sel.MatchExpressions, r)
				})
			},
		})
		*dst = sel
	}
}

// selector validates a pool's nodeSelector at path: every problem, each at
// the field it is about.
func (v *validator) selector(path string, sel *metav1.LabelSelector) {
	if sel == nil {
		return
	}
	mpath := path + ".matchLabels"
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		for _, msg := range validation.IsQualifiedName(k) {
			v.fail(join(mpath, k), "label key %q is not valid: %s", k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(sel.MatchLabels[k]) {
			v.fail(join(mpath, k), "label value %q is not valid: %s", sel.MatchLabels[k], msg)
		}
	}
	for i, r := range sel.MatchExpressions {
		epath := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		if r.Key == "" || r.Operator == "" {
			v.fail(epath, "key and operator (In, NotIn, Exists or DoesNotExist) are required")
			continue
		}
		for _, e := range metav1validation.ValidateLabelSelectorRequirement(r, metav1validation.LabelSelectorValidationOptions{}, field.NewPath(epath)) {
			msg := e.ErrorBody()
			if e.Type == field.ErrorTypeInvalid && e.Field == epath+".operator" {
				msg = fmt.Sprintf("%q is not an operator; want In, NotIn, Exists or DoesNotExist", r.Operator)
			}
			v.fail(e.Field, "%s", msg)
		}
	}
}

// compileSelectors turns every valid pool's nodeSelector into the
// labels.Selector placement matches Node labels with.
func compileSelectors(c *Config) error {
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.NodeSelector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.NodeSelector)
		if err != nil {
			return fmt.Errorf("pools[%d].nodeSelector: %w", i, err)
		}
		p.selector = sel
	}
	return nil
}

// SelectsNode reports whether a Node with these labels may announce the
// pool's addresses: always without a nodeSelector.
func (p *Pool) SelectsNode(nodeLabels map[string]string) bool {
	if p.NodeSelector == nil {
		return true
	}
	sel := p.selector
	if sel == nil { // a Pool built in code, not by Parse
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(p.NodeSelector); err != nil {
			return false
		}
	}
	return sel.Matches(labels.Set(nodeLabels))
}
