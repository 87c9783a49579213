package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// A case records its attempt and message; its time runs from the attempt's
// start for the first case and from the previous case after that.
func TestCaseAttemptTimeMessage(t *testing.T) {
	rec := &builtinstest.Recorder{}
	thread := &starlark.Thread{Name: "t"}
	started := time.Now().Add(-90 * time.Second) // the attempt began 90s ago
	builtins.Attach(thread, &builtins.Env{Ctx: context.Background(), Stage: "boot", Attempt: 2, Started: started, Rec: rec})
	src := `
test.case("link", "fail", message = "no carrier on eth0")
test.case("disk", True)
`
	if _, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "t.star", src, starlark.StringDict{"test": Table.Module()}); err != nil {
		t.Fatal(err)
	}
	if len(rec.Cases()) != 2 {
		t.Fatalf("%d cases recorded, want 2", len(rec.Cases()))
	}
	link, disk := rec.Cases()[0], rec.Cases()[1]
	if link.Attempt != 2 || link.Stage != "boot" || link.Message != "no carrier on eth0" {
		t.Errorf("link = %+v, want attempt 2 of stage boot with its message", link)
	}
	if link.DurationMS < 90_000 {
		t.Errorf("link duration_ms = %d, want >= 90000 (since the attempt began)", link.DurationMS)
	}
	if disk.DurationMS >= 90_000 {
		t.Errorf("disk duration_ms = %d, want the time since the previous case, not since the attempt began", disk.DurationMS)
	}
	_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "t.star", `test.case("x", "fail", message = 3)`, starlark.StringDict{"test": Table.Module()})
	if err == nil || builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("test.case(message=3) = %v, want a job error", err)
	}
}

// test.parse records every case it parsed, as test.case would, and an event
// with its problems.
func TestParse(t *testing.T) {
	rec := &builtinstest.Recorder{}
	thread := builtinstest.NewThread(t, &builtins.Env{Ctx: context.Background(), Stage: "s", Attempt: 1, Rec: rec})
	builtinstest.ExecFile(t, thread, "testdata/parse.star", nil, starlark.StringDict{"test": Table.Module()})
	var got []string
	for _, c := range rec.Cases() {
		s := c.Name + "=" + c.Result
		if c.Measurement != nil {
			s += fmt.Sprintf(" %g %s", *c.Measurement, c.Units)
		}
		got = append(got, s)
	}
	want := []string{"smoke.boot=pass", "smoke.net=fail", "outer.inner=pass", "rate=pass 12.5 MB/s"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recorded cases = %q, want %q", got, want)
	}
	evs := rec.Events("test_parse")
	if len(evs) != 3 || fmt.Sprint(evs[0]["problems"]) != `[line 5: not TAP: "noise" line 2: planned 3 tests, got 2: "1..3"]` {
		t.Errorf("test_parse events = %v, want 3, the first with its 2 problems", evs)
	}
}
