package bundle

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// A run whose boot stage failed in sol.expect with "SOL deactivated" on
// its console, and whose test disk-sda failed in stage smoke.
func triageBundle(t *testing.T) (*Bundle, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := Create(dir, Result{Job: "j", Stages: []Stage{{Name: "smoke"}, {Name: "boot"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Emit("stage_start", map[string]any{"stage": "smoke"})
	b.Console().Write([]byte("# ls /dev/sda\nls: /dev/sda: No such file or directory\n"))
	b.TestCase(builtins.TestCase{Name: "disk-sda", Result: "fail", Stage: "smoke", Message: "no disk"})
	b.Emit("stage_end", map[string]any{"stage": "smoke", "outcome": "pass"})
	b.Emit("stage_start", map[string]any{"stage": "boot"})
	b.Console().Write([]byte("U-Boot 2024.01\n[SOL] ipmi: SOL deactivated\n"))
	b.Emit("call", map[string]any{"builtin": "sol.expect", "stage": "boot", "outcome": "error", "error": "sol.expect: no match for \"login:\""})
	b.Emit("stage_end", map[string]any{"stage": "boot", "outcome": "error"})
	b.Update(func(r *Result) {
		r.Status = "error"
		r.Error = &ErrorInfo{Class: "device", Stage: "boot", Message: `sol.expect: no match for "login:" after 30s`}
	})
	return b, dir
}

func TestTriage(t *testing.T) {
	re := regexp.MustCompile
	issues := []lab.KnownIssue{
		{ID: "ALL-KEYS", URL: "https://t/1", ErrorClass: "device", Stage: "boot", Builtin: "sol.expect", Error: re(`no match for "login:"`), Console: re(`SOL deactivated`)},
		{ID: "OTHER-STAGE-CONSOLE", Stage: "boot", Console: re(`No such file`)}, // that line is smoke's
		{ID: "WRONG-BUILTIN", Builtin: "target.run", ErrorClass: "device"},
		{ID: "WRONG-CLASS", ErrorClass: "infra"},
		{ID: "ERROR-MISMATCH", Error: re(`kernel panic`)},
		{ID: "TEST", ErrorClass: "test", Test: re(`^disk-`), Console: re(`No such file`)},
		{ID: "TEST-BY-MESSAGE", Stage: "smoke", Error: re(`no disk`)},
	}
	b, dir := triageBundle(t)
	got := b.Triage(issues)
	var ids []string
	for _, k := range got {
		ids = append(ids, k.ID+"@"+k.Failure)
	}
	if want := []string{"ALL-KEYS@error", "TEST@test disk-sda", "TEST-BY-MESSAGE@test disk-sda"}; !slices.Equal(ids, want) {
		t.Errorf("Triage = %q, want %q", ids, want)
	}
	if want := []string{"error_class=device", "stage=boot", "builtin=sol.expect", `error=/no match for "login:"/`, "console=/SOL deactivated/"}; !slices.Equal(got[0].Matched, want) {
		t.Errorf("Triage()[0].Matched = %q, want %q", got[0].Matched, want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	res, _ := os.ReadFile(filepath.Join(dir, "result.json"))
	junit, _ := os.ReadFile(filepath.Join(dir, "junit.xml"))
	page, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for name, want := range map[string]string{
		"result.json": `"id": "ALL-KEYS"`,
		"junit.xml":   `message="[known issue ALL-KEYS] sol.expect`,
		"report.html": `<b class="issue">ALL-KEYS</b>`,
	} {
		data := map[string][]byte{"result.json": res, "junit.xml": junit, "report.html": page}[name]
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}
	if !strings.Contains(string(junit), `message="[known issue TEST, known issue TEST-BY-MESSAGE] no disk"`) {
		t.Errorf("junit.xml's failed case does not name its known issues:\n%s", junit)
	}

	// A passing run is not triaged.
	b2, _ := triageBundle(t)
	b2.Update(func(r *Result) { r.Status = "pass"; r.Error = nil })
	if got := b2.Triage(issues); got != nil {
		t.Errorf("Triage(passing run) = %v, want none", got)
	}
	b2.Close()
}

// lab_context counts the console's gaps and retypes, with when, where and
// why, and the protocol retries; report.html shows them.
func TestLabContext(t *testing.T) {
	dir := t.TempDir()
	b, err := Create(dir, Result{Job: "j"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Emit("console_connect", map[string]any{"attempts": 3})
	b.Emit("stage_start", map[string]any{"stage": "boot"})
	b.Console().Write([]byte("booting\n"))
	b.Emit("ipmi", map[string]any{"command": "chassis control (power on)", "attempts": 2})
	b.Emit("ipmi", map[string]any{"command": "get device id", "attempts": 1})
	b.Emit("console_gap", map[string]any{"duration_ms": 1500, "error": "SOL session ended", "attempts": 2})
	b.Emit("target_retype", map[string]any{"reason": "console connection lost while typing", "retype": 1})
	b.Emit("send_retry", map[string]any{"length": 5, "attempt": 2})
	b.Emit("stage_retry", map[string]any{"stage": "boot"})
	b.Update(func(r *Result) { r.Status = "pass" })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	rd, err := ReadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	lc := rd.Result.LabContext
	if lc == nil {
		t.Fatal("result.json has no lab_context")
	}
	if lc.GapCount != 1 || len(lc.ConsoleGaps) != 1 || lc.ConsoleGaps[0].Stage != "boot" || lc.ConsoleGaps[0].ConsoleOffset != 8 ||
		lc.ConsoleGaps[0].DurationMS != 1500 || lc.ConsoleGaps[0].Reason != "SOL session ended" {
		t.Errorf("lab_context console gaps = %d %+v, want one in boot at offset 8, 1500 ms, SOL session ended", lc.GapCount, lc.ConsoleGaps)
	}
	if lc.RetypeCount != 1 || lc.Retypes[0].Reason != "console connection lost while typing" {
		t.Errorf("lab_context retypes = %d %+v, want one", lc.RetypeCount, lc.Retypes)
	}
	want := map[string]int{"ipmi": 1, "console_connect": 2, "sol_send": 1, "stage": 1}
	for k, v := range want {
		if lc.Retries[k] != v {
			t.Errorf("lab_context retries[%s] = %d, want %d (all: %v)", k, lc.Retries[k], v, lc.Retries)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(page), `<span class="gaps">1</span> console gaps`) || !strings.Contains(string(page), "SOL session ended") {
		t.Error("report.html does not show the lab context")
	}
}
