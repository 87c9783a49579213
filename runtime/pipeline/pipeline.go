// Package pipeline executes a declared Plan: stages in order under one
// deadline that flows down (job ⊇ stage ⊇ builtin timeout=), retries after
// infrastructure and device errors within the job's remaining budget, and
// cleanup functions that always run, each within its own budget.
//
// Cancellation: the run's context is cancelled by SIGINT/SIGTERM. Each stage
// attempt runs in a Starlark thread of its own; context.AfterFunc cancels the
// thread when its deadline passes, and blocking builtins select on the same
// context. Cleanup runs under a fresh context (the signal does not cancel it)
// that the abort context — a second SIGINT — ends early.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Status values of a job.
const (
	StatusPass     = "pass"
	StatusFail     = "fail"
	StatusError    = "error"
	StatusCanceled = "canceled"
)

// Exit codes (DESIGN.md).
const (
	ExitPass     = 0
	ExitFail     = 1
	ExitJob      = 2
	ExitInfra    = 3
	ExitDevice   = 4
	ExitCanceled = 5
	ExitUsage    = 64
)

// ExitCode maps a job's status and error class to the process exit code.
func ExitCode(status string, class builtins.Class) int {
	switch status {
	case StatusPass:
		return ExitPass
	case StatusFail:
		return ExitFail
	case StatusCanceled:
		return ExitCanceled
	}
	switch class {
	case builtins.ClassInfra:
		return ExitInfra
	case builtins.ClassDevice:
		return ExitDevice
	case builtins.ClassCanceled:
		return ExitCanceled
	}
	return ExitJob
}

// Runner executes one plan.
type Runner struct {
	Plan   *interp.Plan
	Env    *builtins.Env // base environment; each thread gets a copy
	Bundle *bundle.Bundle
	Log    *slog.Logger
	// Abort ends cleanup early (a second SIGINT). Nil: never.
	Abort context.Context
	// Progress, if set, is told when stages start and end (terminal output).
	Progress func(ev ProgressEvent)
	// Start is when the job began; its deadline is Start + the job's
	// timeout. The caller sets it when work on the device precedes Run
	// (opening the console), so that the work counts against the job's
	// deadline. Zero: when Run is called.
	Start time.Time
	// Now is for tests; nil means time.Now.
	Now func() time.Time
	// OnThread, if set, is called with each new stage or cleanup thread
	// before it runs (tests attach starlarktest's reporter this way).
	OnThread func(*starlark.Thread)
	// Hold, if set, is called after the stages and before the cleanup
	// with the stages' outcome (Status set); the cleanup starts when it
	// returns (basalt run --hold-on-failure keeps a failed board as it is).
	Hold func(o Outcome)

	// state is ctx.state, one dict for all the stage and cleanup threads
	// of the run. The threads run one at a time; stateMu makes that a
	// rule rather than a coincidence (a starlark.Dict is not safe for
	// concurrent use).
	state   *starlark.Dict
	stateMu sync.Mutex
	// outcome is ctx.outcome of cleanup functions: the stages' result.
	outcome starlark.Value
}

// ProgressEvent describes a stage starting or ending.
type ProgressEvent struct {
	Kind     string // stage_start | stage_end | cleanup_start | cleanup_end | retry
	Stage    string
	Attempt  int
	Status   string
	Duration time.Duration
	Err      error
}

// Outcome is the result of a run.
type Outcome struct {
	Status string
	Class  builtins.Class // of Err
	Err    error
	Info   *bundle.ErrorInfo
}

// ExitCode returns the process exit code of the outcome.
func (o Outcome) ExitCode() int { return ExitCode(o.Status, o.Class) }

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) emit(typ string, f map[string]any) { r.Bundle.Emit(typ, f) }

func (r *Runner) progress(ev ProgressEvent) {
	if r.Progress != nil {
		r.Progress(ev)
	}
}

