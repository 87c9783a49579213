package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/bazelbuild/buildtools/build"
	"github.com/bazelbuild/buildtools/warn"
	"github.com/spf13/cobra"
)

// lintWarnings are the buildtools (buildifier) checks that mean something
// in plain Starlark job, lab and library files. The rest of warn.AllWarnings
// are about Bazel rules, BUILD packages, docstring conventions or Bazel's
// native modules, none of which a basalt file has.
var lintWarnings = []string{
	"confusing-name",        // l, I, O as names
	"dict-concatenation",    // d1 + d2: an error in Starlark
	"dict-method-named-arg", // d.get(key = ...): builtins take no keywords
	"load",                  // a loaded symbol never used
	"no-effect",             // an expression statement that does nothing
	"redefined-variable",    // a top-level name assigned twice
	"return-value",          // some paths return a value, others not
	"string-iteration",      // for c in "str": an error in Starlark
	"uninitialized",         // a name used before any assignment
	"unreachable",           // statements after return, break, continue, fail
	"unused-variable",       // a local assigned and never read
}

func (a *app) fmtCmd() *cobra.Command {
	var check bool
	c := &cobra.Command{
		Use:   "fmt [--check] FILE|DIR...",
		Short: "Format .star files with buildifier's formatter",
		Long: `fmt rewrites each .star file (every *.star below a directory) in buildifier's
format (github.com/bazelbuild/buildtools), in place. With --check it rewrites
nothing, lists the files that are not formatted and exits 1 if there are any.
A file that does not parse is exit 2, naming file:line.`,
		Example: "  basalt fmt jobs/\n  basalt fmt --check jobs/ stdlib/ lab/",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			files, err := starFiles(args)
			if err != nil {
				return err
			}
			var unformatted []string
			for _, name := range files {
				data, f, err := parseStar(name)
				if err != nil {
					return err
				}
				out := build.Format(f)
				if bytes.Equal(out, data) {
					continue
				}
				if check {
					unformatted = append(unformatted, name)
					continue
				}
				if err := writeFileAtomic(name, out); err != nil {
					return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("write %s: %w", name, err)}
				}
			}
			for _, name := range unformatted {
				fmt.Fprintln(a.stdout, name)
			}
			if len(unformatted) > 0 {
				return &exitError{code: pipeline.ExitFail, err: fmt.Errorf("%d file(s) not formatted; run basalt fmt", len(unformatted))}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&check, "check", false, "list unformatted files and exit 1, rewriting nothing (for CI)")
	return c
}

func (a *app) lintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE|DIR...",
		Short: "Check .star files with buildifier's linter",
		Long: `lint runs buildifier's checks that apply to plain Starlark on each .star file
(every *.star below a directory) and prints file:line: warnings; it exits 1 if
there are any, 2 if a file does not parse. The checks: ` + strings.Join(lintWarnings, ", ") + `.
A function parameter named ctx is never reported unused: stage, cleanup and
library functions take ctx by contract whether they read it or not.`,
		Example: "  basalt lint jobs/ stdlib/",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			files, err := starFiles(args)
			if err != nil {
				return err
			}
			n := 0
			for _, name := range files {
				_, f, err := parseStar(name)
				if err != nil {
					return err
				}
				ctxParams := ctxParamPositions(f)
				for _, w := range warn.FileWarnings(f, lintWarnings, nil, warn.ModeWarn, nil) {
					if w.Category == "unused-variable" && ctxParams[w.Start] {
						continue
					}
					fmt.Fprintf(a.stdout, "%s:%d: %s (%s)\n", name, w.Start.Line, w.Message, w.Category)
					n++
				}
			}
			if n > 0 {
				return &exitError{code: pipeline.ExitFail, err: fmt.Errorf("%d lint warning(s)", n)}
			}
			return nil
		},
	}
}

// ctxParamPositions returns where every function parameter named ctx
// starts. Stage, cleanup and library functions take ctx by basalt's
// contract (fn(ctx), recover(ctx, error)) whether they read it or not, so
// buildifier's unused-variable finding on such a parameter is noise; on any
// other parameter or local it stands. (buildifier itself spares parameters
// named "name" or starting with "_" for the same reason in BUILD macros.)
func ctxParamPositions(f *build.File) map[build.Position]bool {
	pos := map[build.Position]bool{}
	build.Walk(f, func(x build.Expr, _ []build.Expr) {
		var params []build.Expr
		switch x := x.(type) {
		case *build.DefStmt:
			params = x.Params
		case *build.LambdaExpr:
			params = x.Params
		}
		for _, p := range params {
			if id, _ := build.GetParamIdent(p); id != nil && id.Name == "ctx" {
				pos[id.NamePos] = true
			}
		}
	})
	return pos
}

// parseStar reads and parses one .star file as buildifier parses .bzl
// files (plain Starlark, not a BUILD file). A parse error is a job error
// naming file:line:col.
func parseStar(name string) ([]byte, *build.File, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, nil, usagef("read %s: %v", name, err)
	}
	f, err := build.ParseBzl(name, data)
	if err != nil {
		return nil, nil, &exitError{code: pipeline.ExitJob, err: fmt.Errorf("parse %w", err)}
	}
	return data, f, nil
}

// starFiles expands the arguments: a file as given, a directory to every
// *.star below it, sorted. A missing path is a usage error.
func starFiles(args []string) ([]string, error) {
	var files []string
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, usagef("%v", err)
		}
		if !info.IsDir() {
			files = append(files, arg)
			continue
		}
		var below []string
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(p, ".star") {
				below = append(below, p)
			}
			return nil
		})
		if err != nil {
			return nil, usagef("walk %s: %v", arg, err)
		}
		sort.Strings(below)
		files = append(files, below...)
	}
	return files, nil
}

// writeFileAtomic replaces name with data through a temporary file in the
// same directory and a rename, so that an interrupted fmt leaves either the
// old file or the new one; the file's mode is kept, and a symlink stays a
// symlink (its target is rewritten).
func writeFileAtomic(name string, data []byte) error {
	name, err := filepath.EvalSymlinks(name)
	if err != nil {
		return err
	}
	info, err := os.Stat(name)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".fmt*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(info.Mode().Perm())
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
