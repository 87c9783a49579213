package pxe_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/lab"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarktest"
	"go.starlark.net/syntax"
)

func TestStarlarkModule(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	jobDir, err := filepath.Abs("testdata/job")
	if err != nil {
		t.Fatal(err)
	}
	thread := &starlark.Thread{Name: "pxe.star"}
	starlarktest.SetReporter(thread, t)
	builtins.Attach(thread, &builtins.Env{
		Ctx:      context.Background(),
		Stage:    "test",
		JobDir:   jobDir,
		Device:   &lab.Device{Name: "sim", MAC: testMAC, Type: &lab.DeviceType{Name: "highbank", KernelConsole: "ttyAMA0"}},
		Backends: map[string]any{"pxe": s},
	})
	assert, err := starlarktest.LoadAssertModule()
	if err != nil {
		t.Fatal(err)
	}
	tftpGet := starlark.NewBuiltin("tftp_get", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &name); err != nil {
			return nil, err
		}
		data, err := get(tftpClient(t, s.TFTPAddr(), 1468), name)
		if err != nil {
			return nil, err
		}
		return starlark.String(data), nil
	})
	predeclared := starlark.StringDict{
		"pxe": pxe.Table.Module(), "assert": assert["assert"], "tftp_get": tftpGet, "MAC": starlark.String(testMAC),
	}
	if _, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "testdata/pxe.star", nil, predeclared); err != nil {
		if ee, ok := err.(*starlark.EvalError); ok {
			t.Fatal(ee.Backtrace())
		}
		t.Fatal(err)
	}
}

func TestTableDocumented(t *testing.T) {
	if u := builtins.Undocumented(pxe.Table); len(u) != 0 {
		t.Errorf("Undocumented(pxe.Table) = %v, want none", u)
	}
}
