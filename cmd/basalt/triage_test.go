package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/runtime/bundle"
)

const knownIssues = `known_issue(id = "LAB-12", url = "https://tracker.example/LAB-12", title = "watchdog never ready on sim",
    error_class = "device", stage = "check", builtin = "sol.expect",
    error = "no match for \"watchdog ready\"", console = "checking the watchdog")
known_issue(id = "LAB-13", error_class = "test", test = "^disk-", console = "No such file")
known_issue(id = "LAB-14", error_class = "infra")
known_issue(id = "LAB-15", stage = "boot", console = "checking the watchdog")
`

// A lab's known-issues.star is matched at the end of a failed run: the
// matching issues are in result.json (triage), on stderr, in summary.md,
// report.html and junit.xml. A bad regexp in it is a lab error naming the
// file and line.
func TestTriageRun(t *testing.T) {
	t.Setenv("BASALT_LOCK_DIR", filepath.Join(t.TempDir(), "locks"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(t.TempDir(), "cache"))
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"fails.star": failingReportJob, "vmlinuz": "a kernel", "initrd.gz": "an initrd",
		"lab/lab.star": `lab(name = "t")`, "lab/known-issues.star": knownIssues,
		"bad/lab.star": `lab(name = "bad")`, "bad/known-issues.star": "known_issue(id = \"LAB-1\",\n    error = \"watchdog (ready\")\n"})
	out := filepath.Join(dir, "out")
	code, output := runBundle(t, "run", filepath.Join(dir, "fails.star"), "--lab", filepath.Join(dir, "lab"), "--device", "sim", "--out", out)
	if code != 4 {
		t.Fatalf("run exit %d, want 4\n%s", code, output)
	}
	data, _ := os.ReadFile(filepath.Join(out, "result.json"))
	var res bundle.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range res.Triage {
		ids = append(ids, k.ID+"@"+k.Failure)
	}
	if strings.Join(ids, " ") != "LAB-12@error LAB-13@test disk-present" {
		t.Errorf("result.json triage = %q, want LAB-12 for the error and LAB-13 for disk-present (LAB-15's console is check's, not boot's)", ids)
	}
	for file, want := range map[string]string{
		"stdout+stderr": "known issue LAB-12 (https://tracker.example/LAB-12): watchdog never ready on sim [matched error_class=device",
		"summary.md":    "- known issue [**LAB-12**](https://tracker.example/LAB-12) watchdog never ready on sim: error",
		"report.html":   `<b class="issue">LAB-13</b>`,
		"junit.xml":     `<error message="[known issue LAB-12] sol.expect: no match`,
	} {
		text := output
		if file != "stdout+stderr" {
			b, _ := os.ReadFile(filepath.Join(out, file))
			text = string(b)
		}
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q", file, want)
		}
	}
	// basalt report shows them too.
	if _, rep := runBundle(t, "report", out); !strings.Contains(rep, "known issue LAB-13 [matched error_class=test, test=/^disk-/") {
		t.Errorf("basalt report lacks the known issues:\n%s", rep)
	}

	out = filepath.Join(dir, "out-bad")
	code, output = runBundle(t, "run", filepath.Join(dir, "fails.star"), "--lab", filepath.Join(dir, "bad"), "--device", "sim", "--out", out)
	want := filepath.Join(dir, "bad", "known-issues.star") + `:2:5: known_issue LAB-1: error = "watchdog (ready": error parsing regexp: missing closing )`
	if code != 2 || !strings.Contains(output, want) {
		t.Errorf("run with a bad known-issues.star exit %d, want 2 and %q:\n%s", code, want, output)
	}
	if data, _ := os.ReadFile(filepath.Join(out, "result.json")); !strings.Contains(string(data), "known-issues.star:2:5") {
		t.Errorf("result.json of the run with a bad known-issues.star does not name it: %s", data)
	}
}

// basalt check reads the lab's known-issues.star as run does: a bad
// regexp, an unknown key or an id given twice is a lab error (exit 2)
// naming file:line:col; a good one passes.
func TestCheckKnownIssues(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.star")
	writeFiles(t, dir, map[string]string{"job.star": "job(name = \"j\")\n\ndef s(ctx):\n    pass\n\nstage(\"s\", s)\n",
		"good/lab.star": `lab(name = "good")`, "good/known-issues.star": knownIssues,
		"none/lab.star":   `lab(name = "none")`,
		"regexp/lab.star": `lab(name = "r")`, "regexp/known-issues.star": "known_issue(id = \"LAB-1\", stage = \"boot\",\n    console = \"oops (\")\n",
		"key/lab.star": `lab(name = "k")`, "key/known-issues.star": "known_issue(id = \"LAB-1\", stage = \"boot\")\nknown_issue(id = \"LAB-2\", stgae = \"boot\")\n",
		"twice/lab.star": `lab(name = "t")`, "twice/known-issues.star": "known_issue(id = \"LAB-1\", stage = \"boot\")\nknown_issue(id = \"LAB-1\", stage = \"smoke\")\n",
	})
	for _, tc := range []struct {
		lab  string
		code int
		want string
	}{
		{"good", 0, "ok"},
		{"none", 0, "ok"},
		{"regexp", 2, filepath.Join(dir, "regexp", "known-issues.star") + `:2:5: known_issue LAB-1: console = "oops (": error parsing regexp`},
		{"key", 2, filepath.Join(dir, "key", "known-issues.star") + `:2:12: known_issue: unexpected keyword argument "stgae" (did you mean stage?)`},
		{"twice", 2, filepath.Join(dir, "twice", "known-issues.star") + ":2:"},
	} {
		code, out := runBundle(t, "check", job, "--lab", filepath.Join(dir, tc.lab))
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("check --lab %s exit %d, want %d and %q:\n%s", tc.lab, code, tc.code, tc.want, out)
		}
	}
}
