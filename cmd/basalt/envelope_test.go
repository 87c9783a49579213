package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
)

var update = flag.Bool("update", false, "rewrite testdata/doc.golden from `basalt doc`")

// Every Params string (what `basalt doc` shows and runtime/lint checks
// keywords against) agrees with the UnpackArgs call of its builtin.
func TestParamsMatchUnpackArgs(t *testing.T) {
	for _, tb := range tables() {
		for _, err := range builtins.CheckParams(tb) {
			t.Error(err)
		}
	}
}

// callEnveloped calls a member of tb through the envelope, on a thread with
// an empty job environment (no device, no backends).
func callEnveloped(tb *builtins.Table, b builtins.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) error {
	thread := &starlark.Thread{Name: "test"}
	builtins.Attach(thread, &builtins.Env{Ctx: context.Background()})
	_, err := starlark.Call(thread, tb.Wrap(b), args, kwargs)
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return ee.Unwrap()
	}
	return err
}

// timeout= has one meaning in every module: 0 is an error naming the
// builtin, never "no timeout".
func TestTimeoutZeroIsAnErrorEverywhere(t *testing.T) {
	n := 0
	for _, tb := range tables() {
		for _, b := range tb.Members {
			names, _ := builtins.ParseParams(b.Params)
			if b.Fn == nil || !slices.Contains(names, "timeout") {
				continue
			}
			n++
			q := tb.Qualified(b)
			for _, v := range []starlark.Value{starlark.MakeInt(0), starlark.String("0s"), starlark.Float(-1)} {
				err := callEnveloped(tb, b, nil, []starlark.Tuple{{starlark.String("timeout"), v}})
				want := q + `: for parameter "timeout": must be positive (got ` + v.String() + `); omit it for the stage's deadline`
				if err == nil || err.Error() != want {
					t.Errorf("%s(timeout = %s) = %v, want %q", q, v, err, want)
				}
			}
		}
	}
	if n < 15 {
		t.Errorf("%d builtins take timeout=, want at least 15", n)
	}
}

// Errors from every builtin start with its qualified name exactly once,
// whatever goes wrong: bad arguments or no device.
func TestBuiltinErrorsNameTheBuiltinOnce(t *testing.T) {
	for _, tb := range tables() {
		for _, b := range tb.Members {
			if b.Fn == nil {
				continue
			}
			q := tb.Qualified(b)
			names, _ := builtins.ParseParams(b.Params)
			calls := [][]starlark.Tuple{nil, {{starlark.String("no_such_param"), starlark.None}}}
			if len(names) > 0 {
				calls = append(calls, []starlark.Tuple{{starlark.String(names[0]), starlark.NewList(nil)}})
			}
			for _, kwargs := range calls {
				err := callEnveloped(tb, b, nil, kwargs)
				if err == nil {
					continue // e.g. test.case(...) with nothing wrong
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, q) {
					t.Errorf("%s(%v) = %q, want it to start with %s", q, kwargs, msg, q)
				}
				if rest := strings.TrimLeft(strings.TrimPrefix(msg, q), ":( "); strings.HasPrefix(rest, q+":") || strings.HasPrefix(rest, q+"(") {
					t.Errorf("%s(%v) = %q, names %s twice", q, kwargs, msg, q)
				}
			}
		}
	}
}

// `basalt doc` (every module, then the embedded libraries) is checked
// against testdata/doc.golden; go test -run TestDocGolden -update rewrites it.
func TestDocGolden(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), context.Background(), []string{"doc"}, nil, &out, &errb); code != 0 {
		t.Fatalf("basalt doc = exit %d, want 0; stderr: %s", code, errb.String())
	}
	golden := filepath.Join("testdata", "doc.golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (go test -run TestDocGolden -update writes it): %v", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("basalt doc differs from %s (rerun with -update if the change is meant):\n%s", golden, lineDiff(string(want), got))
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl && shown < 10 {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n- " + wl + "\n+ " + gl + "\n")
			shown++
		}
	}
	return b.String()
}
