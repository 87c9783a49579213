package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// KnownIssuesFile is the lab file, beside lab.star, that lists the lab's
// known issues.
const KnownIssuesFile = "known-issues.star"

// KnownIssue is one known_issue(...) of known-issues.star: a signature of
// a failure someone has seen and filed. A failed run's failures (its
// error, its failed tests) are matched against it at the end of the run;
// every key it gives must match.
type KnownIssue struct {
	ID    string // "LAB-12"
	URL   string // where it is tracked
	Title string // what it is, in a few words
	// ErrorClass is infra, device, job or canceled for the job's error,
	// test for a failed test case.
	ErrorClass string
	Stage      string // the stage the failure happened in ("cleanup:NAME" for a cleanup)
	Builtin    string // the builtin whose call failed ("sol.expect")
	// Error matches the error message (a failed test's message);
	// Console the console of the failure's stage; Test the failed test's
	// name.
	Error, Console, Test *regexp.Regexp
	Pos                  string // file:line:col of the known_issue() call
}

// KnownErrorClasses are the values known_issue(error_class=) takes.
var KnownErrorClasses = []string{"infra", "device", "job", "canceled", "test"}

// LoadKnownIssues reads DIR/known-issues.star; a lab without one has no
// known issues. Every mistake in it (an unknown key, a bad regexp, an id
// given twice, a signature that would match every failure) is an error
// naming the file, line and key.
func LoadKnownIssues(dir string) ([]KnownIssue, error) {
	if dir == "" {
		return nil, nil
	}
	file := filepath.Join(dir, KnownIssuesFile)
	src, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, osErr(err))
	}
	if len(src) > maxFileSize {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", file, maxFileSize)
	}
	var issues []KnownIssue
	lines := strings.Split(string(src), "\n")
	// keyPos is where key = ... is written in the call at pos, for errors.
	keyPos := func(pos syntax.Position, key string) string {
		re := regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `\s*=`)
		for i := int(pos.Line) - 1; i >= 0 && i < len(lines); i++ {
			if loc := re.FindStringIndex(lines[i]); loc != nil {
				return fmt.Sprintf("%s:%d:%d", file, i+1, loc[0]+1)
			}
			if i > int(pos.Line)-1 && strings.Contains(lines[i], "known_issue(") {
				break
			}
		}
		return pos.String()
	}
	knownIssue := func(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		pos := thread.CallFrame(1).Pos
		var k KnownIssue
		var errRE, conRE, testRE string
		if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "id", &k.ID, "url?", &k.URL, "title?", &k.Title,
			"error_class?", &k.ErrorClass, "stage?", &k.Stage, "builtin?", &k.Builtin,
			"error?", &errRE, "console?", &conRE, "test?", &testRE); err != nil {
			return nil, &posError{pos: pos, msg: err.Error()}
		}
		fail := func(key, format string, a ...any) error {
			return fmt.Errorf("%s: known_issue %s: %s", keyPos(pos, key), k.ID, fmt.Sprintf(format, a...))
		}
		if strings.TrimSpace(k.ID) == "" {
			return nil, fail("id", "id is empty")
		}
		if slices.ContainsFunc(issues, func(o KnownIssue) bool { return o.ID == k.ID }) {
			return nil, fail("id", "id %q is given twice", k.ID)
		}
		if k.ErrorClass != "" && !slices.Contains(KnownErrorClasses, k.ErrorClass) {
			return nil, fail("error_class", "error_class = %q is not one of %s", k.ErrorClass, strings.Join(KnownErrorClasses, ", "))
		}
		for _, re := range []struct {
			key, src string
			dst      **regexp.Regexp
		}{{"error", errRE, &k.Error}, {"console", conRE, &k.Console}, {"test", testRE, &k.Test}} {
			if re.src == "" {
				continue
			}
			c, err := regexp.Compile(re.src)
			if err != nil {
				return nil, fail(re.key, "%s = %q: %v", re.key, re.src, err)
			}
			*re.dst = c
		}
		if k.ErrorClass == "" && k.Stage == "" && k.Builtin == "" && k.Error == nil && k.Console == nil && k.Test == nil {
			return nil, fail("id", "the signature is empty and would match every failure: give error_class, stage, builtin, error, console or test")
		}
		k.Pos = pos.String()
		issues = append(issues, k)
		return starlark.None, nil
	}
	thread := &starlark.Thread{
		Name: file,
		Load: func(*starlark.Thread, string) (starlark.StringDict, error) {
			return nil, errors.New("load() is not allowed in lab files")
		},
		Print: func(*starlark.Thread, string) {},
	}
	thread.SetMaxExecutionSteps(maxSteps)
	pre := starlark.StringDict{"known_issue": starlark.NewBuiltin("known_issue", knownIssue)}
	if _, err := starlark.ExecFileOptions(fileOptions, thread, file, src, pre); err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			if cause := errors.Unwrap(ee); cause != nil {
				var pe *posError
				if errors.As(cause, &pe) {
					return nil, pe
				}
				if strings.HasPrefix(cause.Error(), file+":") {
					return nil, cause
				}
			}
		}
		return nil, fileError(file, err)
	}
	return issues, nil
}
