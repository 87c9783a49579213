package builtins

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/basalt-lab/basalt/runtime/lab"
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
	Device *lab.Device // nil while declaring and in `basalt check`
	Lab    *lab.Lab
	// Backends holds each module's backend by module name ("ipmi", "sol",
	// "pxe", "target"). Only cmd/ wires concrete backends.
	Backends map[string]any
	// Params are the job's resolved parameters.
	Params map[string]string
	// Facts are what stage functions see as ctx.device (never secrets).
	Facts map[string]any
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

// Backend returns the backend registered for module, or an infrastructure
// error saying the device has none.
func (e *Env) Backend(module string) (any, error) {
	if e != nil {
		if b, ok := e.Backends[module]; ok && b != nil {
			return b, nil
		}
	}
	if e == nil || e.Device == nil {
		// A run without --device: the job needs a device it was not given,
		// which no retry fixes.
		return nil, Job(fmt.Errorf("%s: this run has no device: run the job with --device NAME, a device file or sim", module))
	}
	return nil, Infra(fmt.Errorf("%s: no %s backend is configured for device %q", module, module, e.Device.Name))
}

// BackendOf returns the typed backend of module for the thread's job.
func BackendOf[T any](thread *starlark.Thread, module string) (T, error) {
	var zero T
	b, err := EnvOf(thread).Backend(module)
	if err != nil {
		return zero, err
	}
	t, ok := b.(T)
	if !ok {
		return zero, Infra(fmt.Errorf("%s: backend %T does not implement %T", module, b, zero))
	}
	return t, nil
}
