package interp

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/test"
	"go.starlark.net/starlark"
)

func modules() starlark.StringDict {
	return starlark.StringDict{"test": test.Table.Module()}
}

func declare(t *testing.T, src string, params map[string]string) (*Plan, error) {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "job.star")
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return Declare(Options{File: f, Params: params, Modules: modules()})
}

func TestDeclareErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"twice", "job(name='a')\njob(name='b')\n", "job: declared twice"},
		{"bad name", "job(name='a/b')\n", "must be non-empty and hold no slash"},
		{"dup stage", "job(name='a')\ndef f(ctx):\n    pass\nstage('s', f)\nstage('s', f)\n", `stage: "s" declared twice`},
		{"param type", "job(name='a', params={'x': [1]})\n", `param "x" must be a string, int, float or bool`},
		{"artifact unknown", "job(name='a', artifacts=['k'])\n", `artifacts names "k"`},
		{"bad timeout", "job(name='a', timeout='soon')\n", `want a duration like`},
		{"retries", "job(name='a')\ndef f(ctx):\n    pass\nstage('s', f, retries=-1)\n", "retries must be between"},
		{"on_error", "job(name='a')\ndef f(ctx):\n    pass\nstage('s', f, on_error=3)\n", "on_error must be a function recover(ctx, error), got int"},
		{"global reassign", "x = 1\nx = 2\n", "cannot reassign global x"},
		{"action at top", "job(name='a')\ntest.case('x', 'pass')\n", "job.star:2:10: test.case: action builtins"},
		{"devices and type", "job(name='a', device_type='sim', devices={'s': 'sim'})\n", "give device_type or devices, not both"},
		{"devices empty", "job(name='a', devices={})\n", "devices is empty"},
		{"role name", "job(name='a', devices={'my-role': 'sim'})\n", `role "my-role" must be an identifier`},
		{"role type", "job(name='a', devices={'s': 1})\n", "devices must map role names to device type names"},
		{"role no type", "job(name='a', devices={'s': ''})\n", "role s has no device type"},
		{"devices health", "job(name='a', devices={'s': 'sim'}, health_check=True)\n", "a health check is for one device"},
		{"parallel at top", "job(name='a')\nparallel({})\n", "parallel: action builtins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := declare(t, tc.src, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Declare(%q) = %v, want error containing %q", tc.src, err, tc.want)
			}
			if c := builtins.ClassOf(err); c != builtins.ClassJob {
				t.Errorf("class = %s, want job", c)
			}
		})
	}
}

func TestParamsOverride(t *testing.T) {
	src := "job(name='a', params={'s': 'x', 'n': 1, 'f': 1.5, 'b': False})\ndef f(ctx):\n    pass\nstage('s', f)\n"
	p, err := declare(t, src, map[string]string{"s": "y", "n": "42", "f": "2.5", "b": "true"})
	if err != nil {
		t.Fatal(err)
	}
	got := p.ParamStrings()
	want := map[string]string{"s": "y", "n": "42", "f": "2.5", "b": "True"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("param %s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := declare(t, src, map[string]string{"n": "1x"}); err == nil {
		t.Error("--param n=1x accepted for an int param")
	}
}

func FuzzDeclare(f *testing.F) {
	for _, s := range []string{
		"job(name='a')\ndef f(ctx):\n    pass\nstage('s', f)\n",
		"load('@stdlib//power.star', 'x')\n",
		"job(name='a', timeout='1m', params={'k': 'v'})\n",
		"def f(\n",
		"while True:\n    pass\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		dir := t.TempDir()
		file := filepath.Join(dir, "job.star")
		os.WriteFile(file, []byte(src), 0o644)
		p, err := Declare(Options{File: file, Modules: modules(), MaxSteps: 100000})
		if err != nil {
			var ce *builtins.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Declare error %v (%T) has no class", err, err)
			}
			return
		}
		if p.Job.Name == "" || len(p.Stages) == 0 {
			t.Fatalf("Declare accepted a plan without job name or stages: %+v", p)
		}
	})
}

func TestRoles(t *testing.T) {
	const stage = "def f(ctx):\n    pass\nstage('s', f)\n"
	p, err := declare(t, "job(name='a', devices={'server': 'highbank', 'client': 'qemu'})\n"+stage, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Job.Roles(), ","); got != "client,server" || p.Job.Devices["client"] != "qemu" {
		t.Errorf("roles = %s, devices %v; want client,server with client qemu", got, p.Job.Devices)
	}
	p, err = declare(t, "job(name='a', device_type='sim')\n"+stage, nil)
	if err != nil || len(p.Job.Roles()) != 0 {
		t.Errorf("single-device job: roles %v, %v; want none", p.Job.Roles(), err)
	}
}
