package sol

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

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

	rec := &builtinstest.Recorder{}
	env := &builtins.Env{Ctx: testContext(t), Rec: rec}
	SetBackend(env, c)
	thread := builtinstest.NewThread(t, env)
	builtinstest.ExecFile(t, thread, "testdata/sol.star", nil, starlark.StringDict{"sol": Table.Module()})

	// The call events show every sendline but never the secret.
	var calls []string
	for _, f := range rec.Events("call") {
		if f["builtin"] == "sol.sendline" {
			calls = append(calls, fmt.Sprint(f["args"]))
		}
	}
	if want := `[["hello"] ["one" delay_ms=1] ["two"] ["<redacted>" secret=True] ["after"]]`; fmt.Sprint(calls) != want {
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

// timeout_ok=True forgives the call's own timeout=, never the stage's
// deadline: past it, expect fails as it would without timeout_ok.
func TestExpectTimeoutOKStageDeadline(t *testing.T) {
	_, _, c := simConsole(t, serialsim.Config{}, Options{})
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	env := &builtins.Env{Ctx: ctx, Rec: &builtinstest.Recorder{}}
	SetBackend(env, c)
	thread := builtinstest.NewThread(t, env)
	_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "t.star",
		`def f():
    return sol.expect("never", timeout_ok = True)
f()`, starlark.StringDict{"sol": Table.Module()})
	if err == nil || builtins.ClassOf(err) != builtins.ClassDevice || !strings.Contains(err.Error(), "no match for") {
		t.Errorf("sol.expect(timeout_ok=True) past the stage deadline = %v, want a device error", err)
	}
}