// Run executes the stages and the cleanup functions and records everything
// in the bundle. ctx is cancelled by SIGINT/SIGTERM.
func (r *Runner) Run(ctx context.Context) Outcome {
	plan := r.Plan
	start := r.Start
	if start.IsZero() {
		start = r.now()
	}
	jobCtx, cancelJob := context.WithDeadline(ctx, start.Add(plan.Job.Timeout))
	defer cancelJob()

	stages := make([]bundle.Stage, len(plan.Stages))
	for i, s := range plan.Stages {
		stages[i] = bundle.Stage{Name: s.Name, Status: "pending"}
	}
	cleanups := make([]bundle.Stage, len(plan.Cleanups))
	for i, c := range plan.Cleanups {
		cleanups[i] = bundle.Stage{Name: c.Name, Status: "pending"}
	}
	r.Bundle.Update(func(res *bundle.Result) { res.Stages = stages; res.Cleanup = cleanups })
	r.state = new(starlark.Dict)
	r.outcome = starlark.None
	r.saveState()
	r.emit("job_start", map[string]any{"job": plan.Job.Name, "timeout_ms": plan.Job.Timeout.Milliseconds(), "stages": len(plan.Stages)})

	var out Outcome
	for i, st := range plan.Stages {
		if out.Err != nil {
			stages[i].Status = "skipped"
			continue
		}
		err := r.runStage(ctx, jobCtx, i, st, &stages[i])
		r.Bundle.Update(func(res *bundle.Result) { res.Stages = stages })
		if err != nil {
			out = r.failure(ctx, err, st.Name)
		}
	}
	if out.Err != nil {
		for i := range stages {
			if stages[i].Status == "pending" {
				stages[i].Status = "skipped"
			}
		}
		r.Bundle.Update(func(res *bundle.Result) { res.Stages = stages })
	}

	held := out
	held.Status = StatusPass
	switch {
	case out.Err != nil && out.Class == builtins.ClassCanceled:
		held.Status = StatusCanceled
	case out.Err != nil:
		held.Status = StatusError
	case testsFailed(bundle.Standing(r.Bundle.Result())):
		held.Status = StatusFail
	}
	r.outcome = outcomeValue(held)
	if r.Hold != nil {
		r.Hold(held)
	}

	// Cleanup always runs, under a context the signal does not cancel.
	abort := r.Abort
	if abort == nil {
		abort = context.Background()
	}
	for i, c := range plan.Cleanups {
		if abort.Err() != nil {
			// Aborted (a second SIGINT): what has not started never runs.
			cleanups[i].Status = "aborted"
			cleanups[i].Error = "not run: cleanup aborted"
			r.emit("cleanup_end", map[string]any{"cleanup": c.Name, "outcome": "aborted", "error": cleanups[i].Error})
			r.Bundle.Update(func(res *bundle.Result) { res.Cleanup = cleanups })
			continue
		}
		err := r.runCleanup(abort, i, c, &cleanups[i])
		r.Bundle.Update(func(res *bundle.Result) { res.Cleanup = cleanups })
		if err != nil && out.Err == nil {
			out = r.failure(ctx, err, "cleanup:"+c.Name)
		}
	}

	switch {
	case out.Err != nil && out.Class == builtins.ClassCanceled:
		out.Status = StatusCanceled
	case out.Err != nil:
		out.Status = StatusError
	case testsFailed(bundle.Standing(r.Bundle.Result())):
		out.Status = StatusFail
	default:
		out.Status = StatusPass
	}
	r.Bundle.Update(func(res *bundle.Result) {
		res.Status = out.Status
		res.Error = out.Info
	})
	fields := map[string]any{"status": out.Status, "duration_ms": r.now().Sub(start).Milliseconds()}
	if out.Info != nil {
		fields["class"] = out.Info.Class
		fields["error"] = out.Info.Message
	}
	r.emit("job_end", fields)
	return out
}

func testsFailed(tests []builtins.TestCase) bool {
	for _, t := range tests {
		if t.Result == "fail" {
			return true
		}
	}
	return false
}

