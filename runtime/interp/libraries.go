package interp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/repo"
	"go.starlark.net/starlark"
)

// LibrariesFile is the file in a job's directory that declares the git
// libraries its job files load as @NAME//path.star:
//
//	library(name = "kci", git = "https://github.com/kernelci/kci-lib", commit = "<40 hex digits>")
//
// It may call nothing but library(...). Each library is fetched (git, into
// the artifact cache: package repo) the first time a job loads from it and
// never again for that commit; its files load with the rules of @lab//
// libraries (a .star path under the library's tree, no "..", no symlink
// out of it; a library names its own files as @NAME//path.star too).
const LibrariesFile = "libraries.star"

// Library is one library(...) of libraries.star.
type Library struct {
	Name   string
	Git    string // the repository's URL (credentials kept; repo.Redact for output)
	Commit string // a full commit SHA
	Pos    string // where libraries.star declares it
	// root is the library's tree, once fetched.
	root *os.Root
	err  error
}

var libName = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// readLibraries evaluates the job directory's libraries.star, if there is
// one, recording it as an input. Errors are job errors naming the
// file:line.
func (l *loader) readLibraries(thread *starlark.Thread) error {
	data, err := l.root.ReadFile(LibrariesFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return builtins.Job(fmt.Errorf("read %s: %w", LibrariesFile, err))
	}
	if err := checkSource(LibrariesFile, data); err != nil {
		return builtins.Job(err)
	}
	l.plan.Inputs = append(l.plan.Inputs, input(LibrariesFile, data))
	l.plan.sources[LibrariesFile] = data
	l.libs = map[string]*Library{}
	lib := starlark.NewBuiltin("library", func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name, git, commit string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "git", &git, "commit", &commit); err != nil {
			return nil, err
		}
		pos := callerPos(t)
		switch {
		case !libName.MatchString(name):
			return nil, fmt.Errorf("library: name %q: want lower-case letters, digits, '-' and '_', starting with a letter", name)
		case name == "stdlib" || name == "lab":
			return nil, fmt.Errorf("library: name %q is basalt's own (@%s//)", name, name)
		case l.libs[name] != nil:
			return nil, fmt.Errorf("library: %q is declared twice (first at %s)", name, l.libs[name].Pos)
		case strings.TrimSpace(git) == "":
			return nil, fmt.Errorf("library %q: empty git URL", name)
		case !strings.Contains(git, "://") && !strings.Contains(git, "@"):
			return nil, fmt.Errorf("library %q: git = %q: want a URL (https://, file://, ssh://)", name, repo.Redact(git))
		case !repo.IsCommit(strings.ToLower(commit)):
			return nil, fmt.Errorf("library %q: commit = %q: want a full commit SHA (40 hex digits), not a branch or tag: a library is pinned", name, commit)
		}
		l.libs[name] = &Library{Name: name, Git: git, Commit: strings.ToLower(commit), Pos: pos}
		return starlark.None, nil
	})
	t := &starlark.Thread{Name: "load " + LibrariesFile, Print: thread.Print}
	t.SetMaxExecutionSteps(l.plan.MaxSteps)
	if l.ctx != nil {
		stop := context.AfterFunc(l.ctx, func() { t.Cancel(l.reason()) })
		defer stop()
	}
	if _, err := starlark.ExecFileOptions(FileOptions, t, LibrariesFile, data, starlark.StringDict{"library": lib}); err != nil {
		return l.plan.jobError(err)
	}
	for _, name := range slices.Sorted(maps.Keys(l.libs)) {
		l.plan.Libraries = append(l.plan.Libraries, l.libs[name])
	}
	return nil
}

func callerPos(t *starlark.Thread) string {
	if t.CallStackDepth() > 1 {
		return t.CallFrame(1).Pos.String()
	}
	return ""
}

// libraryOf returns the library module names (@NAME//...), and whether
// it is one.
func (l *loader) libraryOf(module string) (*Library, string, bool) {
	if !strings.HasPrefix(module, "@") {
		return nil, "", false
	}
	name, p, ok := strings.Cut(module[1:], "//")
	if !ok || l.libs[name] == nil {
		return nil, "", false
	}
	return l.libs[name], p, true
}

