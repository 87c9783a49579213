package test

import (
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/target"
	"github.com/basalt-lab/basalt/builtins/test/report"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/repo"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// The LAVA helpers a definition calls, installed on the target's PATH for
// its run: POSIX sh scripts that busybox ash runs.
var (
	//go:embed shim/lava-test-case
	shimCase []byte
	//go:embed shim/lava-test-set
	shimSet []byte
	//go:embed shim/lava-test-raise
	shimRaise []byte
)

const runDefinitionDoc = `Runs a test definition kept in a repository on the target and records its results as
test cases. repo is a git repository (a URL git fetches, file:// and https:// included, or a path under the
job's directory) or a tarball (.tar, .tar.gz or .tgz: a path under the job's directory or an http(s) URL).
ref pins the repository: a commit SHA, or a tag or branch resolved to its commit when fetched; None is the
repository's HEAD. The dispatcher fetches it with git into the artifact cache (a full SHA already there is
not fetched again) and records the URL and commit (a tarball's sha256) in result.json's inputs. The tree is
pushed to the target over HTTP as target.push does (one .tar.gz, checked with sha256sum, unpacked with tar
into /tmp/basalt-def-*), with lava-test-case, lava-test-set and lava-test-raise first on the PATH of the run.
run is the command line run in the directory path of the tree (a subshell: the target's shell keeps its
directory and variables), params (a dict of NAME: value) its environment variables. A run ending in .yaml or
.yml is a LAVA test definition (metadata:, params:, run: steps:), run unchanged: its params are the
defaults params overrides, and its install and run steps run one after another in path. The output is
parsed as format ("lava", "tap" or "ktap", as test.parse; nested KTAP subtests become suite.case), each case
recorded as by test.case with prefix before its name. A non-zero exit status of run is a problem, not an
error. timeout ("30m" or seconds) bounds the run: then it is interrupted with ^C, the shell is usable again
and the call fails as target.run does (a device error), the cases reported before it recorded. Returns struct(cases, problems, exit_code, output,
commit, sha256, dir). A repository that cannot be fetched is an infrastructure error naming its URL; a ref
it does not have, a job error.`

// inputRecorder is a recorder that keeps the inputs a job read while it
// ran (the result bundle).
type inputRecorder interface{ AddInput(bundle.Input) }

func runDefinition(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		repoArg, dir, run, format, prefix string
		ref                               builtins.OptString
		params                            *starlark.Dict
		timeout                           builtins.Timeout
	)
	dir, run, format = ".", "./run.sh", "lava"
	if err := starlark.UnpackArgs(name, args, kwargs, "repo", &repoArg, "ref?", &ref, "path?", &dir, "run?", &run,
		"params?", &params, "format?", &format, "timeout?", &timeout, "prefix?", &prefix); err != nil {
		return nil, builtins.Job(err)
	}
	parseFn, ok := parsers[format]
	if !ok {
		return nil, builtins.Job(fmt.Errorf("%s: unknown format %q, want \"lava\", \"tap\" or \"ktap\"", name, format))
	}
	vars, err := envParams(params)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: params: %w", name, err))
	}
	dir = path.Clean(strings.TrimPrefix(dir, "./"))
	if path.IsAbs(dir) || dir == ".." || strings.HasPrefix(dir, "../") {
		return nil, builtins.Job(fmt.Errorf("%s: path %q: want a directory inside the tree", name, dir))
	}
	if strings.TrimSpace(run) == "" {
		return nil, builtins.Job(fmt.Errorf("%s: empty run", name))
	}
	yamlFile := ""
	if low := strings.ToLower(strings.TrimSpace(run)); strings.HasSuffix(low, ".yaml") || strings.HasSuffix(low, ".yml") {
		yamlFile = path.Join(dir, path.Clean(strings.TrimPrefix(strings.TrimSpace(run), "./")))
		if strings.HasPrefix(yamlFile, "../") {
			return nil, builtins.Job(fmt.Errorf("%s: run %q leaves the tree", name, run))
		}
	}
	t, err := target.BackendFrom(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	env := builtins.EnvOf(thread)
	t.SetFacts(env.Facts)
	ctx, cancel := builtins.CallContext(thread, 0)
	defer cancel()

	files := t.Artifacts()
	cache := &repo.Cache{Dir: files.Dir, Emit: env.Emit}
	src, err := repo.Open(ctx, cache, files, env.JobDir, repoArg, string(ref))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if rec, ok := env.Rec.(inputRecorder); ok {
		rec.AddInput(bundle.Input{Name: "test.run_definition " + src.Name, URL: src.URL, Path: pathOf(src), Commit: src.Commit, SHA256: src.SHA256, Size: src.Size})
	}
	if src.Dirty {
		env.Logger().Warn("the local repository has uncommitted changes; running its commit, without them",
			"repo", src.Name, "commit", src.Commit)
	}
	what := src.Name
	if src.Commit != "" {
		what += " at " + src.Commit[:12]
	}

	// The target directory: one per call, so two definitions (or two runs
	// of one) never mix their files.
	var rb [4]byte
	rand.Read(rb[:])
	tdir := "/tmp/basalt-def-" + hex.EncodeToString(rb[:])
	workDir := tdir + "/tree"
	if dir != "." {
		workDir += "/" + dir
	}
	var def *lavaDef
	var defErr error
	tarball, err := os.CreateTemp(files.Dir, ".definition-*.tar.gz")
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("%s: %w", name, err))
	}
	defer os.Remove(tarball.Name())
	defer tarball.Close()
	tr, err := src.Tar(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, what, err)
	}
	// What the call names must be in the tree: the directory, and the
	// script when run starts with one ("./run.sh -v"): a clear job error
	// here, not "not found" from the target's shell.
	script0 := ""
	if f := strings.Fields(run); len(f) > 0 && strings.HasPrefix(f[0], "./") && yamlFile == "" {
		script0 = path.Join(dir, f[0])
	}
	dirSeen, scriptSeen := dir == ".", script0 == ""
	perr := repo.Pack(tarball, tr, "tree", func(n string) bool {
		dirSeen = dirSeen || strings.HasPrefix(n, dir+"/")
		scriptSeen = scriptSeen || n == script0
		return n == yamlFile
	}, func(n string, data []byte) {
		def, defErr = parseLAVADef(n, data)
	}, func() ([]repo.File, error) {
		switch {
		case !dirSeen:
			return nil, builtins.Job(fmt.Errorf("path %q: no such directory in the tree", dir))
		case !scriptSeen:
			return nil, builtins.Job(fmt.Errorf("run %q: no file %s in the tree", run, script0))
		}
		script := runScript(tdir, workDir, vars, run)
		if yamlFile != "" {
			if defErr != nil {
				return nil, builtins.Job(defErr)
			}
			if def == nil {
				return nil, builtins.Job(fmt.Errorf("no file %s in the tree", yamlFile))
			}
			script = lavaScript(tdir, workDir, def, vars)
		}
		// The helpers and the script, after the tree: its files cannot
		// replace them.
		return []repo.File{
			{Name: "bin/lava-test-case", Mode: 0o755, Data: shimCase},
			{Name: "bin/lava-test-set", Mode: 0o755, Data: shimSet},
			{Name: "bin/lava-test-raise", Mode: 0o755, Data: shimRaise},
			{Name: "bin/basalt-run.sh", Mode: 0o755, Data: []byte(script)},
		}, nil
	})
	tr.Close()
	if perr != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, what, perr)
	}
	if err := tarball.Close(); err != nil {
		return nil, builtins.Infra(fmt.Errorf("%s: %w", name, err))
	}
	sum, err := fileSum(tarball.Name())
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("%s: %w", name, err))
	}

	start := time.Now()
	if _, err := t.PushFile(ctx, tarball.Name(), tdir+".tar.gz"); err != nil {
		return nil, fmt.Errorf("%s: push %s: %w", name, what, err)
	}
	unpack := fmt.Sprintf("rm -rf %[1]s && mkdir -p %[1]s && tar -xzf %[1]s.tar.gz -C %[1]s && rm -f %[1]s.tar.gz && test -d %[2]s",
		shellQuote(tdir), shellQuote(workDir))
	if _, err := t.Run(ctx, unpack, true); err != nil {
		return nil, fmt.Errorf("%s: unpack %s on the target: %w", name, what, err)
	}
	env.Emit("test_definition", map[string]any{"repo": src.Name, "url": src.URL, "commit": src.Commit, "sha256": src.SHA256,
		"dir": tdir, "run": run, "tree_sha256": sum, "dirty": src.Dirty, "pos": builtins.Caller(thread)})

	rctx, rcancel := builtins.CallContext(thread, timeout.D())
	defer rcancel()
	cmd := "sh " + shellQuote(tdir+"/bin/basalt-run.sh")
	res, err := t.Run(rctx, cmd, false)
	if err != nil {
		var te *target.TimeoutError
		if errors.As(err, &te) {
			te.Cmd = run // not the script that wraps it
			if timeout.D() > 0 && timeout.D() <= te.Left+time.Second {
				te.Timeout = timeout.D()
			}
			// The cases the suite reported before it was given up are
			// results too: recorded, and the call still fails.
			if te.Output != "" {
				cases, problems := parseFn(te.Output)
				problems = append(problems, report.Problem{Reason: fmt.Sprintf("%s was interrupted: %v", run, te)})
				_, _, strs := recordCases(thread, prefix, cases, problems)
				env.Emit("test_parse", map[string]any{"format": format, "cases": len(cases), "problems": strs, "timed_out": true,
					"duration_ms": time.Since(start).Milliseconds(), "pos": builtins.Caller(thread)})
			}
		}
		return nil, fmt.Errorf("%s: %s: %w", name, what, err)
	}
	cases, problems := parseFn(res.Output)
	if len(cases) == 0 {
		problems = append(problems, report.Problem{Reason: fmt.Sprintf("no test results in the output of %s (format %q)", run, format)})
	}
	if res.ExitCode != 0 {
		problems = append(problems, report.Problem{Reason: fmt.Sprintf("%s exited with status %d", run, res.ExitCode)})
	}
	list, probs, strs := recordCases(thread, prefix, cases, problems)
	env.Emit("test_parse", map[string]any{"format": format, "cases": len(cases), "problems": strs, "exit_code": res.ExitCode,
		"duration_ms": time.Since(start).Milliseconds(), "pos": builtins.Caller(thread)})
	return starlarkstruct.FromStringDict(starlark.String("definition"), starlark.StringDict{
		"cases": starlark.NewList(list), "problems": starlark.NewList(probs), "exit_code": starlark.MakeInt(res.ExitCode),
		"output": starlark.String(res.Output), "commit": starlark.String(src.Commit), "sha256": starlark.String(src.SHA256),
		"dir": starlark.String(workDir),
	}), nil
}