// failure classifies err for the outcome.
func (r *Runner) failure(ctx context.Context, err error, stage string) Outcome {
	class := builtins.ClassOf(err)
	if signaled(ctx) {
		class = builtins.ClassCanceled
	}
	info := &bundle.ErrorInfo{Class: string(class), Message: err.Error(), Stage: stage}
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		info.Pos = r.Plan.Pos(ee)
		info.Backtrace = ee.Backtrace()
		info.Message = ee.Msg
		if cause := errors.Unwrap(ee); cause != nil {
			info.Message = cause.Error()
		}
	}
	if class == builtins.ClassCanceled && signaled(ctx) {
		info.Message = "canceled: " + info.Message
	}
	return Outcome{Class: class, Err: err, Info: info}
}

func (r *Runner) runStage(sigCtx, jobCtx context.Context, idx int, st interp.Stage, rec *bundle.Stage) error {
	started := r.now()
	rec.Started = &started
	rec.Status = "running"
	r.Bundle.Update(func(res *bundle.Result) { res.Stages[idx] = *rec })
	var err error
	for attempt := 1; ; attempt++ {
		rec.Attempts = attempt
		// The stage's attempt count tells which of its test cases stand.
		r.Bundle.Update(func(res *bundle.Result) { res.Stages[idx] = *rec })
		r.progress(ProgressEvent{Kind: "stage_start", Stage: st.Name, Attempt: attempt})
		r.emit("stage_start", map[string]any{"stage": st.Name, "attempt": attempt})
		t0 := r.now()
		err = r.attempt(sigCtx, jobCtx, st, attempt)
		d := r.now().Sub(t0)
		fields := map[string]any{"stage": st.Name, "attempt": attempt, "duration_ms": d.Milliseconds()}
		if err != nil {
			fields["outcome"] = "error"
			fields["class"] = string(builtins.ClassOf(err))
			fields["error"] = err.Error()
		} else {
			fields["outcome"] = "pass"
		}
		r.emit("stage_end", fields)
		if err == nil || signaled(sigCtx) {
			break
		}
		retry := jobCtx.Err() == nil && attempt <= st.Retries && builtins.Retryable(err)
		// on_error runs after every attempt that failed with an infra or
		// device error, the last one too (to power-cycle, to collect logs,
		// to roll back), but not after a job error (a bug is not
		// recoverable) nor once the job's deadline has passed (nothing is
		// left to run it in). It cannot un-fail the stage: its return value
		// is ignored, and its own error ends the stage with that error.
		if st.OnError != nil && jobCtx.Err() == nil && builtins.Retryable(err) {
			if rerr := r.recover(sigCtx, jobCtx, st, attempt, err, retry); rerr != nil {
				err = rerr
				break
			}
		}
		if !retry {
			break
		}
		r.progress(ProgressEvent{Kind: "retry", Stage: st.Name, Attempt: attempt, Err: err})
		r.emit("stage_retry", map[string]any{"stage": st.Name, "attempt": attempt + 1, "after": err.Error(),
			"remaining_ms": remaining(jobCtx, r.now()).Milliseconds()})
	}
	ended := r.now()
	rec.Ended = &ended
	rec.DurationMS = ended.Sub(started).Milliseconds()
	switch {
	case err == nil:
		rec.Status = "pass"
	case signaled(sigCtx):
		rec.Status = "canceled"
		rec.Error = err.Error()
	default:
		rec.Status = "error"
		rec.Error = err.Error()
	}
	r.progress(ProgressEvent{Kind: "stage_end", Stage: st.Name, Attempt: rec.Attempts, Status: rec.Status, Duration: ended.Sub(started), Err: err})
	return err
}

func remaining(ctx context.Context, now time.Time) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return dl.Sub(now)
	}
	return 0
}

// attempt runs one attempt of a stage in a thread of its own.
func (r *Runner) attempt(sigCtx, jobCtx context.Context, st interp.Stage, attempt int) error {
	ctx, cancel := jobCtx, context.CancelFunc(func() {})
	what := fmt.Sprintf("job timeout of %s", r.Plan.Job.Timeout)
	if st.Timeout > 0 {
		ctx, cancel = context.WithTimeout(jobCtx, st.Timeout)
		if dl, ok := jobCtx.Deadline(); !ok || r.now().Add(st.Timeout).Before(dl) {
			what = fmt.Sprintf("stage timeout of %s", st.Timeout)
		}
	}
	defer cancel()
	return r.call(sigCtx, ctx, st.Name, st.Fn, attempt, what)
}

