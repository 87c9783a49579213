package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/google/go-cmp/cmp"
)

// runDir runs src like run and also returns the bundle's directory.
func runDir(t *testing.T, src string) (Outcome, bundle.Result, string) {
	t.Helper()
	plan, err := interp.Declare(interp.Options{File: "job.star", Src: []byte(src), Modules: modules()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := bundle.Create(dir, bundle.Result{Job: plan.Job.Name}, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := (&Runner{Plan: plan, Env: &builtins.Env{Rec: b}, Bundle: b}).Run(context.Background())
	b.Close()
	return out, b.Result(), dir
}

func events(t *testing.T, dir, typ string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["type"] == typ {
			out = append(out, ev)
		}
	}
	return out
}

// The recoveries and ctx.state of testdata/recover.star reach result.json
// and events.jsonl.
func TestRecoveryRecorded(t *testing.T) {
	yes := true
	src, err := os.ReadFile("testdata/recover.star")
	if err != nil {
		t.Fatal(err)
	}
	out, res := run(t, "recover.star", src)
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	want := []bundle.Recovery{
		{By: "try_call", Stage: "one", Attempt: 1, Class: "infra", Message: "lab.fail: bmc gone", Builtin: "lab.fail", Pos: "recover.star:8:17", At: "recover.star:8:17"},
		{By: "try_call", Stage: "one", Attempt: 1, Class: "device", Message: "lab.fail: no login prompt", Builtin: "lab.fail", Pos: "recover.star:5:13", At: "recover.star:19:17"},
		{By: "on_error", Stage: "flaky", Attempt: 1, Class: "device", Message: "lab.fail: attempt 1: no prompt", Builtin: "lab.fail", Pos: "recover.star:40:17", Outcome: "ok", Retry: &yes},
		{By: "on_error", Stage: "flaky", Attempt: 2, Class: "device", Message: "lab.fail: attempt 2: no prompt", Builtin: "lab.fail", Pos: "recover.star:40:17", Outcome: "ok", Retry: &yes},
	}
	if d := cmp.Diff(want, res.Recoveries); d != "" {
		t.Errorf("result.json recoveries (-want +got):\n%s", d)
	}
	var state map[string]any
	if err := json.Unmarshal(res.State, &state); err != nil {
		t.Fatalf("result.json state %s: %v", res.State, err)
	}
	wantState := map[string]any{"seen": []any{"one"}, "attempts": 3.0, "recovered": []any{1.0, 2.0}, "cleaned": true}
	if d := cmp.Diff(wantState, state); d != "" {
		t.Errorf("result.json state (-want +got):\n%s", d)
	}
	if res.Stages[1].Attempts != 3 || res.Stages[1].Status != "pass" {
		t.Errorf("stage flaky = %+v, want pass after 3 attempts", res.Stages[1])
	}
}

func TestRecoveryEvents(t *testing.T) {
	src := `job(name = "x")
def s(ctx):
    r = try_call(lab.fail, "device", "gone")
    if ctx.attempt == 1:
        lab.fail("infra", "bmc")
def fix(ctx, e):
    pass
stage("s", s, retries = 1, on_error = fix)
`
	out, _, dir := runDir(t, src)
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	var got []string
	for _, ev := range events(t, dir, "recovered") {
		got = append(got, ev["by"].(string)+" "+ev["class"].(string)+" "+ev["builtin"].(string))
	}
	want := []string{"try_call device lab.fail", "on_error infra lab.fail", "try_call device lab.fail"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("recovered events (-want +got):\n%s", d)
	}
}

func TestRecoveryFailures(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		class     builtins.Class
		msg       string // in the outcome's message
	}{
		{"job error not caught", `job(name = "x")
def s(ctx):
    try_call(lab.fail, "job", "a bug")
stage("s", s)
`, builtins.ClassJob, "lab.fail: a bug"},
		{"on_error fails", `job(name = "x")
def s(ctx):
    lab.fail("device", "dead")
def fix(ctx, e):
    lab.fail("infra", "pdu gone")
stage("s", s, retries = 3, on_error = fix)
`, builtins.ClassInfra, "lab.fail: pdu gone"},
		{"stage deadline not caught", `job(name = "x")
def s(ctx):
    r = try_call(lab.wait)
    fail("try_call returned %s after the stage deadline" % r)
stage("s", s, timeout = "200ms")
`, builtins.ClassDevice, "deadline exceeded"},
		{"state not JSON", `job(name = "x")
def s(ctx):
    ctx.state["ok"] = 1
    ctx.state["f"] = lambda: 1
stage("s", s)
`, builtins.ClassJob, `ctx.state["f"]: save state: `},
		{"state key not a string", `job(name = "x")
def s(ctx):
    ctx.state[1] = 1
stage("s", s)
`, builtins.ClassJob, `ctx.state: save state: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, res, _ := runDir(t, tc.src)
			if out.Class != tc.class || out.Info == nil || !strings.Contains(out.Info.Message, tc.msg) {
				t.Fatalf("outcome = %s %+v, want %s containing %q", out.Class, out.Info, tc.class, tc.msg)
			}
			if len(res.Stages) > 0 && res.Stages[0].Attempts != 1 {
				t.Errorf("attempts = %d, want 1 (no retry after on_error failed)", res.Stages[0].Attempts)
			}
		})
	}
}

// Cleanup functions see the stages' outcome; ctx.state survives a failure.
func TestCleanupOutcome(t *testing.T) {
	src := `job(name = "x")
def s(ctx):
    ctx.state["booted"] = False
    lab.fail("device", "no prompt")
def c(ctx):
    o = ctx.outcome
    if (o.status, o.error_class, o.stage, o.message, ctx.state["booted"]) != ("error", "device", "s", "lab.fail: no prompt", False):
        fail("ctx.outcome = %s" % o)
    ctx.state["cleaned"] = True
stage("s", s)
cleanup(c)
`
	out, res, _ := runDir(t, src)
	if out.Class != builtins.ClassDevice {
		t.Errorf("outcome class = %s, want device", out.Class)
	}
	if res.Cleanup[0].Status != "pass" {
		t.Errorf("cleanup = %+v, want pass", res.Cleanup[0])
	}
	if string(res.State) != `{"booted":false,"cleaned":true}` {
		t.Errorf("result.json state = %s", res.State)
	}
}

// on_error runs after every failed attempt, the last one too, and says
// whether a retry followed; the stage still fails with its own error, whatever
// recover returns. It is not run after a job error.
func TestOnErrorLastAttempt(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		retries   []bool // the retry field of each on_error recovery
		class     builtins.Class
		msg       string
	}{
		{"no retries", `job(name = "x")
def s(ctx):
    lab.fail("device", "update did not boot")
def rollback(ctx, e):
    ctx.state["rolled_back"] = e.message
    return True
stage("s", s, on_error = rollback)
`, []bool{false}, builtins.ClassDevice, "lab.fail: update did not boot"},
		{"after the last retry", `job(name = "x")
def s(ctx):
    lab.fail("infra", "attempt %d" % ctx.attempt)
def fix(ctx, e):
    ctx.state["rolled_back"] = e.message
stage("s", s, retries = 2, on_error = fix)
`, []bool{true, true, false}, builtins.ClassInfra, "lab.fail: attempt 3"},
		{"not after a job error", `job(name = "x")
def s(ctx):
    fail("a bug")
def fix(ctx, e):
    ctx.state["rolled_back"] = "never"
stage("s", s, retries = 2, on_error = fix)
`, nil, builtins.ClassJob, "a bug"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, res, dir := runDir(t, tc.src)
			if out.Class != tc.class || out.Info == nil || !strings.Contains(out.Info.Message, tc.msg) {
				t.Fatalf("outcome = %s %+v, want %s containing %q", out.Class, out.Info, tc.class, tc.msg)
			}
			var got []bool
			for _, r := range res.Recoveries {
				if r.By != "on_error" || r.Outcome != "ok" || r.Retry == nil {
					t.Fatalf("result.json recovery = %+v, want by on_error, outcome ok, retry set", r)
				}
				got = append(got, *r.Retry)
			}
			if d := cmp.Diff(tc.retries, got); d != "" {
				t.Errorf("result.json recoveries' retry (-want +got):\n%s", d)
			}
			var evs []bool
			for _, ev := range events(t, dir, "recovered") {
				evs = append(evs, ev["retry"].(bool))
			}
			if d := cmp.Diff(tc.retries, evs); d != "" {
				t.Errorf("recovered events' retry (-want +got):\n%s", d)
			}
			if tc.retries != nil && !strings.Contains(string(res.State), "rolled_back") {
				t.Errorf("result.json state = %s, want rolled_back set by on_error", res.State)
			}
			if tc.retries == nil && len(res.State) > 0 && strings.Contains(string(res.State), "rolled_back") {
				t.Errorf("result.json state = %s: on_error ran after a job error", res.State)
			}
			if res.Stages[0].Status != "error" {
				t.Errorf("stage status = %s, want error (on_error cannot un-fail it)", res.Stages[0].Status)
			}
		})
	}
}
