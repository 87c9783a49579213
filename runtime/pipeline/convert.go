package pipeline

import (
	"fmt"
	"sort"
	"time"

	stime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"
)

func durationValue(d time.Duration) starlark.Value { return stime.Duration(d) }

// ToStarlark converts plain Go values (from device facts) to Starlark.
func ToStarlark(v any) starlark.Value {
	switch v := v.(type) {
	case nil:
		return starlark.None
	case starlark.Value:
		return v
	case string:
		return starlark.String(v)
	case bool:
		return starlark.Bool(v)
	case int:
		return starlark.MakeInt(v)
	case int64:
		return starlark.MakeInt64(v)
	case float64:
		return starlark.Float(v)
	case time.Duration:
		return stime.Duration(v)
	case []string:
		l := make([]starlark.Value, len(v))
		for i, s := range v {
			l[i] = starlark.String(s)
		}
		return starlark.NewList(l)
	case []any:
		l := make([]starlark.Value, len(v))
		for i, s := range v {
			l[i] = ToStarlark(s)
		}
		return starlark.NewList(l)
	case map[string]any:
		d := starlark.NewDict(len(v))
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.SetKey(starlark.String(k), ToStarlark(v[k]))
		}
		return d
	}
	return starlark.String(fmt.Sprint(v))
}