// recover runs the stage's on_error function after attempt failed with
// failed, under a budget like an attempt's, and records it as a "recovered"
// event; retry tells whether another attempt follows. Its error, if any,
// ends the stage.
func (r *Runner) recover(sigCtx, jobCtx context.Context, st interp.Stage, attempt int, failed error, retry bool) error {
	ctx, cancel := jobCtx, context.CancelFunc(func() {})
	what := fmt.Sprintf("job timeout of %s", r.Plan.Job.Timeout)
	if st.Timeout > 0 {
		ctx, cancel = context.WithTimeout(jobCtx, st.Timeout)
		what = fmt.Sprintf("stage timeout of %s", st.Timeout)
	}
	defer cancel()
	f := builtins.Describe(failed)
	err := r.call(sigCtx, ctx, st.Name, st.OnError, attempt, what, f.Value())
	fields := f.Fields()
	fields["by"] = "on_error"
	fields["stage"] = st.Name
	fields["attempt"] = attempt
	fields["outcome"] = "ok"
	fields["retry"] = retry
	if err != nil {
		fields["outcome"] = "error"
		fields["recover_error"] = err.Error()
		err = fmt.Errorf("stage %q: on_error after attempt %d: %w", st.Name, attempt, err)
	}
	r.emit("recovered", fields)
	return err
}

func (r *Runner) runCleanup(abort context.Context, idx int, c interp.Cleanup, rec *bundle.Stage) error {
	started := r.now()
	rec.Started = &started
	rec.Status = "running"
	rec.Attempts = 1
	r.progress(ProgressEvent{Kind: "cleanup_start", Stage: c.Name})
	r.emit("cleanup_start", map[string]any{"cleanup": c.Name, "timeout_ms": c.Timeout.Milliseconds()})
	ctx, cancel := context.WithTimeout(abort, c.Timeout)
	defer cancel()
	err := r.call(abort, ctx, "cleanup:"+c.Name, c.Fn, 1, fmt.Sprintf("cleanup timeout of %s", c.Timeout))
	ended := r.now()
	rec.Ended = &ended
	rec.DurationMS = ended.Sub(started).Milliseconds()
	rec.Status = "pass"
	fields := map[string]any{"cleanup": c.Name, "duration_ms": rec.DurationMS, "outcome": "pass"}
	if err != nil {
		rec.Status = "error"
		if abort.Err() != nil {
			rec.Status = "aborted"
		}
		rec.Error = err.Error()
		fields["outcome"] = rec.Status
		fields["error"] = err.Error()
	}
	r.emit("cleanup_end", fields)
	r.progress(ProgressEvent{Kind: "cleanup_end", Stage: c.Name, Status: rec.Status, Duration: ended.Sub(started), Err: err})
	return err
}

// call runs fn(ctx) in a new thread under ctx. sigCtx tells a signal from a
// deadline; what names the deadline in the error.
//
// extra are more arguments after ctx (on_error's error). After fn returns,
// ctx.state is saved in result.json; a value JSON cannot encode fails a
// call that had not failed otherwise.
func (r *Runner) call(sigCtx, ctx context.Context, stage string, fn starlark.Callable, attempt int, what string, extra ...starlark.Value) error {
	err := r.callFn(sigCtx, ctx, stage, fn, attempt, what, extra)
	if serr := r.saveState(); serr != nil && err == nil {
		err = serr
	}
	return err
}

