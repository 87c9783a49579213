package test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

type recorder struct{ cases []builtins.TestCase }

func (r *recorder) Emit(string, map[string]any)                        {}
func (r *recorder) TestCase(tc builtins.TestCase)                      { r.cases = append(r.cases, tc) }
func (r *recorder) Print(string)                                       {}
func (r *recorder) Console() io.Writer                                 { return io.Discard }
func (r *recorder) Artifact(string, io.Reader, string) (string, error) { return "", nil }

// A case records its attempt and message; its time runs from the attempt's
// start for the first case and from the previous case after that.
func TestCaseAttemptTimeMessage(t *testing.T) {
	rec := &recorder{}
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
	if len(rec.cases) != 2 {
		t.Fatalf("%d cases recorded, want 2", len(rec.cases))
	}
	link, disk := rec.cases[0], rec.cases[1]
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
