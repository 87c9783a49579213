// Package test is the Starlark module "test": it records test cases.
//
//	test.case(name, result, measurement=None, units=None, message=None)
//	test.parse(text, format="tap", prefix="")
//	test.run_definition(repo, ref=None, path=".", run="./run.sh", params={}, format="lava", timeout=None, prefix="")
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
	"github.com/basalt-lab/basalt/builtins/test/report"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
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
	}, {
		Name:   "parse",
		Params: `text, format="tap", prefix=""`,
		Doc: "Turns a command's output into test cases, each recorded as by test.case. format is \"tap\" (TAP 13 and 14; " +
			"TAP 14 subtests become suite.case), \"ktap\" (the kernel's KTAP version 1, kselftest and KUnit output; nested " +
			"tests become suite.case, console timestamps and unknown lines are allowed) or \"lava\" (lava-test-case NAME " +
			"--result pass|fail|skip|unknown [--measurement M --units U] lines and LAVA_SIGNAL_TESTCASE lines). prefix is " +
			"put before every case name (\"ltp.\"). Returns struct(cases, problems): cases a list of struct(name, result, " +
			"message), problems a list of \"line N: why: text\" strings for what did not parse (not TAP, a wrong test number, " +
			"a plan not met, a bail out); the cases that parsed count all the same. The problems are also a \"test_parse\" " +
			"event; the output itself stays in console.log as it was.",
		Action: true,
		Fn:     parse,
	}, {
		Name:   "run_definition",
		Params: `repo, ref=None, path=".", run="./run.sh", params={}, format="lava", timeout=None, prefix=""`,
		Doc:    runDefinitionDoc,
		Action: true,
		Fn:     runDefinition,
	}},
}

var parsers = map[string]func(string) ([]report.Case, []report.Problem){
	"tap": report.TAP, "ktap": report.KTAP, "lava": report.LAVA,
}

func parse(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var text, format, prefix string
	format = "tap"
	if err := starlark.UnpackArgs(name, args, kwargs, "text", &text, "format?", &format, "prefix?", &prefix); err != nil {
		return nil, builtins.Job(err)
	}
	fn, ok := parsers[format]
	if !ok {
		return nil, builtins.Job(fmt.Errorf("%s: unknown format %q, want \"tap\", \"ktap\" or \"lava\"", name, format))
	}
	cases, problems := fn(text)
	list, probs, strs := recordCases(thread, prefix, cases, problems)
	if env := builtins.EnvOf(thread); env != nil && env.Rec != nil {
		env.Rec.Emit("test_parse", map[string]any{"format": format, "cases": len(cases), "problems": strs, "pos": builtins.Caller(thread)})
	}
	return starlarkstruct.FromStringDict(starlark.String("parsed"), starlark.StringDict{
		"cases": starlark.NewList(list), "problems": starlark.NewList(probs),
	}), nil
}

// recordCases records each parsed case as a test case (named prefix+name)
// and returns the cases and problems as Starlark values, and the problems
// as strings for the test_parse event.
func recordCases(thread *starlark.Thread, prefix string, cases []report.Case, problems []report.Problem) (list, probs []starlark.Value, strs []string) {
	list = make([]starlark.Value, 0, len(cases))
	for _, c := range cases {
		tc := builtins.TestCase{Name: prefix + c.Name, Result: c.Result, Message: c.Message, Measurement: c.Measurement, Units: c.Units}
		record(thread, tc)
		list = append(list, starlarkstruct.FromStringDict(starlark.String("case"), starlark.StringDict{
			"name": starlark.String(tc.Name), "result": starlark.String(tc.Result), "message": starlark.String(tc.Message),
		}))
	}
	probs = make([]starlark.Value, len(problems))
	strs = make([]string, len(problems))
	for i, p := range problems {
		strs[i] = p.String()
		probs[i] = starlark.String(strs[i])
	}
	return list, probs, strs
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
	record(thread, tc)
	return starlark.String(res), nil
}

// record gives tc its time, stage and attempt and hands it to the recorder.
func record(thread *starlark.Thread, tc builtins.TestCase) {
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
}
