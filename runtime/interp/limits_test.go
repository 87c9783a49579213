package interp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/clock"
	"go.starlark.net/starlark"
)

const head = "job(name='a')\ndef f(ctx):\n    pass\nstage('s', f)\n"

// declareWith declares src with the time module, under a guard: a declare
// phase that does not return within a minute fails the test instead of
// hanging it (the bug these tests are about).
func declareWith(t *testing.T, src string, o Options) (*Plan, error) {
	t.Helper()
	dir := t.TempDir()
	if o.File != "" {
		dir = filepath.Dir(o.File)
	}
	o.File = filepath.Join(dir, "job.star")
	if err := os.WriteFile(o.File, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.Modules == nil {
		o.Modules = starlark.StringDict{"time": clock.Table.Module()}
	}
	type result struct {
		p   *Plan
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p, err := Declare(o)
		ch <- result{p, err}
	}()
	select {
	case r := <-ch:
		return r.p, r.err
	case <-time.After(time.Minute):
		t.Fatalf("Declare(%.60q) did not return within a minute", src)
		return nil, nil
	}
}

func TestDeclareNeverWaits(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		o         Options
		want      string
	}{
		{"sleep at top level", head + "time.sleep('1000h')\n", Options{},
			"job.star:5:11: time.sleep: refused at top level"},
		{"loop of short sleeps", head + "for i in range(1000000):\n    time.sleep('1ms')\n", Options{},
			"job.star:6:15: time.sleep: refused at top level"},
		{"sleep in a loaded library", "load('lib.star', 'x')\n" + head, Options{}, "cannot load lib.star: time.sleep: refused at top level"},
		{"long computation", head + "x = [0]\nfor i in range(1000000000):\n    x[0] += 1\n",
			Options{Timeout: 50 * time.Millisecond, MaxSteps: 1 << 62},
			"declare deadline of 50ms reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "lib.star"), []byte("time.sleep('1000h')\nx = 1\n"), 0o644)
			tc.o.File = filepath.Join(dir, "job.star")
			os.WriteFile(tc.o.File, []byte(tc.src), 0o644)
			tc.o.Modules = starlark.StringDict{"time": clock.Table.Module()}
			_, err := declareWith(t, tc.src, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Declare = %v, want error containing %q", err, tc.want)
			}
			if c := builtins.ClassOf(err); c != builtins.ClassJob {
				t.Errorf("class = %s, want job", c)
			}
		})
	}
}

func TestDeclareCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	// The job cancels itself (as a SIGINT would) once it is running.
	o := Options{Ctx: ctx, Timeout: time.Hour, MaxSteps: 1 << 62, Print: func(string) { cancel() }}
	_, err := declareWith(t, head+"print('go')\nx = [0]\nfor i in range(1000000000):\n    x[0] += 1\n", o)
	if c := builtins.ClassOf(err); c != builtins.ClassCanceled {
		t.Fatalf("Declare canceled = %v (class %s), want class canceled", err, c)
	}

	// A job limit cancels with a cause, which is the error returned.
	limit := builtins.Job(errors.New("job memory limit of 1 MiB exceeded"))
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	o = Options{Ctx: ctx2, Timeout: time.Hour, MaxSteps: 1 << 62, Print: func(string) { cancel2(limit) }}
	_, err = declareWith(t, head+"print('go')\nx = [0]\nfor i in range(1000000000):\n    x[0] += 1\n", o)
	if !errors.Is(err, limit) {
		t.Fatalf("Declare over a limit = %v, want %v", err, limit)
	}
}

func TestHostileSources(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"300000 brackets", head + "x = " + strings.Repeat("[", 300000) + strings.Repeat("]", 300000) + "\n",
			"job.star:5:205: brackets nest more than 200 deep"},
		{"brackets in a call", head + "print" + strings.Repeat("(", 300000) + "\n", "job.star:5:206: brackets nest"},
		{"unary minus", head + "x = " + strings.Repeat("-", 300000) + "1\n", "job.star:5:205: more than 200 prefix operators"},
		{"not not", head + "x = " + strings.Repeat("not ", 100000) + "1\n", "more than 200 prefix operators"},
		{"lambda", head + "x = " + strings.Repeat("lambda: ", 100000) + "1\n", "more than 200 prefix operators"},
		{"long chain", head + "x = 1" + strings.Repeat("+1", 100000) + "\n", "job.star:5:20004: the statement has more than 10000 operators"},
		{"if chain", head + "x = " + strings.Repeat("1 if 1 else ", 40000) + "1\n", "the statement has more than 10000"},
		{"2 MiB file", head + "# " + strings.Repeat("x", 2<<20) + "\n", "job.star: the file is larger than 1048576 bytes"},
		{"loaded library nests", "load('lib.star', 'x')\n" + head, "lib.star:1:205: brackets nest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "lib.star"), []byte("x = "+strings.Repeat("(", 300000)+"\n"), 0o644)
			f := filepath.Join(dir, "job.star")
			os.WriteFile(f, []byte(tc.src), 0o644)
			_, err := Declare(Options{File: f})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Declare = %.300v, want error containing %q", err, tc.want)
			}
			if c := builtins.ClassOf(err); c != builtins.ClassJob {
				t.Errorf("class = %s, want job", c)
			}
		})
	}
}

