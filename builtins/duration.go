package builtins

import (
	"fmt"
	"time"

	stime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"
)

// Duration unpacks a Starlark duration argument: a string accepted by
// time.ParseDuration ("30s", "1h30m"), a number of seconds (int or float), a
// time.duration value, or None (zero: "no timeout of its own").
type Duration time.Duration

// Unpack implements starlark.Unpacker.
func (d *Duration) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.NoneType:
		*d = 0
	case starlark.String:
		t, err := time.ParseDuration(string(v))
		if err != nil {
			return fmt.Errorf("duration %s: want a duration like \"30s\" or \"20m\"", v)
		}
		if t < 0 {
			return fmt.Errorf("duration %s is negative", v)
		}
		*d = Duration(t)
	case starlark.Int:
		n, ok := v.Int64()
		if !ok || n < 0 || n > int64(100*365*24*time.Hour/time.Second) {
			return fmt.Errorf("duration %s seconds is out of range", v)
		}
		*d = Duration(time.Duration(n) * time.Second)
	case starlark.Float:
		if v < 0 || v > starlark.Float(100*365*24*3600) {
			return fmt.Errorf("duration %s seconds is out of range", v)
		}
		*d = Duration(time.Duration(float64(v) * float64(time.Second)))
	case stime.Duration:
		if v < 0 {
			return fmt.Errorf("duration %s is negative", v)
		}
		*d = Duration(v)
	default:
		return fmt.Errorf("got %s, want a duration string or a number of seconds", v.Type())
	}
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Timeout is the one type of every timeout= argument (builtins, stage,
// cleanup, job), with one meaning: None (or leaving it out) is the
// deadline that applies anyway — for a builtin the stage's remaining time;
// a positive duration ("30s", "2m", a number of seconds, a time.duration)
// shortens it (it never extends it); 0 and negative values are errors,
// because "no timeout" is spelled by leaving timeout= out.
type Timeout struct{ Duration }

// errTimeout is the message UnpackArgs puts after "fn: for parameter
// timeout: ".
const errTimeout = "must be positive (got %s); omit it for the stage's deadline"

// Unpack implements starlark.Unpacker.
func (t *Timeout) Unpack(v starlark.Value) error {
	switch x := v.(type) {
	case starlark.NoneType:
		t.Duration = 0
		return nil
	case starlark.String:
		if d, err := time.ParseDuration(string(x)); err == nil && d <= 0 {
			return fmt.Errorf(errTimeout, x)
		}
	case starlark.Int, starlark.Float:
		if f, _ := starlark.AsFloat(x); f <= 0 {
			return fmt.Errorf(errTimeout, x)
		}
	case stime.Duration:
		if x <= 0 {
			return fmt.Errorf(errTimeout, x)
		}
	}
	if err := t.Duration.Unpack(v); err != nil {
		return err
	}
	if t.Duration <= 0 { // a positive number too small for a time.Duration
		return fmt.Errorf(errTimeout, v)
	}
	return nil
}

// Or returns the timeout, or def when none was given.
func (t Timeout) Or(def time.Duration) time.Duration {
	if t.Duration == 0 {
		return def
	}
	return t.D()
}

// OptString unpacks a string or None (the empty string).
type OptString string

// Unpack implements starlark.Unpacker.
func (o *OptString) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.NoneType:
		*o = ""
	case starlark.String:
		*o = OptString(v)
	default:
		return fmt.Errorf("got %s, want string or None", v.Type())
	}
	return nil
}
