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

// Timeout unpacks a builtin's timeout= argument: like Duration, but a value
// given must be positive (None is zero: the deadline of the stage).
type Timeout struct{ Duration }

// Unpack implements starlark.Unpacker.
func (t *Timeout) Unpack(v starlark.Value) error {
	switch x := v.(type) {
	case starlark.String:
		d, err := time.ParseDuration(string(x))
		if err != nil {
			return fmt.Errorf("timeout: %w", err)
		}
		if d <= 0 {
			return fmt.Errorf("timeout: %s is not positive", x)
		}
	case starlark.Int, starlark.Float:
		if f, _ := starlark.AsFloat(x); f <= 0 {
			return fmt.Errorf("timeout: %s is not a positive number of seconds", x)
		}
	}
	if err := t.Duration.Unpack(v); err != nil {
		return fmt.Errorf("timeout: %w", err)
	}
	return nil
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
