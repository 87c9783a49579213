package lint

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/google/go-cmp/cmp"
	"go.starlark.net/syntax"
)

var testTables = []*builtins.Table{
	{Name: "", Members: []builtins.Builtin{{Name: "stage", Params: "name, fn, timeout=None, retries=0"}}},
	{Name: "sol", Members: []builtins.Builtin{{Name: "expect", Params: "pattern_or_list, timeout=None"}, {Name: "send", Params: "text, delay_ms=None"}}},
	{Name: "ipmi", Members: []builtins.Builtin{{Name: "power", Params: "action, timeout=None"}}},
	{Name: "pxe", Members: []builtins.Builtin{{Name: "serve", Params: `kernel, initrd=None, append="", mac=None`}}},
	{Name: "open", Members: []builtins.Builtin{{Name: "any", Params: "x, **kwargs"}}},
}

var lib = `
def _on():
    ipmi.power("on")

def boot(ctx, kernel = None, timeout = "5m"):
    pxe.serve(kernel)
    _on()

lib = struct(boot = boot)
`

func check(t *testing.T, job string) *Result {
	t.Helper()
	src := func(name string) ([]byte, error) {
		if name == "lib.star" {
			return []byte(lib), nil
		}
		return nil, errors.New("no such file")
	}
	res, err := Check("job.star", []byte(job), src, testTables, &syntax.FileOptions{Set: true, While: true, TopLevelControl: true})
	if err != nil {
		t.Fatalf("Check(%q) = %v", job, err)
	}
	return res
}

func TestCheckProblems(t *testing.T) {
	for _, c := range []struct {
		job  string
		want []string
	}{
		{"def f(ctx):\n    sol.expct(\"x\")\n", []string{"job.star:2:9: sol has no member expct (did you mean expect?)"}},
		{"def f(ctx):\n    sol.expect(\"x\", timeot = \"1m\")\n", []string{"job.star:2:21: sol.expect: unexpected keyword argument timeot (did you mean timeout?)"}},
		{"def f(ctx):\n    sol.expect(\"x\", timeout = \"1m\")\n", nil},
		{"fn = sol.sned\n", []string{"job.star:1:10: sol has no member sned (did you mean send?)"}},
		{"def f(ctx):\n    open.any(1, whatever = 2)\n", nil},
		// A local of the module's name is not the module.
		{"def f(ctx):\n    sol = struct(expct = len)\n    sol.expct(\"x\")\n", nil},
		{"sol = struct(x = 1)\ndef f(ctx):\n    sol.nothing()\n", nil},
		// Predeclared functions and loaded library functions.
		{"def f(ctx):\n    pass\nstage(\"a\", f, retrys = 1)\n", []string{"job.star:3:15: stage: unexpected keyword argument retrys (did you mean retries?)"}},
		{"load(\"lib.star\", \"lib\")\ndef f(ctx):\n    lib.boot(ctx, kernal = \"k\")\n", []string{"job.star:3:19: lib.boot: unexpected keyword argument kernal (did you mean kernel?)"}},
		{"load(\"lib.star\", \"lib\")\ndef f(ctx):\n    lib.bot(ctx)\n", []string{"job.star:3:9: lib has no member bot (did you mean boot?)"}},
		{"load(\"lib.star\", b = \"boot\")\ndef f(ctx):\n    b(ctx, timeout = \"1m\", x = 1)\n", []string{"job.star:3:28: b: unexpected keyword argument x"}},
	} {
		res := check(t, c.job)
		var got []string
		for _, p := range res.Problems {
			got = append(got, p.Error())
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("Check(%q) problems mismatch (-want +got):\n%s", c.job, diff)
		}
	}
}

// Uses follow the job into loaded libraries, through function references
// (cleanup(lib.boot)) and private helpers, and name the job's line.
func TestCheckUses(t *testing.T) {
	res := check(t, "load(\"lib.star\", \"lib\")\ndef f(ctx):\n    sol.send(\"x\")\n    lib.boot(ctx)\nstage(\"a\", f)\n")
	var got []string
	for _, u := range res.Uses {
		got = append(got, fmt.Sprintf("%s %s from %s", u.Builtin, u.Pos, u.From))
	}
	want := []string{
		"sol.send job.star:3:5 from job.star:3:5",
		"pxe.serve lib.star:6:5 from job.star:4:5",
		"ipmi.power lib.star:3:5 from job.star:4:5",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Uses mismatch (-want +got):\n%s", diff)
	}
	res = check(t, "def f(ctx):\n    pxe.serve(\"k\", mac = \"02:00:00:00:00:01\")\nstage(\"a\", f)\n")
	if len(res.Uses) != 1 || strings.Join(res.Uses[0].Keywords, ",") != "mac" {
		t.Errorf("Uses = %+v, want pxe.serve with keyword mac", res.Uses)
	}
}

func TestParseParams(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		open bool
	}{
		{"action, timeout=None", []string{"action", "timeout"}, false},
		{`kernel, initrd=None, append="", dtb=None`, []string{"kernel", "initrd", "append", "dtb"}, false},
		{`str, prefix="", indent="\t"`, []string{"str", "prefix", "indent"}, false},
		{`sep=", ", items=[1, 2]`, []string{"sep", "items"}, false},
		{"fn, *args, **kwargs", []string{"fn"}, true},
		{"", nil, false},
	} {
		got, open := ParseParams(c.in)
		if diff := cmp.Diff(c.want, got); diff != "" || open != c.open {
			t.Errorf("ParseParams(%q) = %q, %t; want %q, %t", c.in, got, open, c.want, c.open)
		}
	}
}
