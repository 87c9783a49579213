// Package test is the Starlark module "test": it records test cases.
//
//	test.case(name, result, measurement=None, units=None, message=None)
//
// result is "pass", "fail", "skip" or "unknown", or a bool (True = pass).
// message says why (junit.xml's failure text). A case's time is the time
// since the stage attempt began or since its previous case.
// A failed case makes the job's tests fail (exit 1), not the job.
package test

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
)

// Table is the "test" module.
var Table = &builtins.Table{
	Name: "test",
	Doc:  "Test results: each case goes to result.json, events.jsonl and junit.xml.",
	Members: []builtins.Builtin{{
		Name:   "case",
		Params: "name, result, measurement=None, units=None, message=None",
		Doc: "Records a test case. result is \"pass\", \"fail\", \"skip\", \"unknown\" or a bool (True is pass). " +
			"measurement is an optional number with its units (\"ms\", \"MB/s\"). A failed case fails the job's tests " +
			"(exit 1) without stopping the job. message says why (the failure text in junit.xml, whose system-out also " +
			"holds the console before a failed case). The case's time is the time since the stage attempt began or " +
			"since its previous case. Returns the result string.",
		Action: true,
		Fn:     testCase,
	}},
}

const lastCaseKey = "basalt.test.last_case"

var results = []string{"pass", "fail", "skip", "unknown"}

func testCase(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		caseName    string
		result      starlark.Value
		measurement starlark.Value = starlark.None
		units       string
		message     starlark.Value = starlark.None
	)
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &caseName, "result", &result,
		"measurement?", &measurement, "units?", &units, "message?", &message); err != nil {
		return nil, builtins.Job(err)
	}
	caseName = strings.TrimSpace(caseName)
	if caseName == "" {
		return nil, builtins.Job(fmt.Errorf("%s: name must not be empty", name))
	}
	var res string
	switch r := result.(type) {
	case starlark.Bool:
		res = "fail"
		if r {
			res = "pass"
		}
	case starlark.String:
		res = strings.ToLower(string(r))
		ok := false
		for _, v := range results {
			ok = ok || v == res
		}
		if !ok {
			return nil, builtins.Job(fmt.Errorf("%s: result %q for %q: want one of %s or a bool", name, string(r), caseName, strings.Join(results, ", ")))
		}
	default:
		return nil, builtins.Job(fmt.Errorf("%s: result for %q is a %s; want one of %s or a bool", name, caseName, result.Type(), strings.Join(results, ", ")))
	}
	tc := builtins.TestCase{Name: caseName, Result: res, Units: units}
	if measurement != starlark.None {
		f, ok := starlark.AsFloat(measurement)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, builtins.Job(fmt.Errorf("%s: measurement for %q must be a finite number, got %s", name, caseName, measurement))
		}
		tc.Measurement = &f
	}
	switch m := message.(type) {
	case starlark.NoneType:
	case starlark.String:
		tc.Message = string(m)
	default:
		return nil, builtins.Job(fmt.Errorf("%s: message for %q is a %s, want a string", name, caseName, message.Type()))
	}
	env := builtins.EnvOf(thread)
	if env != nil {
		// A case's time: since the attempt began, or since the previous
		// case of this attempt (each attempt has a thread of its own).
		now := time.Now()
		since := env.Started
		if last, ok := thread.Local(lastCaseKey).(time.Time); ok && last.After(since) {
			since = last
		}
		if !since.IsZero() {
			tc.DurationMS = now.Sub(since).Milliseconds()
		}
		thread.SetLocal(lastCaseKey, now)
		tc.Attempt = env.Attempt
		tc.Stage = env.Stage
		if env.Rec != nil {
			env.Rec.TestCase(tc)
		}
	}
	return starlark.String(res), nil
}
