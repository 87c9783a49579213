// Package report turns test output into test cases: TAP 13 and 14
// (testanything.org), the kernel's KTAP version 1
// (Documentation/dev-tools/ktap.rst) and LAVA's lava-test-case lines. Each
// parser is a pure function of the text; what it cannot read is returned as
// a [Problem] naming the line, never dropped silently.
package report

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Case is one test result.
type Case struct {
	Name        string
	Result      string // pass | fail | skip | unknown
	Message     string // the directive's or the diagnostic's text
	Measurement *float64
	Units       string
	Line        int // 1-based line of the result
}

// Problem is a line (or the end of the output) the parser could not fit.
type Problem struct {
	Line   int // 1-based; 0 for the end of the output
	Text   string
	Reason string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return "end of output: " + p.Reason
	}
	return fmt.Sprintf("line %d: %s: %q", p.Line, p.Reason, p.Text)
}

// level is one nesting level of TAP or KTAP results.
type level struct {
	indent  int
	plan    int // -1: none yet
	planAt  int
	n       int    // results at this level
	cases   []Case // final cases, names relative to this level
	pending []Case // a deeper level's cases, waiting for their parent's result line
}

type tapParser struct {
	ktap     bool
	problems []Problem
	stack    []*level
	yaml     int // indent of an open YAML block, -1 when none
	yamlBuf  []string
	last     *Case
}

var (
	resultRe = regexp.MustCompile(`^(not ok|ok)\b\s*(\d+)?\s*(.*)$`)
	planRe   = regexp.MustCompile(`^(\d+)\.\.(\d+)\s*(?:#.*)?$`)
	// A kernel console line's timestamp: "[    1.234567] ".
	stampRe = regexp.MustCompile(`^\[\s*\d+\.\d+\]\s?`)
)

// TAP parses TAP 13 or 14 output. Subtests (TAP 14's indented blocks)
// become "parent.child" cases; YAML diagnostics become the message of the
// case before them. Lines that are not TAP are problems.
func TAP(text string) ([]Case, []Problem) { return parseTAP(text, false) }

// KTAP parses KTAP version 1 output (also the kernel's "TAP version 13"
// kselftest output). Nested tests become "suite.case"; the kernel's
// timestamps are stripped; unknown lines are allowed, as the
// specification says, and are not problems.
func KTAP(text string) ([]Case, []Problem) { return parseTAP(text, true) }

func parseTAP(text string, ktap bool) ([]Case, []Problem) {
	p := &tapParser{ktap: ktap, yaml: -1, stack: []*level{{indent: 0, plan: -1}}}
	for i, raw := range strings.Split(text, "\n") {
		p.line(i+1, strings.TrimRight(raw, "\r"))
	}
	p.closeYAML()
	for len(p.stack) > 1 {
		p.pop(0)
	}
	top := p.stack[0]
	p.endLevel(top)
	for _, c := range top.pending {
		p.problems = append(p.problems, Problem{Line: c.Line, Text: c.Name, Reason: "subtest result with no parent result line"})
		top.cases = append(top.cases, c)
	}
	return top.cases, p.problems
}

func indentOf(s string) (int, string) {
	n := 0
	for n < len(s) && (s[n] == ' ' || s[n] == '\t') {
		n++
	}
	return n, s[n:]
}

func (p *tapParser) line(no int, raw string) {
	if p.ktap {
		raw = stampRe.ReplaceAllString(raw, "")
	}
	ind, s := indentOf(raw)
	if p.yaml >= 0 {
		if strings.TrimSpace(s) == "..." && ind == p.yaml {
			p.closeYAML()
			return
		}
		if ind >= p.yaml || strings.TrimSpace(s) == "" {
			p.yamlBuf = append(p.yamlBuf, strings.TrimPrefix(raw, strings.Repeat(" ", p.yaml)))
			return
		}
		p.problems = append(p.problems, Problem{Line: no, Text: raw, Reason: "YAML block not closed with \"...\""})
		p.closeYAML()
	}
	if strings.TrimSpace(s) == "" {
		return
	}
	switch {
	case s == "---" && !p.ktap && p.last != nil:
		p.yaml = ind
		p.yamlBuf = nil
		return
	case strings.HasPrefix(s, "#"):
		return // a diagnostic (TAP 14's "# Subtest: name" too)
	case strings.HasPrefix(s, "Bail out!"):
		p.problems = append(p.problems, Problem{Line: no, Text: raw, Reason: "bail out"})
		return
	case strings.HasPrefix(s, "pragma ") && !p.ktap:
		return
	}
	version := strings.HasPrefix(s, "TAP version ") || strings.HasPrefix(s, "KTAP version ")
	m := resultRe.FindStringSubmatch(s)
	pm := planRe.FindStringSubmatch(s)
	if !version && m == nil && pm == nil {
		if !p.ktap {
			p.problems = append(p.problems, Problem{Line: no, Text: raw, Reason: "not TAP"})
		}
		return
	}
	p.at(ind, no)
	top := p.stack[len(p.stack)-1]
	switch {
	case version:
		if top.n > 0 || top.plan >= 0 {
			p.problems = append(p.problems, Problem{Line: no, Text: raw, Reason: "version line after results"})
		}
	case pm != nil:
		n, _ := strconv.Atoi(pm[2])
		if top.plan >= 0 {
			p.problems = append(p.problems, Problem{Line: no, Text: raw, Reason: "second plan"})
		}
		top.plan, top.planAt = n, no
		if pm[1] != "1" {
			p.problems = append(p.problems, Problem{Line: no, Text: raw, Reason: "plan does not start at 1"})
		}
	default:
		p.result(top, no, raw, m)
	}
}

