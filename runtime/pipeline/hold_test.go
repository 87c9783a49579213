package pipeline

import (
	"context"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
)

// Hold runs after the stages and before any cleanup, told how the stages
// went: a failed test, an error, or a pass.
func TestHoldBeforeCleanup(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{`test.case("a", "pass")`, StatusPass},
		{`test.case("a", "fail")`, StatusFail},
		{`fail("boom")`, StatusError},
	} {
		src := "job(name = \"h\")\ndef one(ctx):\n    " + tc.body + "\ndef clean(ctx):\n    print(\"cleanup\")\nstage(\"one\", one)\ncleanup(clean)\n"
		plan, err := interp.Declare(interp.Options{File: "h.star", Src: []byte(src), Modules: modules()})
		if err != nil {
			t.Fatal(err)
		}
		b, err := bundle.Create(t.TempDir(), bundle.Result{Job: "h"}, bundle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var got string
		var cleanupBefore bool
		r := &Runner{Plan: plan, Env: &builtins.Env{Rec: b, JobDir: plan.Dir}, Bundle: b, Hold: func(o Outcome) {
			got = o.Status
			cleanupBefore = b.Result().Cleanup[0].Status != "pending"
		}}
		r.Run(context.Background())
		b.Close()
		if got != tc.want || cleanupBefore {
			t.Errorf("Hold after %s: status %q (cleanup already ran: %v), want %q before the cleanup", tc.body, got, cleanupBefore, tc.want)
		}
	}
}
