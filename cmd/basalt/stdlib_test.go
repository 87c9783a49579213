package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
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
			// NAME_test.device.star beside a test is the device it runs on.
			device := "sim"
			if d := strings.TrimSuffix(f, ".star") + ".device.star"; fileExists(d) {
				device = d
				// A device on a segment of the job's own needs network
				// namespaces: root (as CI runs).
				if b, _ := os.ReadFile(d); strings.Contains(string(b), "segment = ") && os.Geteuid() != 0 {
					t.Skip("the device's segment needs root")
				}
			}
			root.SetArgs([]string{"run", f, "--device", device, "--out", filepath.Join(t.TempDir(), "out")})
			if err := root.Execute(); err != nil {
				t.Errorf("basalt run %s: %v\n%s%s", f, err, out.String(), errb.String())
			}
		})
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
