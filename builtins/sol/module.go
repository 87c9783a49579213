package sol

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Backend is what the sol module needs of a console; *Console implements
// it. It is set with SetBackend.
type Backend interface {
	Expect(ctx context.Context, patterns ...expect.Pattern) (expect.Match, error)
	ExpectWith(ctx context.Context, o ExpectOptions, patterns ...expect.Pattern) (expect.Match, error)
	// Mark starts a new console epoch (see Console.Mark).
	Mark()
	Send(ctx context.Context, text string, o SendOptions) error
	SendLine(ctx context.Context, text string, o SendOptions) error
	SetMode(m Mode)
}

var _ Backend = (*Console)(nil)

// Table is the Starlark module "sol".
var Table = &builtins.Table{
	Name: "sol",
	Doc: `The device's serial console, whatever the transport (IPMI SOL, a connection command, a TCP console
server, the sim). A string pattern is a literal; sol.regex("...") is a regular expression (RE2 syntax).
The device type's error patterns (kernel panic, Oops, ...) end any expect at once with a device error.`,
	Members: []builtins.Builtin{
		{
			Name:   "expect",
			Params: "pattern_or_list, timeout=None, error_patterns=None, timeout_ok=False",
			Doc: `Wait until a pattern appears on the console; return struct(index, text, groups, before).
pattern_or_list is a string (literal), a sol.regex(...) or a list of them; index is the position of the
pattern that matched first (the one complete first in the stream), text the matched text, groups the
regexp's submatches ("" for a group that took no part) and before the output between the previous match
and this one. Output after the match is kept for the next expect. timeout ("30s" or seconds) can only
shorten the stage's deadline. Fails with a device error on timeout (the message carries the last console
output) or when a device error pattern matches, and with an infrastructure error if the console transport
is down at the deadline. error_patterns replaces the device type's error patterns for this call: False
searches none, a list of strings (literals) and sol.regex(...) searches those. Output from before the last
power action or sol.mark() is never matched. timeout_ok=True returns None when timeout= passes with no
match (a "call" event with outcome ok); the stage's own deadline is an error all the same.`,
			Action: true,
			Fn:     expectBuiltin,
		},
		{
			Name:   "mark",
			Params: "",
			Doc: `Start a new console epoch: the output received so far is never matched by a later expect, nor
seen by the error patterns. Every power action (power.*, ipmi.power) does this itself.`,
			Action: true,
			Fn:     markBuiltin,
		},
		{
			Name:   "send",
			Params: "text, delay_ms=None, secret=False",
			Doc: `Type text on the console, one character at a time with the current mode's per-character delay
(bootloader_serial_delay_ms or test_shell_serial_delay_ms), or delay_ms. With secret=True the text is kept
out of events, logs and errors, and its echo is redacted from console.log.`,
			Action:   true,
			Secret:   []string{"text"},
			SecretIf: "secret",
			Fn:       sendBuiltin(false),
		},
		{
			Name:   "sendline",
			Params: "text, delay_ms=None, verify_echo=False, secret=False",
			Doc: `Type text and a line ending, like send. With verify_echo=True, wait for the device to echo the
line before the line ending, and erase and retype it (up to 3 times) if the echo differs: a device error if
it never matches.`,
			Action:   true,
			Secret:   []string{"text"},
			SecretIf: "secret",
			Fn:       sendBuiltin(true),
		},
		{
			Name:   "mode",
			Params: "name",
			Doc: `Select the default typing delay: "bootloader" (the console starts in it) uses the device's
bootloader_serial_delay_ms, "shell" its test_shell_serial_delay_ms.`,
			Action: true,
			Fn:     modeBuiltin,
		},
		{
			Name:   "regex",
			Params: "pattern",
			Doc: `Return a regular expression pattern (RE2 syntax) for sol.expect. It may not match the empty
string. $ and \b at the end of a pattern see only the output received so far: match "\n" instead.`,
			Fn: regexBuiltin,
		},
	},
}

// Regex is the Starlark value of sol.regex(pattern).
type Regex struct {
	expr string
	p    expect.Pattern
}

var _ starlark.Value = (*Regex)(nil)

// slot is the place of the sol backend in the job environment.
var slot = builtins.NewSlot[Backend]("sol")

// SetBackend makes b the sol backend of the run of env (cmd/basalt's
// wire and tests call it); nil removes it.
func SetBackend(env *builtins.Env, b Backend) { slot.Set(env, b) }

// BackendOf returns the sol backend of the run of env, if it has one.
func BackendOf(env *builtins.Env) (Backend, bool) { return slot.Get(env) }

// BackendFrom returns the sol backend of the thread's run, or the
// error a builtin returns: a job error in a run without a device, an
// infrastructure error for a device without this backend.
func BackendFrom(thread *starlark.Thread) (Backend, error) { return slot.From(thread) }

func (r *Regex) String() string        { return "sol.regex(" + starlark.String(r.expr).String() + ")" }
func (r *Regex) Type() string          { return "sol.regex" }
func (r *Regex) Freeze()               {}
func (r *Regex) Truth() starlark.Bool  { return true }
func (r *Regex) Hash() (uint32, error) { return starlark.String(r.expr).Hash() }

// Pattern returns the compiled pattern.
func (r *Regex) Pattern() expect.Pattern { return r.p }