func (r *Runner) callFn(sigCtx, ctx context.Context, stage string, fn starlark.Callable, attempt int, what string, extra []starlark.Value) error {
	env := r.Env.WithContext(ctx, stage)
	env.Declaring = false
	env.Started = r.now()
	if !strings.HasPrefix(stage, "cleanup:") {
		env.Attempt = attempt
	}
	env.Spawn = r.newThread
	thread := r.newThread(stage)
	builtins.Attach(thread, env)
	cancelThread := func() {
		switch {
		case limitErr(sigCtx) != nil:
			thread.Cancel(limitErr(sigCtx).Error())
		case sigCtx.Err() != nil:
			thread.Cancel("canceled")
		default:
			thread.Cancel(what + " reached")
		}
	}
	stop := context.AfterFunc(ctx, cancelThread)
	defer stop()
	if ctx.Err() != nil {
		// AfterFunc runs its function in a goroutine of its own: without
		// this, a function started after the abort could run its first
		// steps, or all of them, before the cancellation lands.
		cancelThread()
	}

	arg := r.ctxValue(ctx, stage, attempt)
	r.stateMu.Lock()
	_, err := starlark.Call(thread, fn, append(starlark.Tuple{arg}, extra...), nil)
	r.stateMu.Unlock()
	if err == nil {
		return nil
	}
	if le := limitErr(sigCtx); le != nil {
		return &builtins.Error{Class: builtins.ClassOf(le), Err: err}
	}
	if sigCtx.Err() != nil {
		return &builtins.Error{Class: builtins.ClassCanceled, Err: err}
	}
	var ce *builtins.Error
	if errors.As(err, &ce) {
		return err
	}
	if ctx.Err() != nil {
		// The deadline passed while Starlark code (not a builtin that
		// classifies its own timeout) was running: the device did not get
		// where the stage expected in time.
		return &builtins.Error{Class: builtins.ClassDevice, Err: err}
	}
	return builtins.Job(err)
}

// newThread returns a thread for a stage, cleanup or parallel function:
// print to the job log, no load, the step limit of a stage attempt.
func (r *Runner) newThread(name string) *starlark.Thread {
	thread := &starlark.Thread{Name: name}
	thread.Print = func(_ *starlark.Thread, msg string) { r.Bundle.Print(msg) }
	thread.Load = func(*starlark.Thread, string) (starlark.StringDict, error) {
		return nil, errors.New("load() is only allowed at the top level of a file")
	}
	steps := r.Plan.MaxSteps
	thread.SetMaxExecutionSteps(steps)
	thread.OnMaxSteps = func(t *starlark.Thread) {
		t.Cancel(fmt.Sprintf("step limit of %d Starlark steps exceeded (a runaway loop?)", steps))
	}
	if r.OnThread != nil {
		r.OnThread(thread)
	}
	return thread
}

// limitErr returns the classed error a job limit (memory, log volume)
// cancelled ctx with, or nil when ctx is live or was cancelled by a signal.
func limitErr(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	var ce *builtins.Error
	if cause := context.Cause(ctx); errors.As(cause, &ce) {
		return cause
	}
	return nil
}

// signaled reports whether ctx was cancelled by SIGINT/SIGTERM rather than
// by a job limit.
func signaled(ctx context.Context) bool { return ctx.Err() != nil && limitErr(ctx) == nil }

// ctxValue builds the ctx argument of stage and cleanup functions.
func (r *Runner) ctxValue(ctx context.Context, stage string, attempt int) starlark.Value {
	params := starlark.StringDict{}
	for k, v := range r.Plan.ParamMap() {
		params[k] = v
	}
	device := starlark.StringDict{}
	for k, v := range r.deviceFacts() {
		device[k] = v
	}
	var outcome starlark.Value = starlark.None
	if strings.HasPrefix(stage, "cleanup:") && r.outcome != nil {
		outcome = r.outcome
	}
	remainingFn := starlark.NewBuiltin("ctx.remaining", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		return durationValue(remaining(ctx, r.now())), nil
	})
	return starlarkstruct.FromStringDict(starlark.String("ctx"), starlark.StringDict{
		"params":    starlarkstruct.FromStringDict(starlark.String("params"), params),
		"device":    starlarkstruct.FromStringDict(starlark.String("device"), device),
		"job":       starlark.String(r.Plan.Job.Name),
		"stage":     starlark.String(strings.TrimPrefix(stage, "cleanup:")),
		"attempt":   starlark.MakeInt(attempt),
		"remaining": remainingFn,
		"state":     r.state,
		"outcome":   outcome,
		"devices":   r.devicesValue(),
	})
}