func TestNestingNotMiscounted(t *testing.T) {
	// Brackets, operators and keywords inside strings and comments do not
	// count; deep but legal code passes.
	src := head + "# " + strings.Repeat("(", 500) + "\n" +
		"s = '" + strings.Repeat("[", 500) + "' + \"" + strings.Repeat("-", 500) + "\"\n" +
		"t = '''\n" + strings.Repeat("{ not ", 500) + "\n'''\n" +
		"u = 'it\\'s ((('\n" +
		"v = " + strings.Repeat("[", 150) + strings.Repeat("]", 150) + "\n" +
		"w = 1" + strings.Repeat(" + 1", 5000) + "\n" +
		"z = 1" + strings.Repeat(" + 1", 5000) + "\n"
	if _, err := declareWith(t, src, Options{}); err != nil {
		t.Fatalf("Declare(legal nesting) = %v, want no error", err)
	}
}

func TestCancelNamesRunningLine(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"while True: pass", head + "while True:\n    pass\n", "job.star:5:1: "},
		{"loop in a function", head + "def spin():\n    x = 1\n    while True:\n        pass\nspin()\n", "job.star:7:5: "},
		{"busy loop", head + "x = [0]\nwhile True:\n    x[0] += 1\n", "job.star:7:5: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := declareWith(t, tc.src, Options{MaxSteps: 1000})
			if err == nil || !strings.Contains(err.Error(), tc.want+"Starlark computation cancelled: step limit") {
				t.Fatalf("Declare = %v, want %q then the step limit", err, tc.want)
			}
		})
	}
}

func TestLoadPathEscaped(t *testing.T) {
	_, err := declareWith(t, head+"load('a\\x00b\\x1b[31m.star', 'x')\n", Options{})
	if err == nil || strings.ContainsAny(err.Error(), "\x00\x1b") || !strings.Contains(err.Error(), `a\x00b\x1b[31m.star`) {
		t.Fatalf("Declare(load with NUL) = %q, want the NUL and ESC escaped as \\x00 and \\x1b", err)
	}
}

// FuzzDeclareHostile runs arbitrary job files through the declare phase, with the
// blocking builtin (time.sleep) predeclared and seeds that nest deeply: it
// must return — an error or a plan — and never crash or hang.
func FuzzDeclareHostile(f *testing.F) {
	for _, s := range []string{
		head,
		head + "time.sleep('1000h')\n",
		head + "for i in range(10):\n    time.sleep('1ms')\n",
		head + "while True:\n    pass\n",
		head + "x = " + strings.Repeat("[", 300) + strings.Repeat("]", 300) + "\n",
		head + "x = " + strings.Repeat("(", 199) + "1" + strings.Repeat(")", 199) + "\n",
		head + "x = " + strings.Repeat("-", 250) + "1\n",
		head + "x = " + strings.Repeat("lambda: ", 150) + "1\n",
		head + "x = 1" + strings.Repeat("+1", 10001) + "\n",
		head + "s = '''" + strings.Repeat("(", 300) + "'''\n",
		head + "load('a\\x00.star', 'x')\n",
		"def f(ctx):\n    time.sleep('1h')\njob(name='x')\nstage('s', f)\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	file := filepath.Join(dir, "job.star")
	mods := starlark.StringDict{"time": clock.Table.Module()}
	f.Fuzz(func(t *testing.T, src []byte) {
		start := time.Now()
		_, err := Declare(Options{File: file, Src: src, Modules: mods, MaxSteps: 100000, Timeout: 2 * time.Second})
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("Declare took %s (deadline 2s)", d)
		}
		if err != nil && builtins.ClassOf(err) != builtins.ClassJob {
			t.Fatalf("Declare = %v (class %s), want a job error", err, builtins.ClassOf(err))
		}
	})
}

func TestWatchMemory(t *testing.T) {
	got := make(chan error, 1)
	stop := WatchMemory(context.Background(), 1<<20, func(err error) { got <- err })
	defer stop()
	hold := make([][]byte, 0, 64)
	for i := 0; i < 64; i++ { // 64 MiB held live, past a 1 MiB limit
		hold = append(hold, make([]byte, 1<<20))
	}
	select {
	case err := <-got:
		if !strings.Contains(err.Error(), "job memory limit of 1 MiB exceeded") || builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("WatchMemory reported %v (class %s), want a job error naming the 1 MiB limit", err, builtins.ClassOf(err))
		}
	case <-time.After(time.Minute):
		t.Fatal("WatchMemory never reported a heap of 64 MiB over a 1 MiB limit")
	}
	_ = hold[63][0]
}
