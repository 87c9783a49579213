package main

import (
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/runtime/lab"
)

// basalt doc lab documents every function and key of the lab files, from
// lab.Schema, the table that checks them.
func TestDocLab(t *testing.T) {
	var out strings.Builder
	writeLabDoc(&out)
	doc := out.String()
	for _, f := range lab.Schema {
		if !strings.Contains(doc, "\n"+f.Name+"(") {
			t.Errorf("basalt doc lab lacks %s(...)", f.Name)
		}
		for _, k := range f.Keys {
			if !strings.Contains(doc, "\n    "+k.Name+": "+k.Type) {
				t.Errorf("basalt doc lab lacks %s(%s: %s)", f.Name, k.Name, k.Type)
			}
		}
	}
}
