package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
)

// Every module and member must be documented: `basalt doc` is generated
// from these tables.
func TestEveryBuiltinDocumented(t *testing.T) {
	if missing := builtins.Undocumented(tables()...); len(missing) > 0 {
		t.Errorf("undocumented builtins: %s", strings.Join(missing, ", "))
	}
	// and every predeclared module value comes from a table
	for name := range predeclared() {
		found := false
		for _, tb := range tables() {
			found = found || tb.Name == name
		}
		if !found {
			t.Errorf("predeclared %q has no documentation table", name)
		}
	}
}

func TestDocOutputListsMembers(t *testing.T) {
	for _, tb := range tables() {
		var buf bytes.Buffer
		writeDoc(&buf, tb)
		for _, m := range tb.Members {
			if !strings.Contains(buf.String(), m.Name) {
				t.Errorf("basalt doc %s does not mention %s", docName(tb), m.Name)
			}
		}
	}
}