// libRoot fetches lib (once per run; once per commit in the cache) and
// opens its tree. A commit the repository does not have is a job error,
// a repository that cannot be fetched an infrastructure error; both name
// the library.
func (l *loader) libRoot(lib *Library) (*os.Root, error) {
	if lib.root != nil || lib.err != nil {
		return lib.root, lib.err
	}
	lib.root, lib.err = l.fetchLibrary(lib)
	if lib.err == nil {
		l.plan.Inputs = append(l.plan.Inputs, Input{Name: "@" + lib.Name, URL: repo.Redact(lib.Git), Commit: lib.Commit})
	}
	return lib.root, lib.err
}

func (l *loader) fetchLibrary(lib *Library) (*os.Root, error) {
	dir := l.cacheDir
	if dir == "" {
		dir = lab.DefaultCacheDir()
	}
	tree := filepath.Join(dir, "git", "trees", lib.Commit)
	if _, err := os.Stat(tree); err != nil {
		ctx := l.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		r, err := (&repo.Cache{Dir: dir}).Resolve(ctx, lib.Git, lib.Commit)
		if err != nil {
			return nil, &builtins.Error{Class: builtins.ClassOf(err), Err: fmt.Errorf("library %q (%s): %w", lib.Name, lib.Pos, err)}
		}
		if err := os.MkdirAll(filepath.Dir(tree), 0o755); err != nil {
			return nil, builtins.Infra(fmt.Errorf("library %q: %w", lib.Name, err))
		}
		tmp, err := os.MkdirTemp(filepath.Dir(tree), ".tree-*")
		if err != nil {
			return nil, builtins.Infra(fmt.Errorf("library %q: %w", lib.Name, err))
		}
		defer os.RemoveAll(tmp)
		tr := r.Tar(ctx)
		err = repo.Extract(tr, tmp)
		tr.Close()
		if err != nil {
			return nil, builtins.Infra(fmt.Errorf("library %q: extract %s: %w", lib.Name, lib.Commit, err))
		}
		// Another run may have put the same tree in place meanwhile: the
		// same commit, the same files.
		if err := os.Rename(tmp, tree); err != nil {
			if _, serr := os.Stat(tree); serr != nil {
				return nil, builtins.Infra(fmt.Errorf("library %q: %w", lib.Name, err))
			}
		}
	}
	root, err := os.OpenRoot(tree)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("library %q: %w", lib.Name, err))
	}
	return root, nil
}

func (l *loader) closeLibs() {
	for _, lib := range l.libs {
		if lib.root != nil {
			lib.root.Close()
		}
	}
}

// Libraries reads the @NAME//path.star modules of the libraries that
// jobDir's libraries.star declares, for static checkers that read a job's
// loads before Declare runs (basalt check's call check): read returns the
// module's source and whether name is such a module, fetching the library
// as Declare does (into cacheDir; "" is lab.DefaultCacheDir()). With no
// libraries.star, or one that does not evaluate (Declare reports it),
// read answers false for every name. Call closeFn when done.
func Libraries(ctx context.Context, jobDir, cacheDir string) (read func(name string) ([]byte, bool, error), closeFn func()) {
	none := func(string) ([]byte, bool, error) { return nil, false, nil }
	root, err := os.OpenRoot(jobDir)
	if err != nil {
		return none, func() {}
	}
	l := &loader{root: root, cacheDir: cacheDir, ctx: ctx, reason: func() string { return "canceled" },
		plan: &Plan{MaxSteps: DefaultMaxSteps, sources: map[string][]byte{}}}
	closeFn = func() { l.closeLibs(); root.Close() }
	if err := l.readLibraries(&starlark.Thread{}); err != nil || l.libs == nil {
		return none, closeFn
	}
	return func(name string) ([]byte, bool, error) {
		lib, p, ok := l.libraryOf(name)
		if !ok {
			return nil, false, nil
		}
		lr, err := l.libRoot(lib)
		if err != nil {
			return nil, true, err
		}
		_, data, err := ReadConfined(lr, p, "library "+lib.Name)
		return data, true, err
	}, closeFn
}
