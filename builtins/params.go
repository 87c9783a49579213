package builtins

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// ParseParams returns the parameter names of a Params string such as
// `kernel, initrd=None, append="", *args`, in order; open is true when it
// takes **kwargs (any keyword). *args is left out of names.
func ParseParams(params string) (names []string, open bool) {
	for _, p := range splitTop(params) {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "**") {
			open = true
			continue
		}
		if strings.HasPrefix(p, "*") {
			continue
		}
		name, _, _ := strings.Cut(p, "=")
		names = append(names, strings.TrimSuffix(strings.TrimSpace(name), "?"))
	}
	return names, open
}

// required returns the first parameter of params that has no default, or "".
func required(params string) string {
	for _, p := range splitTop(params) {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "*") {
			continue
		}
		if !strings.Contains(p, "=") && !strings.HasSuffix(p, "?") {
			return p
		}
	}
	return ""
}

// splitTop splits s at commas outside quotes and brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == '\\' {
				i++
			} else if ch == quote {
				quote = 0
			}
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == '(' || ch == '[' || ch == '{':
			depth++
		case ch == ')' || ch == ']' || ch == '}':
			depth--
		case ch == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// probe is an argument no Unpacker of basalt accepts, so a call with it
// stops inside starlark.UnpackArgs and its error tells what UnpackArgs was
// given to unpack.
type probe struct{}

func (probe) String() string        { return "<params probe>" }
func (probe) Type() string          { return "params_probe" }
func (probe) Freeze()               {}
func (probe) Truth() starlark.Bool  { return false }
func (probe) Hash() (uint32, error) { return 0, nil }

var atMost = regexp.MustCompile(`: got \d+ arguments, want at most (\d+)`)

// unexpected reports whether msg is UnpackArgs's "unexpected keyword
// argument" error for name (quoted in the go.starlark.net we pin).
func unexpected(msg, name string) bool {
	const s = "unexpected keyword argument "
	return strings.Contains(msg, s+strconv.Quote(name)) ||
		regexp.MustCompile(regexp.QuoteMeta(s+name)+`\b`).MatchString(msg)
}

// CheckParams holds every Fn member's Params string to the UnpackArgs call
// of its Fn, and returns one error per disagreement. It calls each Fn on a
// thread with no job environment, with arguments UnpackArgs refuses:
//
//   - one positional argument more than Params lists: UnpackArgs reports how
//     many parameters it has ("want at most M"), which must be len(Params);
//   - each name of Params as a keyword: UnpackArgs must not call it an
//     unexpected keyword argument;
//   - one positional argument: UnpackArgs must fail on the first parameter
//     of Params, by name;
//   - no argument: UnpackArgs must miss the first required parameter of
//     Params, or none if Params has none.
//
// It also checks that the Secret and SecretIf parameters are in Params.
// Together these prove that both list the same names, the same first name
// and the same first required parameter. A Fn that does anything before
// UnpackArgs must not need the environment to get there.
func CheckParams(t *Table) []error {
	var errs []error
	for _, b := range t.Members {
		if b.Fn == nil {
			continue
		}
		q := t.Qualified(b)
		bad := func(format string, v ...any) {
			errs = append(errs, fmt.Errorf("%s(%s): %s", q, b.Params, fmt.Sprintf(format, v...)))
		}
		call := func(args starlark.Tuple, kwargs []starlark.Tuple) string {
			_, err := b.Fn(&starlark.Thread{Name: "params"}, q, args, kwargs)
			if err == nil {
				return ""
			}
			return err.Error()
		}
		names, open := ParseParams(b.Params)
		// The envelope finds secret arguments by these names: one missing
		// from Params would never be redacted.
		for _, p := range append(append([]string(nil), b.Secret...), b.SecretIf) {
			if p != "" && !slices.Contains(names, p) {
				bad("Secret names %s, which Params does not list", p)
			}
		}
		starArgs := strings.Contains(strings.ReplaceAll(b.Params, "**", ""), "*")
		if starArgs && !open {
			continue // *args: no upper bound to check
		}

		if !starArgs {
			args := make(starlark.Tuple, len(names)+1)
			for i := range args {
				args[i] = probe{}
			}
			msg := call(args, nil)
			m := atMost.FindStringSubmatch(msg)
			switch {
			case m == nil && strings.Contains(msg, ": for parameter "):
				bad("UnpackArgs takes more parameters than the %d Params lists", len(names))
			case m == nil:
				bad("%d positional arguments: got error %q, want UnpackArgs's \"want at most %d\"", len(args), msg, len(names))
			default:
				if n, _ := strconv.Atoi(m[1]); n != len(names) {
					bad("UnpackArgs takes %d parameters, Params lists %d", n, len(names))
				}
			}
		}

		for _, n := range names {
			msg := call(nil, []starlark.Tuple{{starlark.String(n), probe{}}})
			if unexpected(msg, n) {
				bad("UnpackArgs has no parameter %s", n)
			}
		}

		if len(names) > 0 {
			msg := call(starlark.Tuple{probe{}}, nil)
			if !strings.Contains(msg, ": for parameter "+names[0]+": ") && !strings.Contains(msg, "missing argument for") {
				bad("first positional argument: got error %q, want one for parameter %s", msg, names[0])
			}
		}

		msg := call(nil, nil)
		if r := required(b.Params); r != "" {
			if !strings.Contains(msg, "missing argument for "+r) {
				bad("no arguments: got error %q, want \"missing argument for %s\"", msg, r)
			}
		} else if strings.Contains(msg, "missing argument for ") {
			bad("no arguments: got error %q, but Params has no required parameter", msg)
		}
	}
	return errs
}
