package builtins_test

import (
	"context"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
)

type fakeBackend struct{ name string }

// Each module's slot holds its own typed value: another slot of the same
// type does not see it, copies made by WithContext share it, and the
// errors of a slot without a value say whose fault that is.
func TestSlot(t *testing.T) {
	a := builtins.NewSlot[*fakeBackend]("a")
	b := builtins.NewSlot[*fakeBackend]("b")
	env := &builtins.Env{DeviceName: "dev1"}
	a.Set(env, &fakeBackend{"one"})
	stage := env.WithContext(context.Background(), "s")
	thread := &starlark.Thread{}
	builtins.Attach(thread, stage)

	if v, err := a.From(thread); err != nil || v.name != "one" {
		t.Errorf("a.From(stage thread) = %v, %v; want one", v, err)
	}
	if v, err := b.From(thread); err == nil || builtins.ClassOf(err) != builtins.ClassInfra ||
		!strings.Contains(err.Error(), `b: no b backend is configured for device "dev1"`) {
		t.Errorf("b.From(stage thread) = %v, %v; want an infrastructure error naming b and dev1", v, err)
	}
	a.Set(env, nil)
	if v, ok := a.Get(stage); ok {
		t.Errorf("a.Get after Set(nil) = %v, true; want none", v)
	}
	noDevice := &starlark.Thread{}
	builtins.Attach(noDevice, &builtins.Env{})
	if _, err := a.From(noDevice); builtins.ClassOf(err) != builtins.ClassJob || !strings.Contains(err.Error(), "a: this run has no device") {
		t.Errorf("a.From(no device) = %v, want a job error saying the run has no device", err)
	}
	if _, err := a.From(&starlark.Thread{}); builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("a.From(thread without env) = %v, want a job error", err)
	}
}