func regexBuiltin(_ *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var expr string
	if err := starlark.UnpackArgs(name, args, kwargs, "pattern", &expr); err != nil {
		return nil, builtins.Job(err)
	}
	p, err := expect.Regexp(expr)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %w", name, err))
	}
	return &Regex{expr: expr, p: p}, nil
}

// patterns unpacks pattern_or_list.
type patterns []expect.Pattern

func (ps *patterns) Unpack(v starlark.Value) error {
	one := func(v starlark.Value) error {
		switch v := v.(type) {
		case starlark.String:
			if v == "" {
				return errors.New("empty pattern")
			}
			*ps = append(*ps, expect.Literal(string(v)))
		case *Regex:
			*ps = append(*ps, v.p)
		default:
			return fmt.Errorf("got %s, want string or sol.regex", v.Type())
		}
		return nil
	}
	switch v := v.(type) {
	case *starlark.List, starlark.Tuple:
		it := starlark.Iterate(v)
		defer it.Done()
		var x starlark.Value
		for it.Next(&x) {
			if err := one(x); err != nil {
				return err
			}
		}
		if len(*ps) == 0 {
			return errors.New("empty list of patterns")
		}
		return nil
	}
	return one(v)
}

// millis unpacks a number of milliseconds or None.
type millis struct {
	d   time.Duration
	set bool
}

func (m *millis) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	f, ok := starlark.AsFloat(v)
	if !ok || f < 0 {
		return fmt.Errorf("got %s, want a number of milliseconds >= 0", v)
	}
	m.d, m.set = time.Duration(f*float64(time.Millisecond)), true
	return nil
}

// errorPatterns unpacks expect's error_patterns: None (the device
// type's), False (none) or a list of patterns.
type errorPatterns struct {
	o ExpectOptions
}

func (e *errorPatterns) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.NoneType:
		return nil
	case starlark.Bool:
		if v {
			return errors.New("got True, want None (the device type's), False (none) or a list of patterns")
		}
		e.o = ExpectOptions{Override: true}
		return nil
	case *starlark.List, starlark.Tuple:
		var ps patterns
		if starlark.Len(v) > 0 {
			if err := ps.Unpack(v); err != nil {
				return err
			}
		}
		e.o = ExpectOptions{Override: true, ErrorPatterns: ps}
		return nil
	}
	return fmt.Errorf("got %s, want None, False or a list of patterns", v.Type())
}

func markBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, builtins.Job(err)
	}
	be, err := BackendFrom(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	be.Mark()
	return starlark.None, nil
}

func expectBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ps patterns
	var timeout builtins.Timeout
	var ep errorPatterns
	var timeoutOK bool
	if err := starlark.UnpackArgs(name, args, kwargs, "pattern_or_list", &ps, "timeout?", &timeout, "error_patterns?", &ep, "timeout_ok?", &timeoutOK); err != nil {
		return nil, builtins.Job(err)
	}
	be, err := BackendFrom(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	m, err := be.ExpectWith(ctx, ep.o, ps...)
	var te *TimeoutError
	if err != nil && timeoutOK && errors.As(err, &te) && !stageDone(thread) {
		// The call's own timeout= passed: the job asked to be told, not
		// to fail. A passed stage deadline still ends the stage.
		return starlark.None, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	groups := make(starlark.Tuple, len(m.Groups))
	for i, g := range m.Groups {
		groups[i] = starlark.String(g)
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"index":  starlark.MakeInt(m.Index),
		"text":   starlark.String(m.Text),
		"groups": groups,
		"before": starlark.String(m.Before),
	}), nil
}

// stageDone reports whether the stage's (or cleanup's) own deadline has
// passed, beyond any timeout= of a call.
func stageDone(thread *starlark.Thread) bool {
	env := builtins.EnvOf(thread)
	return env != nil && env.Ctx != nil && env.Ctx.Err() != nil
}

func modeBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var mode string
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &mode); err != nil {
		return nil, builtins.Job(err)
	}
	var m Mode
	switch mode {
	case "bootloader":
		m = ModeBootloader
	case "shell":
		m = ModeShell
	default:
		return nil, builtins.Job(fmt.Errorf("%s: unknown mode %q, want \"bootloader\" or \"shell\"", name, mode))
	}
	be, err := BackendFrom(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	be.SetMode(m)
	return starlark.None, nil
}

// sendBuiltin is send or sendline. The table entries declare text secret
// when secret=True, so the envelope keeps it out of the call event and the
// error; the console keeps it out of console.log.
func sendBuiltin(line bool) builtins.Func {
	return func(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var (
			text               string
			delay              millis
			secret, verifyEcho bool
		)
		var err error
		if line {
			err = starlark.UnpackArgs(name, args, kwargs, "text", &text, "delay_ms?", &delay, "verify_echo?", &verifyEcho, "secret?", &secret)
		} else {
			err = starlark.UnpackArgs(name, args, kwargs, "text", &text, "delay_ms?", &delay, "secret?", &secret)
		}
		if err != nil {
			return nil, builtins.Job(err)
		}
		be, err := BackendFrom(thread)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ctx, cancel := builtins.CallContext(thread, 0)
		defer cancel()
		o := SendOptions{Delay: delay.d, DelaySet: delay.set, Secret: secret, VerifyEcho: verifyEcho}
		if line {
			err = be.SendLine(ctx, text, o)
		} else {
			err = be.Send(ctx, text, o)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return starlark.None, nil
	}
}
