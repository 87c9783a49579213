package lab

import (
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// SplitCommand returns the argv of a power command line: words split and
// quotes removed as sh(1) does, but nothing expanded and no shell run — a
// "$", a "~" or a pipe is an error, so the line means what it says.
func SplitCommand(line string) ([]string, error) {
	const noShell = "power commands run without a shell"
	var argv []string
	for w, err := range syntax.NewParser().WordsSeq(strings.NewReader(line)) {
		if err != nil {
			return nil, fmt.Errorf("split %q: %w (%s: no pipes, redirections or ;)", line, err, noShell)
		}
		var bad syntax.Node
		syntax.Walk(w, func(n syntax.Node) bool {
			switch n.(type) {
			case *syntax.ParamExp, *syntax.CmdSubst, *syntax.ArithmExp, *syntax.ProcSubst, *syntax.ExtGlob:
				if bad == nil {
					bad = n
				}
			}
			return bad == nil
		})
		if bad != nil {
			return nil, fmt.Errorf("split %q: column %d: $ is not expanded (%s)", line, bad.Pos().Col(), noShell)
		}
		if lit := w.Lit(); strings.HasPrefix(lit, "~") {
			return nil, fmt.Errorf("split %q: %s: ~ is not expanded (%s)", line, lit, noShell)
		}
		arg, err := expand.Literal(&expand.Config{Env: expand.ListEnviron()}, w)
		if err != nil {
			return nil, fmt.Errorf("split %q: %w", line, err)
		}
		argv = append(argv, arg)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("split %q: empty command", line)
	}
	return argv, nil
}
