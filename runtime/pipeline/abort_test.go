package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"go.starlark.net/starlark"
)

// After a second SIGINT (the abort), the cleanups that had not started are
// recorded aborted and never run — not even their first statement.
func TestNoCleanupRunsAfterAbort(t *testing.T) {
	const src = `job(name = "abort")
def s(ctx):
    pass
def first(ctx):
    abort_now()
def second(ctx):
    print("second ran")
def third(ctx):
    print("third ran")
stage("s", s)
cleanup(first)
cleanup(second)
cleanup(third)
`
	for try := 0; try < 20; try++ {
		abort, cancel := context.WithCancel(context.Background())
		mods := modules()
		mods["abort_now"] = starlark.NewBuiltin("abort_now", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			cancel() // what the second SIGINT does
			return starlark.None, nil
		})
		plan, err := interp.Declare(interp.Options{File: "abort.star", Src: []byte(src), Modules: mods})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		b, err := bundle.Create(dir, bundle.Result{Job: plan.Job.Name}, bundle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := &Runner{Plan: plan, Env: &builtins.Env{Rec: b}, Bundle: b, Abort: abort}
		r.Run(context.Background())
		b.Close()
		cancel()
		log, _ := os.ReadFile(filepath.Join(dir, "job.log"))
		if strings.Contains(string(log), "ran") {
			t.Fatalf("try %d: job.log = %q: a cleanup ran after the abort", try, log)
		}
		res := b.Result()
		for _, c := range res.Cleanup[1:] {
			if c.Status != "aborted" {
				t.Fatalf("try %d: cleanup %s status = %s, want aborted", try, c.Name, c.Status)
			}
		}
	}
}
