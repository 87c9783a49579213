// Package clock is the Starlark module "time": go.starlark.net/lib/time
// plus sleep, which honours the job's deadline and cancellation.
//
//	time.sleep(duration)
//	time.now(), time.parse_duration(d), time.parse_time(x, format=, location=),
//	time.time(...), time.from_timestamp(sec, nsec), time.is_valid_timezone(loc),
//	time.nanosecond ... time.hour
package clock

import (
	"fmt"
	"sort"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	stime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"
)

// libDocs documents lib/time's members for `basalt doc time`.
var libDocs = map[string][2]string{
	"from_timestamp":    {"sec, nsec=0", "Returns the time.time of a Unix timestamp."},
	"is_valid_timezone": {"loc", "Reports whether loc is a valid time zone name."},
	"now":               {"", "Returns the current local time."},
	"parse_duration":    {"d", "Parses a duration string such as \"1h30m\"."},
	"parse_time":        {`x, format="2006-01-02T15:04:05Z07:00", location="UTC"`, "Parses a time string."},
	"time":              {"year=, month=, day=, hour=, minute=, second=, nanosecond=, location=", "Returns the time.time of the given fields."},
	"nanosecond":        {"", "The duration of one nanosecond."},
	"microsecond":       {"", "The duration of one microsecond."},
	"millisecond":       {"", "The duration of one millisecond."},
	"second":            {"", "The duration of one second."},
	"minute":            {"", "The duration of one minute."},
	"hour":              {"", "The duration of one hour."},
}

// Table is the "time" module.
var Table = func() *builtins.Table {
	t := &builtins.Table{
		Name: "time",
		Doc:  "Time and durations (go.starlark.net/lib/time), plus sleep, which honours the job's deadline.",
	}
	names := make([]string, 0, len(stime.Module.Members))
	for k := range stime.Module.Members {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		d := libDocs[k]
		t.Members = append(t.Members, builtins.Builtin{Name: k, Params: d[0], Doc: d[1], Value: stime.Module.Members[k]})
	}
	t.Members = append(t.Members, builtins.Builtin{
		Name: "sleep", Params: "duration",
		Doc: "Waits for duration (\"5s\", seconds, or a time.duration). It ends early with an error when the stage's " +
			"deadline passes or the job is canceled. Refused at a job file's top level: declaring a job never waits.",
		Fn: sleep,
	})
	return t
}()

func sleep(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var d builtins.Duration
	if err := starlark.UnpackArgs(name, args, kwargs, "duration", &d); err != nil {
		return nil, builtins.Job(err)
	}
	if env := builtins.EnvOf(thread); env != nil && env.Declaring {
		// The declare phase (and so `basalt check`) never waits on anything;
		// a wait belongs in a stage, under the stage's deadline.
		return nil, builtins.Job(fmt.Errorf("%s: refused at top level (declaring the job never waits); sleep in a stage or cleanup function", name))
	}
	ctx, cancel := builtins.CallContext(thread, 0)
	defer cancel()
	defer builtins.Unlocked(thread)() // other parallel() functions run meanwhile
	t := time.NewTimer(d.D())
	defer t.Stop()
	select {
	case <-t.C:
		return starlark.None, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s(%s): %w", name, d.D(), ctx.Err())
	}
}
