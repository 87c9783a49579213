package interp

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// MaxSourceSize bounds a job file and each library it loads. Job files are
// written by hand; anything near the limit is generated or hostile.
const MaxSourceSize = 1 << 20

// MaxNesting bounds how deeply brackets ((, [, {) nest in a job file, as
// Python's parser does (200). go.starlark.net's parser, resolver and
// compiler recurse once per level; a file nested 300 000 deep exhausts the
// goroutine stack, a fatal error that no recover() can catch, so the depth is
// checked by a scan before anything parses the file.
const MaxNesting = 200

// MaxStatementOps bounds the operators, calls, indexes and attribute
// accesses of one statement. A chain such as 1+1+1... or a if b else c if
// ... builds a tree as deep as it is long, which the resolver and compiler
// walk recursively (and the parser slowly): 100 000 of them take seconds
// and hundreds of MB of stack, before any deadline can stop them.
const MaxStatementOps = 10000

// maxUnaryRun bounds runs of prefix operators (-, +, ~, not, lambda),
// which nest in the parser without brackets.
const maxUnaryRun = 200

// readLimited reads a source file of at most MaxSourceSize bytes.
func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxSourceSize+1))
}

// checkSource refuses sources too large or too deeply nested to be parsed
// safely. The error names the file and, for nesting, the line and column.
func checkSource(name string, src []byte) error {
	if len(src) > MaxSourceSize {
		return fmt.Errorf("%s: the file is larger than %d bytes (the limit of a job file or library)", name, MaxSourceSize)
	}
	if line, col, what, ok := nestingProblem(src); !ok {
		return fmt.Errorf("%s:%d:%d: %s", name, line, col, what)
	}
	return nil
}

// nestingProblem scans src as Starlark tokens only as far as needed to
// count nesting: it skips comments and string literals (single, triple,
// with escapes) and counts open brackets and runs of prefix operators.
func nestingProblem(src []byte) (line, col int, what string, ok bool) {
	depth, run, ops := 0, 0, 0
	line, col = 1, 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		col++
		switch {
		case c == '\n':
			line, col = line+1, 0
			run = 0
			if depth == 0 {
				ops = 0
			}
		case c == ';' && depth == 0:
			ops = 0
		case c == '#':
			for i+1 < len(src) && src[i+1] != '\n' {
				i++
			}
		case c == '\'' || c == '"':
			q := c
			triple := i+2 < len(src) && src[i+1] == q && src[i+2] == q
			if triple {
				i += 2
			}
			for i++; i < len(src); i++ {
				if src[i] == '\n' {
					line, col = line+1, 0
				}
				if src[i] == '\\' {
					i++
					continue
				}
				if src[i] == q && (!triple || (i+2 < len(src) && src[i+1] == q && src[i+2] == q)) {
					if triple {
						i += 2
					}
					break
				}
			}
			run = 0
		case c == '(' || c == '[' || c == '{':
			depth++
			ops++
			if depth > MaxNesting {
				return line, col, fmt.Sprintf("brackets nest more than %d deep", MaxNesting), false
			}
			run = 0
		case c == ')' || c == ']' || c == '}':
			if depth > 0 {
				depth--
			}
			run = 0
		case c == '-' || c == '+' || c == '~':
			run++
			ops++
		case strings.IndexByte("*/%&|^<>=!.", c) >= 0:
			run = 0
			ops++
		case c == ' ' || c == '\t' || c == '\r' || c == '\\' || c == ':':
		case isIdent(c):
			j := i
			for j < len(src) && isIdent(src[j]) {
				j++
			}
			switch string(src[i:j]) {
			case "not", "lambda":
				run++
				ops++
			case "and", "or", "if", "else", "in":
				run = 0
				ops++
			default:
				run = 0
			}
			col += j - i - 1
			i = j - 1
		default:
			run = 0
		}
		if ops > MaxStatementOps {
			return line, col, fmt.Sprintf("the statement has more than %d operators, calls, indexes and attribute accesses", MaxStatementOps), false
		}
		if run > maxUnaryRun {
			return line, col, fmt.Sprintf("more than %d prefix operators (-, +, ~, not, lambda) in a row", maxUnaryRun), false
		}
	}
	return 0, 0, "", true
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// Pos returns the position of the Starlark line that was running when ee
// happened, "file:line:col". It is Pos(ee) corrected for one case: code
// that spins without any instruction that carries a position (`while True:
// pass`) reports the last position before the loop — the def line, or a
// previous statement — so when that position lies in no loop of its
// function, the first loop after it is the line that was running.
func (p *Plan) Pos(ee *starlark.EvalError) string {
	for i := len(ee.CallStack) - 1; i >= 0; i-- {
		fr := ee.CallStack[i]
		if !fr.Pos.IsValid() || fr.Pos.Filename() == "<builtin>" {
			continue
		}
		if p != nil && i == len(ee.CallStack)-1 && strings.Contains(ee.Msg, "Starlark computation cancelled") {
			if src, ok := p.sources[fr.Pos.Filename()]; ok {
				if lp, ok := loopAfter(fr.Pos, src); ok {
					return lp.String()
				}
			}
		}
		return fr.Pos.String()
	}
	return ""
}

