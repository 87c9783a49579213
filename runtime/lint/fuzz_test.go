package lint

import (
	"errors"
	"testing"

	"go.starlark.net/syntax"
)

// FuzzCheck feeds random job files to Check: it must never panic, and
// every problem must name the job or the library.
func FuzzCheck(f *testing.F) {
	for _, seed := range []string{
		"def f(ctx):\n    sol.expct(\"x\", timeot = 1)\nstage(\"a\", f)\n",
		"load(\"lib.star\", \"lib\")\ncleanup(lib.boot)\nlib.bot(1, **{})\n",
		"load(\"lib.star\", \"lib\")\ndef f(ctx):\n    def g():\n        lib.boot(ctx, kernel = 1)\n    return g\n",
		"sol = 1\nsol.x()\n",
		"x = lambda: ipmi.power(\"on\", *[])\n",
		"load(\"job.star\", \"f\")\n",
		"def f(",
	} {
		f.Add([]byte(seed))
	}
	opts := &syntax.FileOptions{Set: true, While: true, TopLevelControl: true}
	f.Fuzz(func(t *testing.T, src []byte) {
		source := func(name string) ([]byte, error) {
			switch name {
			case "lib.star":
				return []byte(lib), nil
			case "job.star":
				return src, nil
			}
			return nil, errors.New("no such file")
		}
		res, err := Check("job.star", src, source, testTables, opts)
		if err != nil {
			return
		}
		for _, p := range res.Problems {
			var pp *Problem
			if errors.As(p, &pp) && pp.Pos.Filename() != "job.star" && pp.Pos.Filename() != "lib.star" {
				t.Errorf("Check(%q) problem %v names neither file", src, p)
			}
		}
	})
}
