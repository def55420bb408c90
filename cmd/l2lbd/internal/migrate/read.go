// Package migrate turns the objects of the load balancer a user migrates
// from (OpenELB Eips, MetalLB IPAddressPools and L2Advertisements, as
// `kubectl get -o yaml` prints them) into a commented l2lbd.yaml, and says
// on the side whatever it cannot express. It is pure: the command reads the
// files and prints.
package migrate

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Object is one Kubernetes object read from a file.
type Object struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       yaml.Node
	// At is where it starts: file:line.
	At string `yaml:"-"`
}

// Metadata is the part of an object's metadata the import reads.
type Metadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func (o *Object) String() string { return o.Kind + " " + o.Metadata.Name }

// Read returns every object in data: single objects, lists (kind: List and
// the typed lists kubectl prints) and multi-document files.
func Read(file string, data []byte) ([]Object, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var out []Object
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" {
			continue // an empty document, as after a trailing ---
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: want a Kubernetes object or list, got %s", file, root.Line, kindOf(root))
		}
		nodes := []*yaml.Node{root}
		if items := field(root, "items"); items != nil {
			if items.Kind != yaml.SequenceNode {
				return nil, fmt.Errorf("%s:%d: items: want a list", file, items.Line)
			}
			nodes = items.Content
		}
		for _, n := range nodes {
			var o Object
			if err := n.Decode(&o); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", file, n.Line, err)
			}
			if spec := field(n, "spec"); spec != nil {
				o.Spec = *spec
			}
			o.At = fmt.Sprintf("%s:%d", file, n.Line)
			if o.Kind == "" {
				return nil, fmt.Errorf("%s: not a Kubernetes object: it has no kind", o.At)
			}
			out = append(out, o)
		}
	}
}

func field(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// decodeSpec decodes o's spec into dst and reports the spec fields dst
// does not know, so that nothing is dropped silently.
func decodeSpec(o *Object, dst any, known []string, note func(string, ...any)) error {
	if o.Spec.Kind == 0 {
		return nil
	}
	if err := o.Spec.Decode(dst); err != nil {
		return fmt.Errorf("%s: %s: spec: %w", o.At, o, err)
	}
	for i := 0; i+1 < len(o.Spec.Content); i += 2 {
		if k := o.Spec.Content[i].Value; !slices.Contains(known, k) {
			note("%s: %s: spec.%s is not known to this import; ignored", o.At, o, k)
		}
	}
	return nil
}

// selector is metav1.LabelSelector with YAML field names.
type selector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []struct {
		Key      string   `yaml:"key"`
		Operator string   `yaml:"operator"`
		Values   []string `yaml:"values"`
	} `yaml:"matchExpressions"`
}

func (s *selector) label() *metav1.LabelSelector {
	out := &metav1.LabelSelector{MatchLabels: s.MatchLabels}
	for _, e := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{Key: e.Key, Operator: metav1.LabelSelectorOperator(e.Operator), Values: e.Values})
	}
	return out
}