// loopAfter returns the first loop at or after pos in pos's function (or
// top level) when pos itself is in no loop.
func loopAfter(pos syntax.Position, src []byte) (syntax.Position, bool) {
	f, err := FileOptions.Parse(pos.Filename(), src, 0)
	if err != nil {
		return syntax.Position{}, false
	}
	before := func(a, b syntax.Position) bool {
		return a.Line < b.Line || a.Line == b.Line && a.Col <= b.Col
	}
	inside := func(n syntax.Node) bool {
		start, end := n.Span()
		return before(start, pos) && before(pos, end)
	}
	// The innermost def holding pos (its body is where the frame runs);
	// nil for top level.
	var fn *syntax.DefStmt
	syntax.Walk(f, func(n syntax.Node) bool {
		if d, ok := n.(*syntax.DefStmt); ok && inside(d) {
			fn = d
		}
		return true
	})
	var body []syntax.Stmt
	if fn != nil {
		body = fn.Body
	} else {
		body = f.Stmts
	}
	var loops []syntax.Node
	var collect func(stmts []syntax.Stmt)
	collect = func(stmts []syntax.Stmt) {
		for _, s := range stmts {
			switch s := s.(type) {
			case *syntax.WhileStmt:
				loops = append(loops, s)
				collect(s.Body)
			case *syntax.ForStmt:
				loops = append(loops, s)
				collect(s.Body)
			case *syntax.IfStmt:
				collect(s.True)
				collect(s.False)
			}
		}
	}
	collect(body)
	for _, l := range loops {
		if inside(l) {
			return syntax.Position{}, false
		}
	}
	for _, l := range loops {
		start, _ := l.Span()
		if before(pos, start) {
			return start, true
		}
	}
	return syntax.Position{}, false
}

// escapeControl writes control characters (a NUL from a load path, an
// escape sequence) as \xNN so that an error message cannot corrupt the
// terminal or a log; newlines and tabs stay.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f
}

// escapedError is an error whose message has its control characters
// escaped; errors.As still finds its class.
type escapedError struct{ err error }

func (e *escapedError) Error() string { return escapeControl(e.err.Error()) }
func (e *escapedError) Unwrap() error { return e.err }

func escaped(err error) error {
	if err == nil || !strings.ContainsFunc(err.Error(), isControl) {
		return err
	}
	return &escapedError{err}
}

// CheckSource is the check Declare applies to every file before parsing
// it, for other parsers of job files (the static call check) to apply
// first: a file it refuses would crash them too.
func CheckSource(name string, src []byte) error { return checkSource(name, src) }
