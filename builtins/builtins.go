// Package builtins holds what every Starlark module of basalt shares: the
// table type that registers a module's builtins and generates `basalt doc`,
// the per-thread job environment (deadline, event recorder, device, backends)
// and the error classes that decide a job's exit code.
//
// A module package (builtins/ipmi, builtins/sol, ...) declares
//
//	var Table = &builtins.Table{Name: "ipmi", Doc: "...", Members: []builtins.Builtin{...}}
//
// and the interpreter predeclares Table.Module(). Each member's Fn receives the
// thread; it reads the job environment with [EnvOf], derives its context with
// [CallContext] (its timeout= unpacked as a [Timeout]) and returns errors
// wrapped by [Infra], [Device] or [Job]. The Fn does nothing else: the one
// envelope, [Table.Wrap], refuses action builtins at top level, records each
// call, redacts the entry's Secret parameters and starts every error with the
// qualified name. [CheckParams] holds each entry's Params to its UnpackArgs.
//
// A module reaches its backend through a [Slot] of its own, behind typed
// accessors it exports (ipmi.SetBackend, ipmi.BackendFrom, ...); the Opt
// unpackers ([OptStr], [OptInt], ...) take optional keyword arguments in
// which None means "not given".
package builtins

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Func is the Go side of a builtin. name is the qualified name ("ipmi.power").
type Func func(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

// Builtin is one member of a module.
type Builtin struct {
	Name string // unqualified name, "power"
	// Params is the signature as shown by `basalt doc`, "action,
	// timeout=None". It is the source of truth for the names and order of
	// the parameters: the envelope maps positional arguments to names with
	// it, runtime/lint checks keywords against it, and [CheckParams] holds
	// it to the builtin's UnpackArgs call.
	Params string
	Doc    string // first line is the summary
	// Action marks builtins that touch the lab. They are refused while the
	// job file is being declared (top-level code) and every call is recorded
	// as a "call" event.
	Action bool
	// Secret names the parameters whose values never reach an event, a log
	// or an error: the envelope shows them as "<redacted>" in the call
	// event and masks them in the error message. With SecretIf set, they
	// are secret only when that parameter is given a true value (sol.send's
	// secret=True).
	Secret   []string
	SecretIf string
	Fn       Func
	// Value, when set instead of Fn, is a constant or a nested value
	// (e.g. a sub-module) exposed under Name.
	Value starlark.Value
}

// Table is a Starlark module: its name, documentation and members.
type Table struct {
	Name    string
	Doc     string
	Members []Builtin
}

// Module builds the Starlark value of the table; each member with an Fn is
// wrapped in the envelope (see [Table.Wrap]).
func (t *Table) Module() *starlarkstruct.Module {
	return &starlarkstruct.Module{Name: t.Name, Members: t.Values()}
}

// Values returns the table's members as Starlark values, the Fn members
// wrapped in the envelope; a table with no Name (job, stage, cleanup) is
// predeclared this way, member by member.
func (t *Table) Values() starlark.StringDict {
	d := starlark.StringDict{}
	for _, b := range t.Members {
		if b.Value != nil {
			d[b.Name] = b.Value
			continue
		}
		d[b.Name] = t.Wrap(b)
	}
	return d
}

// Lookup returns the member called name.
func (t *Table) Lookup(name string) (Builtin, bool) {
	for _, b := range t.Members {
		if b.Name == name {
			return b, true
		}
	}
	return Builtin{}, false
}

// Qualified returns the name errors and events use for b: "ipmi.power",
// or "job" in the table with no Name.
func (t *Table) Qualified(b Builtin) string {
	if t.Name == "" {
		return b.Name
	}
	return t.Name + "." + b.Name
}

// Wrap is the one envelope every builtin runs in. For every builtin it
// starts the error with the qualified name when the Fn did not (and never
// twice). For an Action builtin it also refuses a call at top level (a job
// error naming file:line) and records each call as a "call" event with its
// arguments, duration and outcome, the Secret parameters redacted there and
// in the error.
func (t *Table) Wrap(b Builtin) *starlark.Builtin {
	qname := t.Qualified(b)
	names, _ := ParseParams(b.Params)
	return starlark.NewBuiltin(qname, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		secrets := secretValues(b, names, args, kwargs)
		if !b.Action {
			v, err := b.Fn(thread, qname, args, kwargs)
			return v, located(qname, thread, envelopeError(qname, err, secrets))
		}
		env := EnvOf(thread)
		if env == nil || env.Declaring {
			return nil, Job(fmt.Errorf("%s: action builtins may only be called from a stage or cleanup function, not at top level", qname))
		}
		start := time.Now()
		// An action waits on the lab: the other functions of a
		// parallel() call run meanwhile (Unlocked), so it works on a
		// copy of the lists and dicts it was given.
		if inParallel(thread) {
			args, kwargs = snapshotArgs(args, kwargs)
		}
		relock := Unlocked(thread)
		v, err := b.Fn(thread, qname, args, kwargs)
		relock()
		err = envelopeError(qname, err, secrets)
		fields := map[string]any{
			"builtin":     qname,
			"args":        argStrings(names, b, secrets, args, kwargs),
			"duration_ms": time.Since(start).Milliseconds(),
			"pos":         Caller(thread),
		}
		if err != nil {
			fields["outcome"] = "error"
			fields["error"] = err.Error()
			fields["class"] = string(ClassOf(err))
		} else {
			fields["outcome"] = "ok"
			if r, ok := scalarResult(v); ok {
				fields["result"] = r
			}
		}
		env.Emit("call", fields)
		return v, located(qname, thread, err)
	})
}

