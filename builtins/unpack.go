package builtins

import (
	"fmt"

	"go.starlark.net/starlark"
)

// The Opt unpackers take an optional keyword argument for which None
// means "not given": Set tells whether a value was given, and V keeps
// what it held before (its default) otherwise. Their errors read "must be
// ..., not TYPE", so that starlark.UnpackArgs's "fn: for parameter NAME: "
// before them reads as a sentence; they never show the value given (it may
// be a secret).

// OptStr is an optional string.
type OptStr struct {
	V   string
	Set bool
}

// Unpack implements starlark.Unpacker.
func (o *OptStr) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	s, ok := v.(starlark.String)
	if !ok {
		return fmt.Errorf("must be a string, not %s", v.Type())
	}
	o.V, o.Set = string(s), true
	return nil
}

// OptInt is an optional integer that fits an int64.
type OptInt struct {
	V   int64
	Set bool
}

// Unpack implements starlark.Unpacker.
func (o *OptInt) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	i, ok := v.(starlark.Int)
	if !ok {
		return fmt.Errorf("must be an integer, not %s", v.Type())
	}
	n, ok := i.Int64()
	if !ok {
		return fmt.Errorf("= %s is too large", i)
	}
	o.V, o.Set = n, true
	return nil
}

// In returns the value, or def when none was given, and an error unless
// it lies in lo..hi.
func (o OptInt) In(def, lo, hi int) (int, error) {
	if !o.Set {
		return def, nil
	}
	if o.V < int64(lo) || o.V > int64(hi) {
		return 0, fmt.Errorf("= %d is out of range %d..%d", o.V, lo, hi)
	}
	return int(o.V), nil
}

// OptBool is an optional True or False.
type OptBool struct {
	V   bool
	Set bool
}

// Unpack implements starlark.Unpacker.
func (o *OptBool) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	b, ok := v.(starlark.Bool)
	if !ok {
		return fmt.Errorf("must be True or False, not %s", v.Type())
	}
	o.V, o.Set = bool(b), true
	return nil
}

// OptList is an optional list or tuple (not a string), its elements
// unchecked.
type OptList struct {
	V   []starlark.Value
	Set bool
}

// Unpack implements starlark.Unpacker.
func (o *OptList) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	seq, ok := v.(starlark.Indexable)
	if _, isStr := v.(starlark.String); !ok || isStr {
		return fmt.Errorf("must be a list, not %s", v.Type())
	}
	o.V = make([]starlark.Value, seq.Len())
	for i := range o.V {
		o.V[i] = seq.Index(i)
	}
	o.Set = true
	return nil
}

// OptStrList is an optional list of strings.
type OptStrList struct {
	V   []string
	Set bool
}

// Unpack implements starlark.Unpacker.
func (o *OptStrList) Unpack(v starlark.Value) error {
	var l OptList
	if err := l.Unpack(v); err != nil || !l.Set {
		return err
	}
	var out []string // nil for an empty list, as for none
	for i, x := range l.V {
		s, ok := x.(starlark.String)
		if !ok {
			return fmt.Errorf("[%d] must be a string, not %s", i, x.Type())
		}
		out = append(out, string(s))
	}
	o.V, o.Set = out, true
	return nil
}

// OptDict is an optional dict.
type OptDict struct {
	V *starlark.Dict
}

// Unpack implements starlark.Unpacker.
func (o *OptDict) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		return fmt.Errorf("must be a dict, not %s", v.Type())
	}
	o.V = d
	return nil
}

// OptValue is an optional argument of any type but None.
type OptValue struct {
	V starlark.Value
}

// Unpack implements starlark.Unpacker.
func (o *OptValue) Unpack(v starlark.Value) error {
	if v != starlark.None {
		o.V = v
	}
	return nil
}
