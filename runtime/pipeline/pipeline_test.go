package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/clock"
	"github.com/basalt-lab/basalt/builtins/test"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/starlarktest"
)

func modules() starlark.StringDict {
	return starlark.StringDict{
		"test":   test.Table.Module(),
		"time":   clock.Table.Module(),
		"json":   json.Module,
		"struct": starlark.NewBuiltin("struct", starlarkstruct.Make),
		"lab":    labTable.Module(),
	}
}

// labTable is a stand-in device module for .star tests: lab.fail(class,
// message) fails with an error of that class, as a real builtin would.
var labTable = &builtins.Table{Name: "lab", Doc: "x", Members: []builtins.Builtin{{
	Name: "fail", Params: "class, message", Doc: "x", Action: true,
	Fn: func(_ *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var class, msg string
		if err := starlark.UnpackArgs(name, args, kwargs, "class", &class, "message", &msg); err != nil {
			return nil, builtins.Job(err)
		}
		return nil, &builtins.Error{Class: builtins.Class(class), Err: errors.New(msg)}
	},
}, {
	Name: "wait", Params: "", Doc: "x", Action: true,
	// wait blocks until the stage's deadline, then fails as a device
	// that never answered does.
	Fn: func(thread *starlark.Thread, _ string, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
		ctx, cancel := builtins.CallContext(thread, 0)
		defer cancel()
		<-ctx.Done()
		return nil, builtins.Device(ctx.Err())
	},
}}}

func run(t *testing.T, file string, src []byte) (Outcome, bundle.Result) {
	t.Helper()
	mods := modules()
	// the assert module, for .star tests
	assertMod, err := starlarktest.LoadAssertModule()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range assertMod {
		mods[k] = v
	}
	plan, err := interp.Declare(interp.Options{File: file, Src: src, Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Create(t.TempDir(), bundle.Result{Job: plan.Job.Name}, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env := &builtins.Env{Rec: b, JobDir: plan.Dir}
	r := &Runner{Plan: plan, Env: env, Bundle: b, OnThread: func(th *starlark.Thread) { starlarktest.SetReporter(th, t) }}
	out := r.Run(context.Background())
	b.Close()
	return out, b.Result()
}

func TestStarFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.star")
	if len(files) == 0 {
		t.Fatal("no testdata/*.star")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, res := run(t, f, src)
			if out.Err != nil {
				t.Fatalf("%s: %v", f, out.Err)
			}
			if res.Status != StatusPass {
				t.Errorf("status = %s, want pass", res.Status)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		status string
		class  builtins.Class
		want   int
	}{
		{StatusPass, "", 0}, {StatusFail, "", 1}, {StatusError, builtins.ClassJob, 2},
		{StatusError, builtins.ClassInfra, 3}, {StatusError, builtins.ClassDevice, 4},
		{StatusCanceled, builtins.ClassCanceled, 5},
	} {
		if got := ExitCode(tc.status, tc.class); got != tc.want {
			t.Errorf("ExitCode(%s, %s) = %d, want %d", tc.status, tc.class, got, tc.want)
		}
	}
}

// A builtin's own class wins over the deadline: an infrastructure error in
// a stage is retried and reported as infra.
func TestClassFromBuiltin(t *testing.T) {
	mods := modules()
	calls := 0
	mods["lab"] = (&builtins.Table{Name: "lab", Doc: "x", Members: []builtins.Builtin{{
		Name: "flaky", Doc: "x", Action: true,
		Fn: func(*starlark.Thread, string, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			calls++
			return nil, builtins.Infra(os.ErrDeadlineExceeded)
		},
	}}}).Module()
	src := []byte("job(name='x')\ndef s(ctx):\n    lab.flaky()\nstage('s', s, retries=2)\n")
	plan, err := interp.Declare(interp.Options{File: "x.star", Src: src, Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bundle.Create(t.TempDir(), bundle.Result{Job: "x"}, bundle.Options{})
	out := (&Runner{Plan: plan, Env: &builtins.Env{Rec: b}, Bundle: b}).Run(context.Background())
	b.Close()
	if out.Class != builtins.ClassInfra || out.ExitCode() != 3 {
		t.Errorf("outcome class = %s exit %d, want infra 3", out.Class, out.ExitCode())
	}
	if calls != 3 {
		t.Errorf("flaky called %d times, want 3 (1 + 2 retries)", calls)
	}
	if out.Info.Pos != "x.star:3:14" {
		t.Errorf("error pos = %q, want x.star:3:14", out.Info.Pos)
	}
}
