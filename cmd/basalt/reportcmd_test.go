package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// copyBundle copies a bundle's files (not artifacts/) to a new directory.
func copyBundle(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	os.MkdirAll(dst, 0o755)
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644)
	}
	return dst
}

// basalt report prints the run's summary from its bundle — stages, failed
// tests with stage and message, the error, the console's last lines with
// time and stage — and --html rewrites report.html; damaged bundles are
// reported with what they lack, and bundles of another schema refused.
func TestReportCommand(t *testing.T) {
	pass, fail := simBundles(t)

	code, out := runBundle(t, "report", fail)
	if code != 4 {
		t.Fatalf("report FAIL exit %d, want 4, the run's own (a device error)\n%s", code, out)
	}
	for _, want := range []string{
		"job fails on device sim: error",
		"stage boot: pass",
		"stage check: error",
		"cleanup off: pass",
		"tests: 1 passed, 1 failed, 0 skipped",
		"fail: disk-present (stage check): no /dev/nosuchdisk",
		`basalt: device error in stage check at`,
		`sol.expect: no match for "watchdog ready"`,
		"console.log, last 15 lines:",
		"result: error",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report FAIL output lacks %q:\n%s", want, out)
		}
	}
	// The console tail has each line's time since the start and its stage.
	if !regexp.MustCompile(`(?m)^  \|\s+\+\d+\.\d{3}s check\s+checking the watchdog$`).MatchString(out) {
		t.Errorf("report FAIL console tail lacks the timed, staged line \"+N.NNNs check checking the watchdog\":\n%s", out)
	}
	code, out = runBundle(t, "report", pass)
	if code != 0 || !strings.Contains(out, "result: pass") || strings.Contains(out, "console.log, last") || strings.Contains(out, "warning") {
		t.Errorf("report PASS exit %d, want 0, the pass verdict, no console tail and no warning:\n%s", code, out)
	}

	// The sim BMC answers the lab context's SEL and SDR reads.
	if data, _ := os.ReadFile(filepath.Join(pass, "result.json")); !strings.Contains(string(data), `"sel_count_end": 0`) || strings.Contains(string(data), "sel at start") {
		t.Errorf("pass result.json lab_context.bmc = %s, want the sim BMC's empty SEL and no error", data[strings.Index(string(data), `"lab_context"`):])
	}

	// --html rewrites a report that is not there (an older bundle's).
	old := copyBundle(t, fail)
	os.Remove(filepath.Join(old, "report.html"))
	os.Remove(filepath.Join(old, "console.idx"))
	code, out = runBundle(t, "report", "--html", old)
	page, err := os.ReadFile(filepath.Join(old, "report.html"))
	if code != 0 || err != nil || !strings.Contains(string(page), "disk-present") || !strings.Contains(out, "wrote "+filepath.Join(old, "report.html")) {
		t.Errorf("report --html exit %d (%v), want 0 and report.html rewritten\n%s", code, err, out)
	}
	if !strings.Contains(out, "console.idx: missing") {
		t.Errorf("report --html of a bundle without console.idx did not say so:\n%s", out)
	}
	// Without console.idx, the events' console offsets still give stages.
	if _, out = runBundle(t, "report", old); !regexp.MustCompile(`check\s+checking the watchdog`).MatchString(out) {
		t.Errorf("report of a bundle without console.idx lost the console's stages:\n%s", out)
	}

	// A truncated bundle: events.jsonl cut in a line, junit.xml lost.
	cut := copyBundle(t, fail)
	ev, _ := os.ReadFile(filepath.Join(cut, "events.jsonl"))
	os.WriteFile(filepath.Join(cut, "events.jsonl"), ev[:len(ev)/2], 0o644)
	os.Remove(filepath.Join(cut, "junit.xml"))
	code, out = runBundle(t, "report", cut)
	if code != 4 {
		t.Errorf("report of a truncated bundle exit %d, want 4, the run's (report what is there)\n%s", code, out)
	}
	for _, want := range []string{"warning: bundle " + cut + ": events.jsonl: line ", "is cut short", "junit.xml: missing", "no job_end event", "fail: disk-present"} {
		if !strings.Contains(out, want) {
			t.Errorf("report of a truncated bundle lacks %q:\n%s", want, out)
		}
	}
	if code, _ = runBundle(t, "report", "--html", cut); code != 0 {
		t.Errorf("report --html of a truncated bundle exit %d, want 0", code)
	}
	if page, _ := os.ReadFile(filepath.Join(cut, "report.html")); !strings.Contains(string(page), "junit.xml: missing") {
		t.Error("report.html of a truncated bundle does not name what is missing")
	}

	// The run's exit code for each verdict: tests failed, infrastructure
	// error, canceled, and a run cut short by SIGKILL (status running).
	for _, tc := range []struct {
		from, to string
		code     int
	}{
		{`"status": "error"`, `"status": "fail"`, 1},
		{`"class": "device"`, `"class": "infra"`, 3},
		{`"status": "error"`, `"status": "canceled"`, 5},
		{`"status": "error"`, `"status": "running"`, 3},
	} {
		edited := copyBundle(t, fail)
		res, _ := os.ReadFile(filepath.Join(edited, "result.json"))
		if !strings.Contains(string(res), tc.from) {
			t.Fatalf("result.json lacks %s", tc.from)
		}
		os.WriteFile(filepath.Join(edited, "result.json"), []byte(strings.Replace(string(res), tc.from, tc.to, 1)), 0o644)
		if code, out := runBundle(t, "report", edited); code != tc.code {
			t.Errorf("report of a bundle with %s: exit %d, want %d\n%s", tc.to, code, tc.code, out)
		}
	}

	// Another schema version: refused, naming both.
	other := copyBundle(t, fail)
	res, _ := os.ReadFile(filepath.Join(other, "result.json"))
	os.WriteFile(filepath.Join(other, "result.json"), []byte(strings.Replace(string(res), `"schema_version": 1`, `"schema_version": 7`, 1)), 0o644)
	for _, args := range [][]string{{"report", other}, {"report", "--html", other}} {
		code, out = runBundle(t, args...)
		if code != 2 || !strings.Contains(out, "result.json is schema version 7; this basalt reads schema version 1") {
			t.Errorf("%q exit %d, want 2 naming versions 7 and 1:\n%s", args, code, out)
		}
	}
	// A hand-edited result.json that is no longer JSON.
	os.WriteFile(filepath.Join(other, "result.json"), res[:len(res)/3], 0o644)
	if code, out = runBundle(t, "report", other); code != 2 || !strings.Contains(out, "result.json") {
		t.Errorf("report of a broken result.json exit %d, want 2 naming result.json:\n%s", code, out)
	}
	// Not a bundle: a usage error.
	if code, out = runBundle(t, "report", t.TempDir()); code != 64 || !strings.Contains(out, "no result.json") {
		t.Errorf("report of an empty directory exit %d, want 64 (no result.json):\n%s", code, out)
	}
}
