package builtins_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"go.starlark.net/starlark"
)

// parallelTable predeclares parallel, sync, send and wait as job files
// see them (runtime/interp's Declarations lists the same entries).
var parallelTable = &builtins.Table{Members: []builtins.Builtin{
	{Name: "parallel", Params: builtins.ParallelParams, Doc: builtins.ParallelDoc, Action: true, Fn: builtins.Parallel},
	{Name: "sync", Params: builtins.SyncParams, Doc: builtins.SyncDoc, Action: true, Fn: builtins.Sync},
	{Name: "send", Params: builtins.SendParams, Doc: builtins.SendDoc, Action: true, Fn: builtins.Send},
	{Name: "wait", Params: builtins.WaitParams, Doc: builtins.WaitDoc, Action: true, Fn: builtins.Wait},
}}

func parallelThread(t *testing.T) *starlark.Thread {
	env := &builtins.Env{Spawn: func(name string) *starlark.Thread { return &starlark.Thread{Name: name} }}
	return builtinstest.NewThread(t, env)
}

func TestParallelStar(t *testing.T) {
	builtinstest.ExecFile(t, parallelThread(t), "testdata/parallel.star", nil, parallelTable.Values())
}

func TestParallelParams(t *testing.T) {
	if errs := builtins.CheckParams(parallelTable); len(errs) > 0 {
		t.Error(errors.Join(errs...))
	}
}

// The first failure cancels the others and decides the class; a wait
// that times out is a device error naming the message and who did not
// send it.
func TestParallelErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		class     builtins.Class
		msg       string
	}{
		{"first-fails", `parallel({"a": lambda: wait("never"), "b": lambda: fail("boom")})`, builtins.ClassJob, "parallel: b: "},
		{"wait-timeout", `parallel({"a": lambda: wait("m", timeout = 0.05), "b": lambda: wait("n")})`, builtins.ClassDevice,
			`wait("m") in a: not sent: b did not send it`},
		{"gone", `parallel({"a": lambda: wait("m"), "b": lambda: None})`, builtins.ClassDevice, `wait("m") in a: not sent: b returned without sending it`},
		{"barrier-gone", `parallel({"a": lambda: sync("s"), "b": lambda: None})`, builtins.ClassJob, `sync("s") in a: b returned without reaching it`},
		{"sync-outside", `sync("s")`, builtins.ClassJob, "sync: only inside a function that parallel() runs"},
		{"wait-outside", `wait("s")`, builtins.ClassJob, "wait: only inside a function that parallel() runs"},
		{"send-twice", `parallel({"a": lambda: send("m", 1), "b": lambda: send("m", 2) if wait("m") else None})`, builtins.ClassJob, `send("m") in b: already sent by a`},
		{"not-json", `parallel({"a": lambda: send("m", lambda: 1)})`, builtins.ClassJob, `send("m"): value:`},
		{"not-fn", `parallel({"a": 1})`, builtins.ClassJob, "parallel: a: want a function, got int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := builtinstest.Exec(parallelThread(t), tc.name+".star", tc.src, parallelTable.Values())
			if err == nil {
				t.Fatalf("%s: no error; want %q", tc.src, tc.msg)
			}
			if c := builtins.ClassOf(err); c != tc.class || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: %s error %q; want %s error holding %q", tc.src, c, err, tc.class, tc.msg)
			}
		})
	}
}
