package builtins

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"go.starlark.net/starlark"
)

const envKey = "basalt.env"

// Recorder receives what a job produces. The result bundle implements it;
// it redacts secrets from everything it is given.
type Recorder interface {
	// Emit records one machine event (events.jsonl). Field values are
	// JSON-encodable.
	Emit(typ string, fields map[string]any)
	// TestCase records the result of one test case.
	TestCase(tc TestCase)
	// Print writes a line of the job log.
	Print(msg string)
	// Console is where raw console bytes are captured (console.log).
	Console() io.Writer
	// Artifact stores a file under artifacts/ and records it in result.json.
	// name is a relative slash path; it returns the bundle-relative path.
	Artifact(name string, r io.Reader, sha256hex string) (string, error)
}

// TestCase is the result of test.case(...).
type TestCase struct {
	Name        string   `json:"name"`
	Result      string   `json:"result"` // pass | fail | skip | unknown
	Measurement *float64 `json:"measurement,omitempty"`
	Units       string   `json:"units,omitempty"`
	Stage       string   `json:"stage,omitempty"`
	// Role is the role of a multi-device job the case was recorded for
	// (by a parallel() function named after it); "" otherwise.
	Role string `json:"role,omitempty"`
	// Attempt is the stage attempt that recorded the case (1 and up; 0 in
	// cleanup). The cases of a retried stage's failed attempts stay in
	// result.json; junit.xml and the summary count the last attempt's.
	Attempt int `json:"attempt,omitempty"`
	// DurationMS is the time since the attempt started or since the
	// previous case of that attempt, whichever is later.
	DurationMS int64 `json:"duration_ms"`
	// Message says why the case has its result (test.case(message=)).
	Message string `json:"message,omitempty"`
	// ConsoleOffset is how many console.log bytes were written when the
	// case was recorded (set by the recorder); junit.xml shows the console
	// before it for failed cases.
	ConsoleOffset int64 `json:"-"`
}

// Env is the job environment a builtin sees. One Env is attached to each
// Starlark thread; threads of one run share everything but Ctx and Stage.
type Env struct {
	// Ctx carries the deadline of the current stage or cleanup function.
	Ctx context.Context
	// Declaring is true while the job file's top-level code runs.
	Declaring bool
	// Stage is the name of the running stage ("" while declaring,
	// "cleanup:<fn>" in cleanup).
	Stage string
	// Attempt is the stage attempt running (1 and up; 0 while declaring
	// and in cleanup), Started when that attempt or cleanup function began.
	Attempt int
	Started time.Time
	// JobDir is the directory of the job file; artifacts named by relative
	// paths are resolved under it.
	JobDir string
	Rec    Recorder
	Log    *slog.Logger
	// DeviceName is the name of the device the job runs on: "" while
	// declaring, in `basalt check` and in a run without a device. The
	// device itself is runtime/lab's to hand out (lab.SetDevice).
	DeviceName string
	// backends holds each module's backend, set and read only through the
	// module's own typed accessors (see [Slot]). Copies made by
	// WithContext share it.
	backends *backends
	// Params are the job's resolved parameters.
	Params map[string]string
	// Facts are what stage functions see as ctx.device (never secrets).
	Facts map[string]any
	// Role is the role (job(devices = {ROLE: TYPE})) whose device this
	// env acts on: "" in a single-device job, and in the job's own env of
	// a multi-device one, which has no device and no backends of its own.
	Role string
	// roles holds the env of each role of a multi-device job, each with
	// its own device and backends table. Copies made by WithContext share it.
	roles *roleTable
	// Spawn, when set, makes a Starlark thread set up as the stage's own
	// (print, load, step limit), for builtins that run functions in
	// threads of their own (parallel). The pipeline sets it.
	Spawn func(name string) *starlark.Thread
}

// roleTable is the per-run table of role envs.
type roleTable struct {
	mu sync.RWMutex
	m  map[string]*Env
}

// SetRole makes re the env of role in the run of e: its device, facts,
// recorder and backends (set on re with each module's SetBackend). Set the
// roles before the run's threads start.
func (e *Env) SetRole(role string, re *Env) {
	if e.roles == nil {
		e.roles = &roleTable{m: map[string]*Env{}}
	}
	e.roles.mu.Lock()
	defer e.roles.mu.Unlock()
	e.roles.m[role] = re
}

