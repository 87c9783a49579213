package builtins

import (
	"errors"
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// CallError is an error out of a builtin, with where it was called: the
// envelope wraps every builtin's error in one, so that try_call and a
// stage's on_error can say which builtin failed and at which file:line.
type CallError struct {
	Builtin string // qualified name, "sol.expect"
	Pos     string // file:line:col of the call
	Err     error
}

func (e *CallError) Error() string { return e.Err.Error() }
func (e *CallError) Unwrap() error { return e.Err }

// Failure describes an error the way Starlark code sees it (try_call's
// error, on_error's second argument) and the "recovered" event records it.
type Failure struct {
	Class   Class
	Message string
	Builtin string // "" when no builtin failed (a Starlark error)
	Pos     string
}

// Describe returns the Failure of err.
func Describe(err error) Failure {
	f := Failure{Class: ClassOf(err), Message: err.Error()}
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		f.Message = ee.Msg
		if cause := errors.Unwrap(ee); cause != nil {
			f.Message = cause.Error()
		}
		if len(ee.CallStack) > 0 {
			f.Pos = ee.CallStack.At(0).Pos.String()
		}
	}
	var ce *CallError
	if errors.As(err, &ce) {
		f.Builtin, f.Pos = ce.Builtin, ce.Pos
	}
	return f
}

// Value returns f as the Starlark struct(class, message, builtin, pos).
// class is a reserved word in Starlark (e.class does not parse): the same
// value is error_class too, and getattr(e, "class") reads class.
func (f Failure) Value() starlark.Value {
	return starlarkstruct.FromStringDict(starlark.String("error"), starlark.StringDict{
		"class":       starlark.String(f.Class),
		"error_class": starlark.String(f.Class),
		"message":     starlark.String(f.Message),
		"builtin":     starlark.String(f.Builtin),
		"pos":         starlark.String(f.Pos),
	})
}

// Fields returns f as event fields.
func (f Failure) Fields() map[string]any {
	return map[string]any{"class": string(f.Class), "message": f.Message, "builtin": f.Builtin, "pos": f.Pos}
}

// Recoverable reports whether the job may go on after err in thread: only
// an infrastructure or device error is, and only while the stage's own
// deadline has not passed. A job error is a bug in the job and a canceled
// job is over; neither is caught.
func Recoverable(thread *starlark.Thread, err error) bool {
	if !Retryable(err) {
		return false
	}
	env := EnvOf(thread)
	return env == nil || env.Ctx == nil || env.Ctx.Err() == nil
}

// TryCallDoc documents try_call for `basalt doc`.
const TryCallDoc = "Calls fn(*args, **kwargs) and returns struct(ok, value, error): ok=True with fn's return value, or " +
	"ok=False when fn failed with an infrastructure or device error, error being struct(class, message, builtin, pos) — " +
	"class \"infra\" or \"device\" (class is a reserved word: read it as error.error_class or getattr(error, \"class\")), the failed builtin (\"sol.expect\") and the file:line of its call. A job error (a bug " +
	"in the job: a Starlark error, bad arguments, fail()) and a passed stage deadline are not caught: they end the stage " +
	"as they would without try_call. Each caught error is a \"recovered\" event and a record in result.json's recoveries."

// TryCall is the try_call builtin.
func TryCall(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) == 0 {
		return nil, Job(fmt.Errorf("%s: missing argument for fn", name))
	}
	fn, ok := args[0].(starlark.Callable)
	if !ok {
		return nil, Job(fmt.Errorf("%s: for parameter fn: got %s, want callable", name, args[0].Type()))
	}
	v, err := starlark.Call(thread, fn, args[1:], kwargs)
	if err == nil {
		return starlarkstruct.FromStringDict(starlark.String("result"), starlark.StringDict{
			"ok": starlark.True, "value": v, "error": starlark.None,
		}), nil
	}
	if !Recoverable(thread, err) {
		return nil, err
	}
	f := Describe(err)
	if env := EnvOf(thread); env != nil && env.Rec != nil {
		fields := f.Fields()
		fields["by"] = "try_call"
		fields["at"] = Caller(thread)
		fields["stage"] = env.Stage
		fields["attempt"] = env.Attempt
		env.Rec.Emit("recovered", fields)
	}
	return starlarkstruct.FromStringDict(starlark.String("result"), starlark.StringDict{
		"ok": starlark.False, "value": starlark.None, "error": f.Value(),
	}), nil
}
