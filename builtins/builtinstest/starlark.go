package builtinstest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarktest"
	"go.starlark.net/syntax"
)

// NewThread returns a thread running a job stage with env attached (see
// [builtins.Attach]); env.Ctx defaults to the test's context. assert.fails
// and assert.eq report to t (starlarktest.SetReporter), and the thread
// loads "assert.star" for files that load it rather than rely on the
// predeclared assert that [ExecFile] adds.
func NewThread(t testing.TB, env *builtins.Env) *starlark.Thread {
	t.Helper()
	thread := &starlark.Thread{
		Name: t.Name(),
		Load: func(_ *starlark.Thread, module string) (starlark.StringDict, error) {
			if module == "assert.star" {
				return starlarktest.LoadAssertModule()
			}
			return nil, fmt.Errorf("load %s: no such module in a builtin's test", module)
		},
	}
	starlarktest.SetReporter(thread, t)
	if env.Ctx == nil {
		env.Ctx = t.Context()
	}
	builtins.Attach(thread, env)
	return thread
}

// ExecFile runs a Starlark file (src as for starlark.ExecFile: nil reads
// filename) with predeclared plus "assert" (starlarktest's module), and
// fails the test with the Starlark backtrace when it fails. It returns the
// file's globals.
func ExecFile(t testing.TB, thread *starlark.Thread, filename string, src any, predeclared starlark.StringDict) starlark.StringDict {
	t.Helper()
	globals, err := Exec(thread, filename, src, predeclared)
	if err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			t.Fatal(ee.Backtrace())
		}
		t.Fatal(err)
	}
	return globals
}

// Exec is [ExecFile] for a file expected to fail: it returns the error.
func Exec(thread *starlark.Thread, filename string, src any, predeclared starlark.StringDict) (starlark.StringDict, error) {
	pre := starlark.StringDict{}
	if _, ok := predeclared["assert"]; !ok {
		assert, err := starlarktest.LoadAssertModule()
		if err != nil {
			return nil, fmt.Errorf("load assert module: %w", err)
		}
		pre["assert"] = assert["assert"]
	}
	for k, v := range predeclared {
		pre[k] = v
	}
	return starlark.ExecFileOptions(&syntax.FileOptions{}, thread, filename, src, pre)
}
