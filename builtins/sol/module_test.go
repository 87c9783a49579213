package sol

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarktest"
	"go.starlark.net/syntax"
)

// fakeRec is a builtins.Recorder keeping events.
type fakeRec struct{ recorder }

func (r *fakeRec) Emit(typ string, f map[string]any)                  { r.emit(typ, f) }
func (r *fakeRec) TestCase(builtins.TestCase)                         {}
func (r *fakeRec) Print(string)                                       {}
func (r *fakeRec) Console() io.Writer                                 { return io.Discard }
func (r *fakeRec) Artifact(string, io.Reader, string) (string, error) { return "", nil }

func TestStarlarkModule(t *testing.T) {
	line, _, c := simConsole(t, serialsim.Config{}, Options{})
	// The device answers each line with "echo: <line>".
	go func() {
		dev := line.Device()
		sc := bufio.NewScanner(dev)
		for sc.Scan() {
			fmt.Fprintf(dev, "echo: %s\r\n", sc.Text())
		}
	}()

	rec := &fakeRec{}
	thread := &starlark.Thread{Name: "test"}
	starlarktest.SetReporter(thread, t)
	builtins.Attach(thread, &builtins.Env{Ctx: testContext(t), Rec: rec, Backends: map[string]any{"sol": c}})
	assert, err := starlarktest.LoadAssertModule()
	if err != nil {
		t.Fatal(err)
	}
	predeclared := starlark.StringDict{"sol": Table.Module(), "assert": assert["assert"]}
	if _, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "testdata/sol.star", nil, predeclared); err != nil {
		if ee, ok := err.(*starlark.EvalError); ok {
			t.Fatal(ee.Backtrace())
		}
		t.Fatal(err)
	}

	// The call events show every sendline but never the secret.
	var calls []string
	for _, f := range rec.of("call") {
		if f["builtin"] == "sol.sendline" {
			calls = append(calls, fmt.Sprint(f["args"]))
		}
	}
	if want := `[["hello"] ["one" delay_ms=1] ["two"] ["<redacted>" secret=True]]`; fmt.Sprint(calls) != want {
		t.Errorf("sendline call events = %v, want %s", calls, want)
	}
	if strings.Contains(rec.String(), "s3cr3t") {
		t.Errorf("events hold the secret: %s", rec.String())
	}
}

func TestStarlarkRefusedAtTopLevel(t *testing.T) {
	thread := &starlark.Thread{Name: "test"}
	builtins.Attach(thread, &builtins.Env{Ctx: context.Background(), Declaring: true})
	for _, src := range []string{`sol.send("x")`, `sol.sendline("x")`, `sol.expect("x")`, `sol.mode("shell")`} {
		_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "job.star", src, starlark.StringDict{"sol": Table.Module()})
		if err == nil || !strings.Contains(err.Error(), "not at top level") || builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("%s at top level = %v, want a job error", src, err)
		}
	}
	// regex is pure and allowed.
	if _, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "job.star", `p = sol.regex("login: ")`, starlark.StringDict{"sol": Table.Module()}); err != nil {
		t.Errorf("sol.regex at top level = %v", err)
	}
}

func TestDocumented(t *testing.T) {
	if u := builtins.Undocumented(Table); len(u) > 0 {
		t.Errorf("undocumented: %v", u)
	}
}
