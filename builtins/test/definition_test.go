package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/test/report"
	"github.com/google/go-cmp/cmp"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

func TestParseLAVADef(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "smoke.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseLAVADef("smoke.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := &lavaDef{
		Name:   "smoke-tests-basic",
		Params: []param{{"TESTS", "pwd, uname -a, ip a"}, {"SKIP_INSTALL", "False"}},
		Steps: []string{"cd ./automated/linux/smoke/", `./smoke.sh -s "${SKIP_INSTALL}" -t "${TESTS}"`,
			"../../utils/send-to-lava.sh ./output/result.txt"},
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("parseLAVADef(smoke.yaml) (-want +got):\n%s", diff)
	}
	got := d.script("/t/tree", []param{{"TESTS", "it's"}})
	wantScript := "#!/bin/sh\nTESTS='pwd, uname -a, ip a'; export TESTS\nSKIP_INSTALL='False'; export SKIP_INSTALL\n" +
		"TESTS='it'\\''s'; export TESTS\nTESTRUN_ID='smoke-tests-basic'; export TESTRUN_ID\ncd '/t/tree' || exit 127\n" +
		"cd ./automated/linux/smoke/\n./smoke.sh -s \"${SKIP_INSTALL}\" -t \"${TESTS}\"\n../../utils/send-to-lava.sh ./output/result.txt\n"
	if got != wantScript {
		t.Errorf("script() = %q, want %q", got, wantScript)
	}
}

func TestParseLAVADefValues(t *testing.T) {
	d, err := parseLAVADef("d.yaml", []byte("params:\n  A: true\n  B: 3\n  C: ~\ninstall:\n  steps:\n    - echo in\nrun:\n  steps:\n    - |\n      for i in 1 2; do\n        echo $i\n      done\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &lavaDef{Params: []param{{"A", "True"}, {"B", "3"}, {"C", "None"}}, Install: []string{"echo in"},
		Steps: []string{"for i in 1 2; do\n  echo $i\ndone\n"}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("parseLAVADef (-want +got):\n%s", diff)
	}
}

func TestParseLAVADefErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"run: [", "d.yaml: yaml: line 1:"},
		{"- a\n- b\n", "d.yaml: not a LAVA test definition"},
		{"metadata:\n  name: x\n", "d.yaml: no run: steps: list"},
		{"run:\n  steps: echo\n", "d.yaml:2: run: steps: want a list of commands"},
		{"run:\n  steps:\n    - echo ok\n    - echo a: b\n", "d.yaml:4: run: steps[1] is not a command string"},
		{"params:\n  - A\nrun:\n  steps: []\n", "d.yaml:2: params: want a mapping"},
		{"params:\n  bad-name: 1\nrun:\n  steps: []\n", `d.yaml:2: params: "bad-name" is not a shell variable name`},
		{"params:\n  A: [1]\nrun:\n  steps: []\n", "d.yaml:2: params: A: want a single value"},
	} {
		_, err := parseLAVADef("d.yaml", []byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("parseLAVADef(%q) = %v, want an error starting %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseLAVADef: no panic; a definition that parses has its steps as
// lines of its script, in order.
func FuzzParseLAVADef(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "smoke.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("params:\n  A: true\nrun:\n  steps:\n    - echo $A\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := parseLAVADef("f.yaml", in)
		if err != nil {
			return
		}
		s := d.script("/d", nil)
		at := 0
		for _, step := range append(append([]string{}, d.Install...), d.Steps...) {
			i := strings.Index(s[at:], step+"\n")
			if i < 0 {
				t.Fatalf("script %q lacks step %q after byte %d", s, step, at)
			}
			at += i + len(step)
		}
		for _, p := range d.Params {
			if !paramName.MatchString(p.Name) {
				t.Errorf("param %q is not a shell name", p.Name)
			}
		}
	})
}

// The helpers run under real busybox ash, and what they print is what
// test.parse(format="lava") reads: sets name their cases, a raise is a
// problem, --shell takes the command's status.
func TestShimsUnderBusybox(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (Debian package busybox-static)")
	}
	bin := t.TempDir()
	if out, err := exec.Command(bb, "--install", "-s", bin).CombinedOutput(); err != nil {
		t.Fatalf("busybox --install: %v: %s", err, out)
	}
	shims, err := filepath.Abs("shim")
	if err != nil {
		t.Fatal(err)
	}
	script := `lava-test-case boot --result pass --measurement 6.2 --units s
lava-test-set start net
lava-test-case ping --shell true
lava-test-case dns --shell false
lava-test-set stop
lava-test-case after --result SKIP
lava-test-case bad 2>/dev/null || echo "usage: $?"
lava-test-raise "disk gone" || echo "raise: $?"`
	cmd := exec.Command(bb, "sh", "-c", script)
	cmd.Env = []string{"PATH=" + shims + ":" + bin}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("busybox sh: %v: %s", err, out)
	}
	cases, problems := report.LAVA(string(out))
	var got []string
	for _, c := range cases {
		got = append(got, c.Name+"="+c.Result)
	}
	for _, p := range problems {
		got = append(got, p.Reason)
	}
	want := []string{"boot=pass", "net.ping=pass", "net.dns=fail", "after=skip", "lava-test-raise: disk gone"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LAVA(helpers' output) (-want +got):\n%s\noutput:\n%s", diff, out)
	}
	for _, line := range []string{"usage: 1", "raise: 1"} {
		if !strings.Contains(string(out), line+"\n") {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	if *cases[0].Measurement != 6.2 || cases[0].Units != "s" {
		t.Errorf("boot measurement = %v %q, want 6.2 s", *cases[0].Measurement, cases[0].Units)
	}
}

// Bad arguments are job errors naming the argument, before any repository
// is fetched or the target reached.
func TestRunDefinitionArgs(t *testing.T) {
	for _, tc := range []struct{ call, want string }{
		{`test.run_definition("r", format = "junit")`, `unknown format "junit"`},
		{`test.run_definition("r", params = {"bad-name": "x"})`, `params: key "bad-name" is not a shell variable name`},
		{`test.run_definition("r", params = {"A": [1]})`, "params: A: want a string, number or bool, got list"},
		{`test.run_definition("r", path = "../up")`, `path "../up": want a directory inside the tree`},
		{`test.run_definition("r", path = "/abs")`, `path "/abs": want a directory inside the tree`},
		{`test.run_definition("r", run = " ")`, "empty run"},
		{`test.run_definition("r", run = "../x.yaml")`, `run "../x.yaml" leaves the tree`},
		{`test.run_definition("r", timeout = 0)`, "timeout"},
		{`test.run_definition("r")`, "this run has no device"},
	} {
		thread := &starlark.Thread{Name: "t"}
		builtins.Attach(thread, &builtins.Env{Ctx: context.Background(), Rec: &builtinstest.Recorder{}})
		_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "t.star", tc.call, starlark.StringDict{"test": Table.Module()})
		if err == nil || builtins.ClassOf(err) != builtins.ClassJob || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s = %v (class %s), want a job error holding %q", tc.call, err, builtins.ClassOf(err), tc.want)
		}
	}
}