// DeviceModules are the modules ctx.devices.ROLE binds to the role's
// device; test's records the role's cases and artifacts.
var DeviceModules = []string{"ipmi", "power", "pxe", "sol", "target", "test"}

// devicesValue is ctx.devices: in a multi-device job, for each role,
// struct(role, name, type, device, ipmi, power, pxe, sol, target, test): the role's
// device name and type, its facts (what ctx.device is in a single-device
// job) and the device modules bound to it. Empty in a single-device job.
func (r *Runner) devicesValue() starlark.Value {
	roles := starlark.StringDict{}
	for _, role := range r.Env.Roles() {
		re, _ := r.Env.RoleEnv(role)
		d := starlark.StringDict{
			"role":   starlark.String(role),
			"name":   starlark.String(re.DeviceName),
			"type":   starlark.String(r.Plan.Job.Devices[role]),
			"device": starlarkstruct.FromStringDict(starlark.String("device"), factsValue(re.Facts)),
		}
		for _, m := range DeviceModules {
			if v, ok := r.Plan.Modules[m]; ok {
				d[m] = builtins.RoleModule(role, v)
			}
		}
		roles[role] = starlarkstruct.FromStringDict(starlark.String("role"), d)
	}
	return starlarkstruct.FromStringDict(starlark.String("devices"), roles)
}

// saveState JSON-encodes ctx.state (go.starlark.net/lib/json's rules) into
// result.json. A value it cannot encode is a job error naming the key.
func (r *Runner) saveState() error {
	if r.state == nil {
		return nil
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	thread := &starlark.Thread{Name: "ctx.state"}
	encode := json.Module.Members["encode"]
	v, err := starlark.Call(thread, encode, starlark.Tuple{r.state}, nil)
	if err != nil {
		// Name the first key whose value is the culprit.
		for _, kv := range r.state.Items() {
			if _, kerr := starlark.Call(thread, encode, starlark.Tuple{kv[1]}, nil); kerr != nil {
				return builtins.Job(fmt.Errorf("ctx.state[%s]: save state: %s (values must be JSON-encodable: None, bool, int, float, string, list, tuple, dict with string keys)", kv[0], evalMsg(kerr)))
			}
		}
		return builtins.Job(fmt.Errorf("ctx.state: save state: %s (keys must be strings)", evalMsg(err)))
	}
	if err := r.Bundle.SetState([]byte(string(v.(starlark.String)))); err != nil {
		return fmt.Errorf("ctx.state: save state: %w", err)
	}
	return nil
}

// evalMsg is the message of a Starlark error without its backtrace: the
// error is the runner's, not the job's code, and must not read as if
// json.encode had been called by the job.
func evalMsg(err error) string {
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return ee.Msg
	}
	return err.Error()
}

// outcomeValue is ctx.outcome of cleanup functions: the stages' status,
// and when one failed its error's class and message and the stage.
func outcomeValue(o Outcome) starlark.Value {
	d := starlark.StringDict{"status": starlark.String(o.Status), "error_class": starlark.None, "message": starlark.None, "stage": starlark.None}
	if o.Info != nil {
		d["error_class"] = starlark.String(o.Info.Class)
		d["message"] = starlark.String(o.Info.Message)
		d["stage"] = starlark.String(o.Info.Stage)
	}
	return starlarkstruct.FromStringDict(starlark.String("outcome"), d)
}

// deviceFacts converts the Env's device facts (ctx.device) to Starlark.
func (r *Runner) deviceFacts() map[string]starlark.Value { return factsValue(r.Env.Facts) }

// factsValue converts device facts to Starlark.
func factsValue(facts map[string]any) starlark.StringDict {
	out := starlark.StringDict{}
	keys := make([]string, 0, len(facts))
	for k := range facts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out[k] = ToStarlark(facts[k])
	}
	return out
}
