package config

import (
	"os"
	"testing"
)

// FuzzParse checks that no input panics, that every problem is placed in the
// file, and that whatever Parse accepts also passes Validate.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../examples/l2lbd.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "    nodeSelector: {matchLabels: {a: b}, matchExpressions: [{key: k, operator: In, values: [x]}, {key: j, operator: Exists}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data, "host")
		if err != nil {
			problems := Problems(err)
			if len(problems) == 0 {
				t.Fatalf("error is not made of Problems: %v", err)
			}
			for _, p := range problems {
				if p.File != "f.yaml" || p.Line < 0 || p.Msg == "" {
					t.Fatalf("badly formed problem: %#v", p)
				}
			}
			return
		}
		if err := Validate(c); err != nil {
			t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
		}
	})
}
