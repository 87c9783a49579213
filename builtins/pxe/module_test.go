package pxe_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/lab"
	"go.starlark.net/starlark"
)

func TestStarlarkModule(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	jobDir, err := filepath.Abs("testdata/job")
	if err != nil {
		t.Fatal(err)
	}
	env := &builtins.Env{Ctx: context.Background(), Stage: "test", JobDir: jobDir}
	lab.SetDevice(env, &lab.Device{Name: "sim", MAC: testMAC, Type: &lab.DeviceType{Name: "highbank", KernelConsole: "ttyAMA0"}})
	pxe.SetBackend(env, s)
	thread := builtinstest.NewThread(t, env)
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
	// tftp_at(server, port, path) and http_get(url) fetch from what
	// pxe.serve returned, not from what the test knows of the server.
	tftpAt := starlark.NewBuiltin("tftp_at", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var server, path string
		var port int
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 3, &server, &port, &path); err != nil {
			return nil, err
		}
		data, err := get(tftpClient(t, net.JoinHostPort(server, strconv.Itoa(port)), 512), path)
		if err != nil {
			return nil, err
		}
		return starlark.String(data), nil
	})
	httpGet := starlark.NewBuiltin("http_get", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var url string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &url); err != nil {
			return nil, err
		}
		resp, err := http.Get(url)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return starlark.String(data), nil
	})
	builtinstest.ExecFile(t, thread, "testdata/pxe.star", nil, starlark.StringDict{
		"pxe": pxe.Table.Module(), "tftp_get": tftpGet, "tftp_at": tftpAt, "http_get": httpGet, "MAC": starlark.String(testMAC),
	})
}

func TestTableDocumented(t *testing.T) {
	if u := builtins.Undocumented(pxe.Table); len(u) != 0 {
		t.Errorf("Undocumented(pxe.Table) = %v, want none", u)
	}
}
