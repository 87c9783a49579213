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
// [CallContext] and returns errors wrapped by [Infra], [Device] or [Job].
package builtins

import (
	"context"
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
	Name   string // unqualified name, "power"
	Params string // signature as shown by `basalt doc`, "action, timeout=None"
	Doc    string // first line is the summary
	// Action marks builtins that touch the lab. They are refused while the
	// job file is being declared (top-level code) and every call is recorded
	// as a "call" event.
	Action bool
	Fn     Func
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

// Module builds the Starlark value of the table. Action builtins are wrapped
// so that calling them at top level is a job error naming file:line, and so
// that each call is recorded with its arguments, duration and outcome.
func (t *Table) Module() *starlarkstruct.Module {
	m := &starlarkstruct.Module{Name: t.Name, Members: starlark.StringDict{}}
	for _, b := range t.Members {
		if b.Value != nil {
			m.Members[b.Name] = b.Value
			continue
		}
		m.Members[b.Name] = t.wrap(b)
	}
	return m
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

func (t *Table) wrap(b Builtin) *starlark.Builtin {
	qname := t.Name + "." + b.Name
	if t.Name == "" {
		qname = b.Name
	}
	fn := b.Fn
	action := b.Action
	return starlark.NewBuiltin(qname, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		env := EnvOf(thread)
		if !action {
			return fn(thread, qname, args, kwargs)
		}
		if env == nil || env.Declaring {
			return nil, Job(fmt.Errorf("%s: action builtins may only be called from a stage or cleanup function, not at top level", qname))
		}
		start := time.Now()
		v, err := fn(thread, qname, args, kwargs)
		fields := map[string]any{
			"builtin":     qname,
			"args":        argStrings(args, kwargs),
			"duration_ms": time.Since(start).Milliseconds(),
			"pos":         Caller(thread),
		}
		if err != nil {
			fields["outcome"] = "error"
			fields["error"] = err.Error()
			fields["class"] = string(ClassOf(err))
		} else {
			fields["outcome"] = "ok"
		}
		env.Emit("call", fields)
		return v, err
	})
}

func argStrings(args starlark.Tuple, kwargs []starlark.Tuple) []string {
	out := make([]string, 0, len(args)+len(kwargs))
	for _, a := range args {
		out = append(out, a.String())
	}
	for _, kv := range kwargs {
		out = append(out, fmt.Sprintf("%s=%s", kv[0].(starlark.String).GoString(), kv[1].String()))
	}
	return out
}

// Caller returns "file:line:col" of the Starlark code that called the current
// builtin, or "" outside Starlark.
func Caller(thread *starlark.Thread) string {
	if thread == nil || thread.CallStackDepth() < 2 {
		return ""
	}
	return thread.CallFrame(1).Pos.String()
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
// only shorten the deadline, never extend it).
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
