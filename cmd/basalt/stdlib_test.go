package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarktest"
)

// The standard library's .star tests (stdlib/testdata/*_test.star) are
// jobs run on the sim device with starlarktest's assert module.
func TestStdlibStar(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "stdlib", "testdata", "*_test.star"))
	if len(files) == 0 {
		t.Fatal("no stdlib/testdata/*_test.star")
	}
	assertMod, err := starlarktest.LoadAssertModule()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out, errb bytes.Buffer
			a := &app{ctx: context.Background(), abort: context.Background(), stdout: &out, stderr: &errb,
				extraModules: assertMod,
				onThread:     func(th *starlark.Thread) { starlarktest.SetReporter(th, t) }}
			root := a.rootCmd()
			root.SetArgs([]string{"run", f, "--device", "sim", "--out", filepath.Join(t.TempDir(), "out")})
			if err := root.Execute(); err != nil {
				t.Errorf("basalt run %s: %v\n%s%s", f, err, out.String(), errb.String())
			}
		})
	}
}