// at moves to the nesting level of a line indented by ind.
func (p *tapParser) at(ind, no int) {
	for len(p.stack) > 1 && ind < p.stack[len(p.stack)-1].indent {
		p.pop(no)
	}
	if top := p.stack[len(p.stack)-1]; ind > top.indent {
		p.stack = append(p.stack, &level{indent: ind, plan: -1})
	}
}

// pop ends the deepest level: its cases wait for the parent's result line.
func (p *tapParser) pop(no int) {
	l := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	p.endLevel(l)
	parent := p.stack[len(p.stack)-1]
	parent.pending = append(parent.pending, l.pending...)
	parent.pending = append(parent.pending, l.cases...)
}

func (p *tapParser) endLevel(l *level) {
	if l.plan >= 0 && l.plan != l.n {
		p.problems = append(p.problems, Problem{Line: l.planAt, Text: fmt.Sprintf("1..%d", l.plan), Reason: fmt.Sprintf("planned %d tests, got %d", l.plan, l.n)})
	}
}

func (p *tapParser) result(top *level, no int, raw string, m []string) {
	top.n++
	if m[2] != "" {
		if n, _ := strconv.Atoi(m[2]); n != top.n {
			p.problems = append(p.problems, Problem{Line: no, Text: raw, Reason: fmt.Sprintf("test number %s, want %d", m[2], top.n)})
		}
	}
	desc, directive := splitDirective(m[3])
	if !p.ktap {
		desc = strings.TrimSpace(strings.TrimPrefix(desc, "- "))
		desc = strings.ReplaceAll(desc, `\#`, "#")
	}
	if desc == "" {
		desc = "test " + strconv.Itoa(top.n)
	}
	c := Case{Name: desc, Result: "pass", Line: no}
	if m[1] == "not ok" {
		c.Result = "fail"
	}
	word, rest, _ := strings.Cut(directive, " ")
	switch w := strings.ToUpper(word); {
	case strings.HasPrefix(w, "SKIP"):
		c.Result, c.Message = "skip", strings.TrimSpace(rest)
	case w == "TODO" && !p.ktap:
		// TAP: a TODO test's failure is expected, not counted.
		if c.Result == "fail" {
			c.Result = "skip"
		}
		c.Message = directive
	case w == "XFAIL" && p.ktap:
		c.Result, c.Message = "pass", directive // an expected failure
	default:
		c.Message = directive
	}
	if len(top.pending) > 0 {
		// The result line of a suite: its subtests are its cases.
		for _, sub := range top.pending {
			sub.Name = c.Name + "." + sub.Name
			top.cases = append(top.cases, sub)
		}
		top.pending = nil
		p.last = nil
		return
	}
	top.cases = append(top.cases, c)
	p.last = &top.cases[len(top.cases)-1]
}

// splitDirective splits "desc # DIRECTIVE text" at the first unescaped #.
func splitDirective(s string) (desc, directive string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == '#' {
			return strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
		}
	}
	return strings.TrimSpace(s), ""
}

func (p *tapParser) closeYAML() {
	if p.yaml < 0 {
		return
	}
	if p.last != nil {
		msg := strings.TrimSpace(strings.Join(p.yamlBuf, "\n"))
		if p.last.Message != "" {
			msg = p.last.Message + "\n" + msg
		}
		p.last.Message = msg
	}
	p.yaml, p.yamlBuf = -1, nil
}
