package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/runtime/bundle"
)

// baselineBundle runs failingReportJob with a kernel warning echoed before
// its last check, with --baseline base, and returns its bundle.
func baselineBundle(t *testing.T, base string) string {
	t.Helper()
	dir := t.TempDir()
	job := strings.Replace(failingReportJob, `    target.run("echo checking the watchdog")`,
		`    target.run("echo WARNING: CPU: 0 PID: 1 at drivers/watchdog.c:12")
    target.run("echo checking the watchdog")`, 1)
	writeFiles(t, dir, map[string]string{"fails.star": job, "vmlinuz": "a kernel", "initrd.gz": "an initrd"})
	out := filepath.Join(dir, "warned")
	if code, o := runBundle(t, "run", filepath.Join(dir, "fails.star"), "--device", "sim", "--out", out, "--baseline", base); code != 4 {
		t.Fatalf("run --baseline exit %d, want 4 (the run's own verdict)\n%s", code, o)
	}
	return out
}

// basalt diff aligns two sim runs' consoles and says where they part,
// what warnings only one has, their stages and tests side by side; it
// exits 0 for the same, 1 for different bundles, 64 and 2 for bad ones;
// run --baseline puts the same comparison in result.json.
func TestDiffCommand(t *testing.T) {
	pass, fail := simBundles(t)

	code, out := runBundle(t, "diff", pass, fail)
	if code != 1 {
		t.Fatalf("diff PASS FAIL exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"a: " + pass + " (job highbank-deploy: pass",
		"b: " + fail + " (job fails: error",
		"test disk-present: a (none), b fail",
		"first divergence, stage ",
		"result: differ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff PASS FAIL output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^  deploy\s+pass \S+\s+-\s*$`).MatchString(out) || !regexp.MustCompile(`(?m)^  check\s+-\s+error \S+`).MatchString(out) {
		t.Errorf("diff PASS FAIL stage table lacks deploy (a only) and check (b only):\n%s", out)
	}

	// A bundle and its copy: the same, exit 0.
	if code, out = runBundle(t, "diff", fail, copyBundle(t, fail)); code != 0 || !strings.Contains(out, "result: same") || !strings.Contains(out, "consoles: the same after normalising") {
		t.Errorf("diff FAIL COPY exit %d, want 0 and the same:\n%s", code, out)
	}

	// --json: one object, as bundle.Diff.
	code, out = runBundle(t, "diff", "--json", pass, fail)
	var d bundle.Diff
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 1 {
		t.Fatalf("diff --json exit %d (%v), want 1 and JSON:\n%s", code, err, out)
	}
	if d.Same || d.FirstDivergence == nil || d.A.Status != "pass" || d.B.Status != "error" || len(d.Hunks) == 0 {
		t.Errorf("diff --json = same %v, divergence %+v, statuses %s/%s, %d hunks; want a divergence, pass/error, hunks", d.Same, d.FirstDivergence, d.A.Status, d.B.Status, len(d.Hunks))
	}

	// Bad bundles name what is missing.
	noCon := copyBundle(t, fail)
	os.Remove(filepath.Join(noCon, "console.log"))
	other := copyBundle(t, fail)
	res, _ := os.ReadFile(filepath.Join(other, "result.json"))
	os.WriteFile(filepath.Join(other, "result.json"), []byte(strings.Replace(string(res), `"schema_version": 1`, `"schema_version": 7`, 1)), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"diff", pass, t.TempDir()}, 64, "no result.json"},
		{[]string{"diff", pass, filepath.Join(t.TempDir(), "nowhere")}, 64, "no such file or directory"},
		{[]string{"diff", noCon, pass}, 2, "console.log is missing"},
		{[]string{"diff", pass, other}, 2, "result.json is schema version 7; this basalt reads schema version 1"},
		{[]string{"diff", pass}, 64, "accepts 2 arg"},
		{[]string{"run", filepath.Join("..", "..", "jobs", "highbank-deploy.star"), "--device", "sim", "--baseline", t.TempDir()}, 64, "--baseline: "},
		{[]string{"run", filepath.Join("..", "..", "jobs", "highbank-deploy.star"), "--device", "sim", "--baseline", noCon}, 2, "--baseline: bundle " + noCon + ": console.log is missing"},
	} {
		if code, out := runBundle(t, tc.args...); code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%q exit %d, want %d naming %q:\n%s", tc.args, code, tc.code, tc.want, out)
		}
	}

	// run --baseline: result.json baseline has the same comparison, the
	// summary says it, and the run's exit code is its own.
	warned := baselineBundle(t, fail)
	data, err := os.ReadFile(filepath.Join(warned, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r bundle.Result
	if err := json.Unmarshal(data, &r); err != nil || r.Baseline == nil {
		t.Fatalf("result.json baseline missing (%v): %s", err, r.BaselineError)
	}
	bl := r.Baseline
	if bl.Same || bl.A.Bundle != fail || bl.FirstDivergence == nil || bl.FirstDivergence.Stage != "check" || len(bl.Hunks) != 0 {
		t.Errorf("baseline = same %v, a %s, divergence %+v, %d hunks; want a divergence in check against %s, no hunks", bl.Same, bl.A.Bundle, bl.FirstDivergence, len(bl.Hunks), fail)
	}
	found := false
	for _, l := range bl.OnlyB {
		found = found || l.Text == "WARNING: CPU: 0 PID: 1 at drivers/watchdog.c:12"
	}
	if !found || len(bl.OnlyA) != 0 {
		t.Errorf("baseline only in b %+v, only in a %+v; want the warning in b only", bl.OnlyB, bl.OnlyA)
	}
	if len(bl.Stages) != 3 || bl.Stages[1].A == nil || bl.Stages[1].B == nil {
		t.Errorf("baseline stages = %+v, want boot, check and off on both sides", bl.Stages)
	}
	// basalt report says it too.
	_, rep := runBundle(t, "report", warned)
	for _, want := range []string{"baseline " + fail + ": differs (basalt diff " + fail + " " + warned + ")", "only in this run: console.log:", "WARNING: CPU: 0 PID: 1 at drivers/watchdog.c:12"} {
		if !strings.Contains(rep, want) {
			t.Errorf("basalt report of a --baseline run lacks %q:\n%s", want, rep)
		}
	}
}