// pathOf is the job path of a local source, for result.json.
func pathOf(s *repo.Source) string {
	if s.URL != "" {
		return ""
	}
	return s.Name
}

// envParams checks params (NAME: value) and returns them sorted by name.
func envParams(d *starlark.Dict) ([]param, error) {
	if d == nil {
		return nil, nil
	}
	var out []param
	for _, kv := range d.Items() {
		k, ok := starlark.AsString(kv[0])
		if !ok || !paramName.MatchString(k) {
			return nil, fmt.Errorf("key %s is not a shell variable name", kv[0])
		}
		var v string
		switch x := kv[1].(type) {
		case starlark.String:
			v = string(x)
		case starlark.Int, starlark.Float:
			v = x.String()
		case starlark.Bool:
			v = "False"
			if x {
				v = "True" // as LAVA (Python) passes it
			}
		default:
			return nil, fmt.Errorf("%s: want a string, number or bool, got %s", k, kv[1].Type())
		}
		out = append(out, param{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// pathLine puts the helpers first on the run's PATH.
func pathLine(tdir string) string {
	return fmt.Sprintf("PATH=%s:\"$PATH\"; export PATH\n", shellQuote(tdir+"/bin"))
}

// runScript runs the command line run in workDir with vars exported.
func runScript(tdir, workDir string, vars []param, run string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString(pathLine(tdir))
	for _, p := range vars {
		fmt.Fprintf(&b, "%s=%s; export %s\n", p.Name, shellQuote(p.Value), p.Name)
	}
	fmt.Fprintf(&b, "cd %s || exit 127\n%s\n", shellQuote(workDir), run)
	return b.String()
}

// lavaScript runs a LAVA test definition's steps (lavaDef.script).
func lavaScript(tdir, workDir string, d *lavaDef, vars []param) string {
	s := d.script(workDir, vars)
	return strings.Replace(s, "#!/bin/sh\n", "#!/bin/sh\n"+pathLine(tdir), 1)
}

func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