// Roles returns the roles of a multi-device job, sorted; nil otherwise.
func (e *Env) Roles() []string {
	if e == nil || e.roles == nil {
		return nil
	}
	e.roles.mu.RLock()
	defer e.roles.mu.RUnlock()
	out := make([]string, 0, len(e.roles.m))
	for r := range e.roles.m {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// RoleEnv returns the env set for role with SetRole, as it was set.
func (e *Env) RoleEnv(role string) (*Env, bool) {
	if e == nil || e.roles == nil {
		return nil, false
	}
	e.roles.mu.RLock()
	defer e.roles.mu.RUnlock()
	re, ok := e.roles.m[role]
	return re, ok
}

// OnRole returns the env a builtin called on role's device runs in: the
// role's device, facts, recorder and backends under e's context, stage,
// attempt and threads.
func (e *Env) OnRole(role string) (*Env, bool) {
	re, ok := e.RoleEnv(role)
	if !ok {
		return nil, false
	}
	c := *re
	c.Ctx, c.Declaring, c.Stage, c.Attempt, c.Started = e.Ctx, e.Declaring, e.Stage, e.Attempt, e.Started
	c.Spawn, c.roles, c.Role = e.Spawn, e.roles, role
	return &c, true
}

// Attach makes env the environment of thread. Call it before the thread
// executes anything.
func Attach(thread *starlark.Thread, env *Env) { thread.SetLocal(envKey, env) }

// EnvOf returns the environment attached to thread, or nil.
func EnvOf(thread *starlark.Thread) *Env {
	if thread == nil {
		return nil
	}
	e, _ := thread.Local(envKey).(*Env)
	return e
}

// WithContext returns a copy of e running under ctx as stage.
func (e *Env) WithContext(ctx context.Context, stage string) *Env {
	c := *e
	c.Ctx = ctx
	c.Stage = stage
	return &c
}

// Emit records an event, adding the stage. It is safe on a nil Env or one
// without a recorder.
func (e *Env) Emit(typ string, fields map[string]any) {
	if e == nil || e.Rec == nil {
		return
	}
	if e.Stage != "" {
		if fields == nil {
			fields = map[string]any{}
		}
		if _, ok := fields["stage"]; !ok {
			fields["stage"] = e.Stage
		}
	}
	e.Rec.Emit(typ, fields)
}

// Logger returns the job's logger, never nil.
func (e *Env) Logger() *slog.Logger {
	if e == nil || e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

// backends is the per-run table behind every [Slot]: one value per slot,
// set while the run is wired and read by the builtins of its threads.
type backends struct {
	mu sync.RWMutex
	m  map[any]any
}

// Slot is the place of one module's backend in the job environment, in
// go.starlark.net's thread-local style (starlark.Thread.SetLocal): a
// module declares one, unexported, and exports typed accessors over it,
// so that no one but the module knows its key or asserts its type:
//
//	var backend = builtins.NewSlot[Controller]("ipmi")
//
//	// SetBackend makes c the ipmi backend of the run of env.
//	func SetBackend(env *builtins.Env, c Controller) { backend.Set(env, c) }
//
//	// BackendFrom returns the ipmi backend of the thread's run.
//	func BackendFrom(thread *starlark.Thread) (Controller, error) { return backend.From(thread) }
type Slot[T any] struct{ module string }

// NewSlot returns the backend slot of module ("ipmi"); the name is what
// the errors of [Slot.From] say.
func NewSlot[T any](module string) *Slot[T] { return &Slot[T]{module: module} }

// Set makes v the slot's value in the run of env: env and every copy
// WithContext makes of it afterwards see it. Set the backends before the
// run's threads start. A nil v clears the slot.
func (s *Slot[T]) Set(env *Env, v T) {
	if env.backends == nil {
		env.backends = &backends{m: map[any]any{}}
	}
	b := env.backends
	b.mu.Lock()
	defer b.mu.Unlock()
	if isNil(v) {
		delete(b.m, s)
		return
	}
	b.m[s] = v
}

// Get returns the slot's value in the run of env, and whether it has one.
func (s *Slot[T]) Get(env *Env) (T, bool) {
	var zero T
	if env == nil || env.backends == nil {
		return zero, false
	}
	env.backends.mu.RLock()
	defer env.backends.mu.RUnlock()
	v, ok := env.backends.m[s].(T)
	return v, ok
}

// From returns the slot's value in the run of the thread, or an error a
// builtin returns as it is: a job error when the run has no device (it
// needs --device, which no retry gives it), an infrastructure error when
// the device has no such backend.
func (s *Slot[T]) From(thread *starlark.Thread) (T, error) {
	env := EnvOf(thread)
	if v, ok := s.Get(env); ok {
		return v, nil
	}
	var zero T
	if roles := env.Roles(); len(roles) > 0 && env.DeviceName == "" {
		return zero, Job(fmt.Errorf("%s: this job has several devices (roles %s): name the role's, ctx.devices.ROLE.%s", s.module, strings.Join(roles, ", "), s.module))
	}
	if env == nil || env.DeviceName == "" {
		return zero, Job(fmt.Errorf("%s: this run has no device: run the job with --device NAME, a device file or sim", s.module))
	}
	return zero, Infra(fmt.Errorf("%s: no %s backend is configured for device %q", s.module, s.module, env.DeviceName))
}

// isNil reports whether v is nil: a nil interface, pointer, map, slice,
// channel or function.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch r := reflect.ValueOf(v); r.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.Interface:
		return r.IsNil()
	}
	return false
}
