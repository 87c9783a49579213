package expect

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"unicode/utf8"
)

// unbounded is the maximum match length of a pattern with no upper bound.
const unbounded = -1

// Pattern is one thing an expect waits for: a literal byte string or a
// regular expression (Go RE2 syntax). The zero Pattern is invalid.
type Pattern struct {
	lit string
	re  *regexp.Regexp

	// maxLen bounds the length of any match in bytes (unbounded = -1).
	maxLen int
	// oneLine reports that no match can contain a newline, so a match
	// that ends in new input starts after the last newline before it.
	oneLine bool
	// beginText: the pattern uses ^ or \A without (?m), which means "at
	// the start of the unconsumed input"; it is always searched from there.
	beginText bool
	// beginLine: the pattern uses (?m)^; searches start at a line start.
	beginLine bool
	// wordBoundary: the pattern uses \b or \B, which look one byte back.
	wordBoundary bool
}

// Literal returns a pattern matching exactly s. It panics if s is empty,
// which would match at once.
func Literal(s string) Pattern {
	if s == "" {
		panic("expect.Literal: empty pattern")
	}
	return Pattern{lit: s, maxLen: len(s), oneLine: !containsNL(s)}
}

func containsNL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return true
		}
	}
	return false
}

// Regexp compiles expr (RE2 syntax, as Go's regexp package) into a pattern.
// Patterns that can match the empty string are refused: they would match
// at once. A regexp that is a plain literal is matched as a literal.
//
// The matcher sees the stream as it arrives, so assertions about the end
// of the text ($ without (?m), \z, and \b or \B at the end of a match) are
// evaluated against the bytes received so far; write "\n" or "\r" instead.
func Regexp(expr string) (Pattern, error) {
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return Pattern{}, fmt.Errorf("regexp %q: %w", expr, err)
	}
	tree = tree.Simplify()
	if minLen(tree) == 0 {
		return Pattern{}, fmt.Errorf("regexp %q can match the empty string", expr)
	}
	if tree.Op == syntax.OpLiteral && tree.Flags&syntax.FoldCase == 0 {
		p := Literal(string(tree.Rune))
		p.re = regexp.MustCompile(expr) // kept for String and groups
		return p, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return Pattern{}, fmt.Errorf("regexp %q: %w", expr, err)
	}
	p := Pattern{re: re, maxLen: maxLen(tree), oneLine: !matchesNL(tree)}
	walk(tree, func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpBeginText:
			p.beginText = true
		case syntax.OpBeginLine:
			p.beginLine = true
		case syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			p.wordBoundary = true
		}
	})
	return p, nil
}

// MustRegexp is Regexp for patterns known to be valid; it panics on error.
func MustRegexp(expr string) Pattern {
	p, err := Regexp(expr)
	if err != nil {
		panic(err)
	}
	return p
}

// IsRegexp reports whether p was made by Regexp.
func (p Pattern) IsRegexp() bool { return p.re != nil }

// String shows the pattern for events and errors: a quoted literal, or
// re"expr" for a regular expression.
func (p Pattern) String() string {
	if p.re != nil {
		return "re" + strconv.Quote(p.re.String())
	}
	return strconv.Quote(p.lit)
}

func (p Pattern) valid() bool { return p.lit != "" || p.re != nil }

// find returns the leftmost match of p in b as submatch index pairs, or nil.
func (p Pattern) find(b []byte) []int {
	if p.lit != "" {
		i := bytes.Index(b, []byte(p.lit)) // no allocation: the compiler elides the conversion
		if i < 0 {
			return nil
		}
		return []int{i, i + len(p.lit)}
	}
	return p.re.FindSubmatchIndex(b)
}

// contains reports whether p matches anywhere in b.
func (p Pattern) contains(b []byte) bool {
	if p.lit != "" {
		return bytes.Contains(b, []byte(p.lit))
	}
	return p.re.Match(b)
}

var (
	errNoPatterns     = errors.New("expect: no patterns")
	errInvalidPattern = errors.New("expect: zero Pattern")
)

func walk(r *syntax.Regexp, f func(*syntax.Regexp)) {
	f(r)
	for _, s := range r.Sub {
		walk(s, f)
	}
}

func minLen(r *syntax.Regexp) int {
	switch r.Op {
	case syntax.OpLiteral:
		n := 0
		for _, c := range r.Rune {
			if c < utf8.RuneSelf || r.Flags&syntax.FoldCase != 0 {
				n++ // folded runes may be narrower; one byte is a safe floor
			} else {
				n += utf8.RuneLen(c)
			}
		}
		return n
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minLen(r.Sub[0])
	case syntax.OpRepeat:
		return r.Min * minLen(r.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, s := range r.Sub {
			n += minLen(s)
		}
		return n
	case syntax.OpAlternate:
		n := -1
		for _, s := range r.Sub {
			if m := minLen(s); n < 0 || m < n {
				n = m
			}
		}
		return max(n, 0)
	}
	return 0 // empty match, assertions, star, quest, no match
}

func maxLen(r *syntax.Regexp) int {
	switch r.Op {
	case syntax.OpLiteral:
		if r.Flags&syntax.FoldCase != 0 {
			return len(r.Rune) * utf8.UTFMax
		}
		return len(string(r.Rune))
	case syntax.OpCharClass:
		hi := rune(0)
		if len(r.Rune) > 0 {
			hi = r.Rune[len(r.Rune)-1]
		}
		if hi < utf8.RuneSelf {
			return 1
		}
		return utf8.UTFMax
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCapture, syntax.OpQuest:
		return maxLen(r.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return unbounded
	case syntax.OpRepeat:
		if r.Max < 0 {
			return unbounded
		}
		m := maxLen(r.Sub[0])
		if m == unbounded {
			return unbounded
		}
		return r.Max * m
	case syntax.OpConcat, syntax.OpAlternate:
		n := 0
		for _, s := range r.Sub {
			m := maxLen(s)
			if m == unbounded {
				return unbounded
			}
			if r.Op == syntax.OpConcat {
				n += m
			} else {
				n = max(n, m)
			}
		}
		return n
	}
	return 0
}

// matchesNL reports whether some match of r may contain a newline.
func matchesNL(r *syntax.Regexp) bool {
	switch r.Op {
	case syntax.OpLiteral:
		for _, c := range r.Rune {
			if c == '\n' {
				return true
			}
		}
		return false
	case syntax.OpCharClass:
		for i := 0; i+1 < len(r.Rune); i += 2 {
			if r.Rune[i] <= '\n' && '\n' <= r.Rune[i+1] {
				return true
			}
		}
		return false
	case syntax.OpAnyChar:
		return true
	}
	for _, s := range r.Sub {
		if matchesNL(s) {
			return true
		}
	}
	return false
}
