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

// Every public function of the embedded libraries has a docstring, shown by
// `basalt doc stdlib`.
func TestStdlibDocumented(t *testing.T) {
	var buf bytes.Buffer
	if err := writeStdlibDoc(&buf); err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(buf.String(), "\n\n")
	for i, b := range blocks {
		lines := strings.Split(b, "\n")
		if strings.HasSuffix(lines[0], ")") && !strings.HasPrefix(lines[0], " ") && !strings.HasPrefix(lines[0], "#") {
			if len(lines) < 2 || strings.TrimSpace(lines[1]) == "" {
				t.Errorf("stdlib function %s has no docstring (block %d)", lines[0], i)
			}
		}
	}
	for _, want := range []string{"## @stdlib//master.star", "boot(ctx, kernel = None, initrd = None, append = \"nosplash break\", loader = None, timeout = \"5m\", dev = None)", "save_node(", "## @stdlib//health.star"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("basalt doc stdlib lacks %q", want)
		}
	}
}