// scalarResult is what a call returned, for its call event, when that is a
// short string, a number or a bool ("on" from power.status): what basalt
// replay answers the call with. Longer and structured results (a console
// match, a command's output) are left out; the console holds them.
func scalarResult(v starlark.Value) (any, bool) {
	switch v := v.(type) {
	case starlark.String:
		if len(v) <= 256 {
			return string(v), true
		}
	case starlark.Bool:
		return bool(v), true
	case starlark.Int:
		if n, ok := v.Int64(); ok {
			return n, true
		}
	}
	return nil, false
}

// located wraps err in a [CallError] naming the builtin and its call
// site, unless it is a Starlark error from a callback (whose own builtin,
// if any, is already named inside it).
func located(qname string, thread *starlark.Thread, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*starlark.EvalError); ok {
		return err
	}
	var ce *CallError
	if errors.As(err, &ce) {
		return err
	}
	return &CallError{Builtin: qname, Pos: Caller(thread), Err: err}
}

// Redacted stands for a secret value in events and errors.
const Redacted = "<redacted>"

// secretValues returns the string values of b's Secret parameters in this
// call, or nil when the call holds no secret (SecretIf not true).
func secretValues(b Builtin, names []string, args starlark.Tuple, kwargs []starlark.Tuple) []string {
	if len(b.Secret) == 0 {
		return nil
	}
	if b.SecretIf != "" {
		v, ok := argNamed(b.SecretIf, names, args, kwargs)
		if !ok || !bool(v.Truth()) {
			return nil
		}
	}
	var out []string
	for _, p := range b.Secret {
		v, ok := argNamed(p, names, args, kwargs)
		if !ok {
			continue
		}
		if s, ok := starlark.AsString(v); ok {
			out = append(out, s)
		} else {
			out = append(out, v.String())
		}
	}
	if out == nil {
		out = []string{} // secret, though no value was given
	}
	return out
}

// argNamed finds the argument of parameter name, given by keyword or by
// position (mapped through Params).
func argNamed(name string, names []string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, bool) {
	for _, kv := range kwargs {
		if k, _ := starlark.AsString(kv[0]); k == name {
			return kv[1], true
		}
	}
	for i, n := range names {
		if n == name && i < len(args) {
			return args[i], true
		}
	}
	return nil, false
}

func isSecret(b Builtin, secrets []string, name string) bool {
	if secrets == nil {
		return false
	}
	for _, p := range b.Secret {
		if p == name {
			return true
		}
	}
	return false
}

func argStrings(names []string, b Builtin, secrets []string, args starlark.Tuple, kwargs []starlark.Tuple) []string {
	out := make([]string, 0, len(args)+len(kwargs))
	for i, a := range args {
		if i < len(names) && isSecret(b, secrets, names[i]) {
			out = append(out, starlark.String(Redacted).String())
			continue
		}
		out = append(out, a.String())
	}
	for _, kv := range kwargs {
		k, _ := starlark.AsString(kv[0])
		val := kv[1].String()
		if isSecret(b, secrets, k) {
			val = starlark.String(Redacted).String()
		}
		out = append(out, k+"="+val)
	}
	return out
}

// envelopeError starts err with qname unless it starts with it already,
// and masks the secret values in its message. The class and the wrapped
// errors stay reachable through errors.As and errors.Is. A Starlark
// evaluation error (from a callback the builtin ran) is kept as it is, for
// its backtrace.
func envelopeError(qname string, err error, secrets []string) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*starlark.EvalError); ok {
		return err
	}
	msg := err.Error()
	redacted := msg
	for _, s := range secrets {
		if s != "" {
			redacted = strings.ReplaceAll(redacted, s, Redacted)
		}
	}
	if !hasName(redacted, qname) {
		redacted = qname + ": " + redacted
	}
	if redacted == msg {
		return err
	}
	return &envelope{msg: redacted, err: err}
}

// hasName reports whether msg starts with qname as a word: "sol.expect: ..."
// or "time.sleep(5s): ...", but not "sol.expect_all: ...".
func hasName(msg, qname string) bool {
	if !strings.HasPrefix(msg, qname) {
		return false
	}
	rest := msg[len(qname):]
	return rest == "" || strings.IndexByte(": (", rest[0]) >= 0
}

type envelope struct {
	msg string
	err error
}

func (e *envelope) Error() string { return e.msg }
func (e *envelope) Unwrap() error { return e.err }

// Caller returns "file:line:col" of the Starlark code that called the current
// builtin, or "" outside Starlark. A builtin called by a builtin
// (try_call(sol.expect, ...)) is placed at the nearest Starlark caller.
func Caller(thread *starlark.Thread) string {
	if thread == nil {
		return ""
	}
	for i := 1; i < thread.CallStackDepth(); i++ {
		if pos := thread.CallFrame(i).Pos; pos.Line > 0 {
			return pos.String()
		}
	}
	return ""
}

// Undocumented lists the members of the tables that have no documentation,
// so a test can fail on them.
func Undocumented(tables ...*Table) []string {
	var out []string
	for _, t := range tables {
		if strings.TrimSpace(t.Doc) == "" {
			out = append(out, t.Name)
		}
		for _, b := range t.Members {
			if strings.TrimSpace(b.Doc) == "" {
				out = append(out, t.Name+"."+b.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// CallContext returns the context a builtin call runs under: the stage's
// deadline, shortened by timeout when timeout > 0 (a builtin's timeout= can
// only shorten the deadline, never extend it; see [Timeout]).
func CallContext(thread *starlark.Thread, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx := context.Background()
	if env := EnvOf(thread); env != nil && env.Ctx != nil {
		ctx = env.Ctx
	}
	if timeout > 0 {
		return context.WithTimeout(ctx, timeout)
	}
	return context.WithCancel(ctx)
}
