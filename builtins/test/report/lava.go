package report

import (
	"math"
	"regexp"
	"strconv"
	"strings"
)

// signalRe is the line LAVA's lava-test-case helper prints for the
// dispatcher (lava_test_shell): <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=...>.
var signalRe = regexp.MustCompile(`<LAVA_SIGNAL_TESTCASE ([^>]*)>`)

// setRe and raiseRe are what lava-test-set and lava-test-raise print: the
// cases between START and STOP are named SET.CASE; a raise is a problem.
var (
	setRe   = regexp.MustCompile(`<LAVA_SIGNAL_TESTSET (START ([^ >]+)|STOP)>`)
	raiseRe = regexp.MustCompile(`<LAVA_SIGNAL_TESTRAISE ?([^>]*)>`)
)

// LAVA reads lava-test-case NAME --result pass|fail|skip|unknown
// [--measurement M --units U] command lines (as echoed on a console, a
// shell prompt before them allowed) and the <LAVA_SIGNAL_TESTCASE ...>
// lines LAVA's helper prints. Other lines are the tests' own output and
// are not problems; a lava-test-case line that does not parse is.
func LAVA(text string) ([]Case, []Problem) {
	var cases []Case
	var problems []Problem
	set := ""
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimRight(raw, "\r")
		no := i + 1
		if m := setRe.FindStringSubmatch(line); m != nil {
			set = m[2]
			continue
		}
		if m := raiseRe.FindStringSubmatch(line); m != nil {
			problems = append(problems, Problem{Line: no, Text: line, Reason: "lava-test-raise: " + m[1]})
			continue
		}
		if m := signalRe.FindStringSubmatch(line); m != nil {
			c, reason := signal(m[1])
			if reason != "" {
				problems = append(problems, Problem{Line: no, Text: line, Reason: reason})
				continue
			}
			if set != "" {
				c.Name = set + "." + c.Name
			}
			c.Line = no
			cases = append(cases, c)
			continue
		}
		at := strings.Index(line, "lava-test-case ")
		if at < 0 || (at > 0 && !strings.ContainsAny(line[at-1:at], " #$>")) {
			continue
		}
		args, ok := shellFields(line[at+len("lava-test-case "):])
		if !ok {
			problems = append(problems, Problem{Line: no, Text: line, Reason: "unbalanced quotes"})
			continue
		}
		c, reason := testCase(args)
		if reason != "" {
			problems = append(problems, Problem{Line: no, Text: line, Reason: reason})
			continue
		}
		if set != "" {
			c.Name = set + "." + c.Name
		}
		c.Line = no
		cases = append(cases, c)
	}
	return cases, problems
}

var lavaResults = map[string]bool{"pass": true, "fail": true, "skip": true, "unknown": true}

func testCase(args []string) (Case, string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "--") {
		return Case{}, "lava-test-case: missing test case name"
	}
	c := Case{Name: args[0]}
	var measurement string
	for i := 1; i < len(args); i++ {
		opt := args[i]
		if opt == "--shell" {
			return Case{}, "lava-test-case --shell: the result is the command's exit code, which the output does not hold"
		}
		if i+1 >= len(args) {
			return Case{}, "lava-test-case: " + opt + " wants a value"
		}
		v := args[i+1]
		i++
		switch opt {
		case "--result":
			c.Result = strings.ToLower(v)
		case "--measurement":
			measurement = v
		case "--units":
			c.Units = v
		default:
			return Case{}, "lava-test-case: unknown option " + opt
		}
	}
	return finish(c, measurement)
}

func finish(c Case, measurement string) (Case, string) {
	if c.Name == "" {
		return Case{}, "lava-test-case: missing test case name"
	}
	if c.Result == "" {
		return Case{}, "lava-test-case: missing --result"
	}
	if !lavaResults[c.Result] {
		return Case{}, "lava-test-case: result " + strconv.Quote(c.Result) + ", want pass, fail, skip or unknown"
	}
	if measurement != "" {
		f, err := strconv.ParseFloat(measurement, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return Case{}, "lava-test-case: measurement " + strconv.Quote(measurement) + " is not a finite number"
		}
		c.Measurement = &f
	}
	return c, ""
}

func signal(fields string) (Case, string) {
	var c Case
	var measurement string
	for _, kv := range strings.Fields(fields) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "TEST_CASE_ID":
			c.Name = v
		case "RESULT":
			c.Result = strings.ToLower(v)
		case "MEASUREMENT":
			measurement = v
		case "UNITS":
			c.Units = v
		}
	}
	return finish(c, measurement)
}

// shellFields splits s into words the way sh would for the simple
// quoting a lava-test-case line uses ('...', "...", backslash).
func shellFields(s string) ([]string, bool) {
	var out []string
	var cur strings.Builder
	in := false
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else if ch == '\\' && quote == '"' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'' || ch == '"':
			quote, in = ch, true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case ch == ' ' || ch == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		case ch == ';' || ch == '&' || ch == '|':
			// The end of the command.
			if in {
				out = append(out, cur.String())
			}
			return out, true
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if quote != 0 {
		return nil, false
	}
	if in {
		out = append(out, cur.String())
	}
	return out, true
}
