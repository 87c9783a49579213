// Package interp evaluates job files: it runs their top-level code (the
// declare phase) in a sandbox and returns a frozen Plan of stages and
// cleanup functions for the pipeline to execute.
//
// The sandbox: the only predeclared names are job, stage, cleanup and the
// builtin modules; load() resolves only @stdlib//NAME.star (embedded in the
// binary), @lab//NAME.star (the lab's lib/ directory) and files under the
// job file's directory, the last two opened through an os.Root so that "..",
// absolute paths and symlinks leaving the directory are refused. Starlark itself has no file, network or process access. A step
// limit stops runaway code.
//
// Dialect: while loops are allowed (polling a console or a power state is
// natural to write that way); recursion is not; if/for at top level are
// allowed (generating stages in a loop); global reassignment is not; sets
// are.
package interp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/stdlib"
	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// FileOptions is the dialect of job files and libraries.
var FileOptions = &syntax.FileOptions{
	Set:             true,
	While:           true,
	TopLevelControl: true,
	GlobalReassign:  false,
	Recursion:       false,
}

// DefaultMaxSteps bounds the Starlark steps of the declare phase and of each
// stage attempt (not time spent inside builtins).
const DefaultMaxSteps = 50_000_000

// DefaultDeclareTimeout bounds the declare phase (the job file's top level
// and the libraries it loads) in wall-clock time, whatever it spends it on.
const DefaultDeclareTimeout = 10 * time.Second

// DefaultJobTimeout applies when job() names no timeout.
const DefaultJobTimeout = time.Hour

// DefaultCleanupTimeout is each cleanup function's budget when cleanup()
// names none.
const DefaultCleanupTimeout = 2 * time.Minute

// Options configure Declare.
type Options struct {
	// File is the job file.
	File string
	// Src, if non-nil, is the job's source instead of reading File.
	Src []byte
	// Params are --param overrides, k=v.
	Params map[string]string
	// Modules are predeclared besides job, stage and cleanup.
	Modules starlark.StringDict
	// Env is attached to the declare thread (Declaring is forced on).
	Env *builtins.Env
	// MaxSteps is the step limit; 0 means DefaultMaxSteps.
	MaxSteps uint64
	// Ctx, when set, cancels the declare phase (SIGINT, SIGTERM, a job
	// limit); its cause, when a *builtins.Error, is the error returned.
	Ctx context.Context
	// Timeout is the declare deadline; 0 means DefaultDeclareTimeout.
	Timeout time.Duration
	// Print receives print() output during the declare phase.
	Print func(msg string)
	// LabDir is the lab directory; load("@lab//NAME.star") reads
	// LabDir/lib/NAME.star. Empty: there is no lab and @lab// is refused.
	LabDir string
	// CacheDir is the artifact cache the libraries of libraries.star are
	// fetched into; "" is lab.DefaultCacheDir().
	CacheDir string
}

// Job is what job(...) declared.
type Job struct {
	Name        string
	DeviceType  string
	Description string
	Timeout     time.Duration
	Params      []Param
	// Artifacts names the params whose values are files the job needs.
	Artifacts []string
	Pos       string
	// HealthCheck marks a health-check job (LAVA's): its result sets the
	// device's health; a device in bad health runs only health checks.
	HealthCheck bool
	// Devices maps each role of a multi-device job to its device type
	// (job(devices = {...})); nil for a single-device job.
	Devices map[string]string
}

// Roles returns the roles of a multi-device job, sorted: the order in
// which their devices are locked and wired.
func (j Job) Roles() []string {
	out := make([]string, 0, len(j.Devices))
	for r := range j.Devices {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Param is a declared parameter and its value after overrides.
type Param struct {
	Name       string
	Value      starlark.Value
	Overridden bool
}

// Stage is a declared stage.
type Stage struct {
	Name    string
	Fn      starlark.Callable
	Timeout time.Duration // 0: the rest of the job's budget
	Retries int
	// OnError, if set, runs as OnError(ctx, error) after a failed attempt
	// and before its retry.
	OnError starlark.Callable
	Pos     string
}

// Cleanup is a declared cleanup function.
type Cleanup struct {
	Name    string
	Fn      starlark.Callable
	Timeout time.Duration
	Pos     string
}

// Input is a file read while declaring.
type Input struct {
	Name   string // as loaded: the job file's path, or @stdlib//x.star, or a relative path
	Size   int64
	SHA256 string
	// URL and Commit are a libraries.star library's (Name "@NAME").
	URL    string
	Commit string
}

// Plan is the frozen result of the declare phase.
type Plan struct {
	File     string
	Dir      string
	Job      Job
	Stages   []Stage
	Cleanups []Cleanup
	Inputs   []Input
	// Libraries are those libraries.star declares, by name.
	Libraries []*Library
	Modules   starlark.StringDict
	MaxSteps  uint64
	// sources holds the text of the inputs by name, to place errors.
	sources map[string][]byte
}

// ParamDict returns the params as a Starlark dict-like struct value source.
func (p *Plan) ParamMap() map[string]starlark.Value {
	m := make(map[string]starlark.Value, len(p.Job.Params))
	for _, prm := range p.Job.Params {
		m[prm.Name] = prm.Value
	}
	return m
}

// ParamStrings returns the params as strings, for result.json.
func (p *Plan) ParamStrings() map[string]string {
	m := make(map[string]string, len(p.Job.Params))
	for _, prm := range p.Job.Params {
		if s, ok := prm.Value.(starlark.String); ok {
			m[prm.Name] = string(s)
		} else {
			m[prm.Name] = prm.Value.String()
		}
	}
	return m
}

type declState struct {
	plan    *Plan
	jobSeen bool
}

// Declare evaluates the job file and returns its plan. Every error it
// returns is a job error (builtins.ClassJob) whose message starts with
// file:line:col where one is known.
func Declare(o Options) (*Plan, error) {
	abs, err := filepath.Abs(o.File)
	if err != nil {
		return nil, builtins.Job(err)
	}
	src := o.Src
	if src == nil {
		src, err = readLimited(abs)
		if err != nil {
			return nil, builtins.Job(fmt.Errorf("read job file: %w", err))
		}
	}
	if err := checkSource(o.File, src); err != nil {
		return nil, builtins.Job(err)
	}
	dir := filepath.Dir(abs)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("open job directory: %w", err))
	}
	defer root.Close()

	maxSteps := o.MaxSteps
	if maxSteps == 0 {
		maxSteps = DefaultMaxSteps
	}
	st := &declState{plan: &Plan{File: o.File, Dir: dir, Modules: o.Modules, MaxSteps: maxSteps, sources: map[string][]byte{}}}
	predeclared := starlark.StringDict{}
	for k, v := range o.Modules {
		predeclared[k] = v
	}
	for k, v := range st.builtins() {
		predeclared[k] = v
	}
	parent := o.Ctx
	if parent == nil {
		parent = context.Background()
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultDeclareTimeout
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	ld := &loader{root: root, labDir: o.LabDir, cacheDir: o.CacheDir, predeclared: predeclared, cache: map[string]*loadEntry{}, plan: st.plan,
		ctx: ctx, reason: func() string { return cancelReason(parent, ctx, timeout) }}
	defer ld.stopAll()
	defer ld.closeLab()
	defer ld.closeLibs()

	env := &builtins.Env{}
	if o.Env != nil {
		env = o.Env.WithContext(ctx, "")
	} else {
		env.Ctx = ctx
	}
	env.Declaring = true
	thread := ld.newThread(env, maxSteps, o.Print)
	thread.Name = "declare"

	st.plan.Inputs = append(st.plan.Inputs, input(o.File, src))
	st.plan.sources[o.File] = src
	if err := ld.readLibraries(thread); err != nil {
		return nil, escaped(err)
	}
	if _, err := starlark.ExecFileOptions(FileOptions, thread, o.File, src, predeclared); err != nil {
		if parent.Err() != nil {
			// Canceled from outside: a signal (exit 5) or a job limit
			// that says what it is.
			var ce *builtins.Error
			if cause := context.Cause(parent); errors.As(cause, &ce) {
				return nil, cause
			}
			return nil, &builtins.Error{Class: builtins.ClassCanceled, Err: fmt.Errorf("declare %s: canceled", o.File)}
		}
		return nil, escaped(st.plan.jobError(err))
	}
	if !st.jobSeen {
		return nil, builtins.Job(fmt.Errorf("%s: the job file never calls job(name = ..., ...)", o.File))
	}
	if len(st.plan.Stages) == 0 {
		return nil, builtins.Job(fmt.Errorf("%s: the job declares no stage(...)", o.File))
	}
	if err := applyParams(&st.plan.Job, o.Params, o.File); err != nil {
		return nil, err
	}
	return st.plan, nil
}

func input(name string, data []byte) Input {
	sum := sha256.Sum256(data)
	return Input{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// jobError is JobError with the position placed by the plan's sources.
func (p *Plan) jobError(err error) error {
	var ee *starlark.EvalError
	if errors.As(err, &ee) && builtins.ClassOf(err) == builtins.ClassJob {
		if pos := p.Pos(ee); pos != "" && !strings.HasPrefix(ee.Msg, pos) {
			return builtins.Job(&posError{pos: pos, err: err})
		}
	}
	return JobError(err)
}

// cancelReason says why the declare thread was cancelled.
func cancelReason(parent, ctx context.Context, timeout time.Duration) string {
	if parent.Err() != nil {
		var ce *builtins.Error
		if cause := context.Cause(parent); errors.As(cause, &ce) {
			return ce.Error()
		}
		return "canceled"
	}
	return fmt.Sprintf("declare deadline of %s reached (the job file's top level must finish within it; --declare-timeout)", timeout)
}

// JobError turns a Starlark error into a job error whose message starts
// with the position of the failing Starlark code.
func JobError(err error) error {
	var se syntax.Error
	var rl resolve.ErrorList
	var ee *starlark.EvalError
	switch {
	case errors.As(err, &ee):
		if builtins.ClassOf(err) != builtins.ClassJob {
			return err
		}
		if pos := Pos(ee); pos != "" && !strings.HasPrefix(ee.Msg, pos) {
			return builtins.Job(&posError{pos: pos, err: err})
		}
		return builtins.Job(err)
	case errors.As(err, &se):
		return builtins.Job(fmt.Errorf("%s: syntax error: %s", se.Pos, se.Msg))
	case errors.As(err, &rl):
		msgs := make([]string, len(rl))
		for i, e := range rl {
			msgs[i] = fmt.Sprintf("%s: %s", e.Pos, e.Msg)
		}
		return builtins.Job(errors.New(strings.Join(msgs, "\n")))
	}
	return builtins.Job(err)
}

type posError struct {
	pos string
	err error
}

func (e *posError) Error() string { return e.pos + ": " + e.err.Error() }
func (e *posError) Unwrap() error { return e.err }

// Pos returns the position of the innermost Starlark frame of an
// evaluation error (not a builtin's), "file:line:col".
func Pos(ee *starlark.EvalError) string {
	for i := len(ee.CallStack) - 1; i >= 0; i-- {
		fr := ee.CallStack[i]
		if fr.Pos.IsValid() && fr.Pos.Filename() != "<builtin>" {
			return fr.Pos.String()
		}
	}
	return ""
}

func (st *declState) builtins() starlark.StringDict {
	return st.table().Values()
}

func (st *declState) job(thread *starlark.Thread, fname string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		devType, desc string
		timeout       builtins.Timeout
		params        = new(starlark.Dict)
		artifacts     *starlark.List
	)
	var name string
	var healthCheck bool
	var devices *starlark.Dict
	if err := starlark.UnpackArgs(fname, args, kwargs, "name", &name, "device_type?", &devType,
		"timeout?", &timeout, "params?", &params, "artifacts?", &artifacts, "description?", &desc, "health_check?", &healthCheck,
		"devices?", &devices); err != nil {
		return nil, err
	}
	if st.jobSeen {
		return nil, fmt.Errorf("job: declared twice (first at %s)", st.plan.Job.Pos)
	}
	if strings.TrimSpace(name) == "" || strings.ContainsAny(name, "/\\\x00") {
		return nil, fmt.Errorf("job: name %q must be non-empty and hold no slash", name)
	}
	j := Job{Name: name, DeviceType: devType, Description: desc, Timeout: timeout.Or(DefaultJobTimeout), Pos: builtins.Caller(thread), HealthCheck: healthCheck}
	if devices != nil {
		if devType != "" {
			return nil, fmt.Errorf("job: give device_type or devices, not both")
		}
		if devices.Len() == 0 {
			return nil, fmt.Errorf("job: devices is empty: give {ROLE: DEVICE_TYPE, ...}")
		}
		if healthCheck {
			return nil, fmt.Errorf("job: a health check is for one device: devices and health_check = True do not go together")
		}
		j.Devices = map[string]string{}
		for _, kv := range devices.Items() {
			role, ok1 := kv[0].(starlark.String)
			typ, ok2 := kv[1].(starlark.String)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("job: devices must map role names to device type names (strings), got %s: %s", kv[0].Type(), kv[1].Type())
			}
			if !roleName.MatchString(string(role)) {
				return nil, fmt.Errorf("job: devices: role %q must be an identifier (letters, digits, _; not starting with a digit)", string(role))
			}
			if typ == "" {
				return nil, fmt.Errorf("job: devices: role %s has no device type", string(role))
			}
			j.Devices[string(role)] = string(typ)
		}
	}
	for _, item := range params.Items() {
		k, ok := item[0].(starlark.String)
		if !ok {
			return nil, fmt.Errorf("job: params keys must be strings, got %s", item[0].Type())
		}
		switch item[1].(type) {
		case starlark.String, starlark.Int, starlark.Float, starlark.Bool:
		default:
			return nil, fmt.Errorf("job: param %q must be a string, int, float or bool, got %s", string(k), item[1].Type())
		}
		j.Params = append(j.Params, Param{Name: string(k), Value: item[1]})
	}
	if artifacts != nil {
		for i := 0; i < artifacts.Len(); i++ {
			s, ok := artifacts.Index(i).(starlark.String)
			if !ok {
				return nil, fmt.Errorf("job: artifacts must list param names (strings)")
			}
			if !hasParam(j.Params, string(s)) {
				return nil, fmt.Errorf("job: artifacts names %q, which is not a declared param", string(s))
			}
			j.Artifacts = append(j.Artifacts, string(s))
		}
	} else {
		for _, p := range []string{"kernel", "initrd", "dtb", "image", "rootfs"} {
			if hasParam(j.Params, p) {
				j.Artifacts = append(j.Artifacts, p)
			}
		}
	}
	st.plan.Job = j
	st.jobSeen = true
	return starlark.None, nil
}

// roleName is what a role may be called: ctx.devices.ROLE must be valid
// Starlark, and the role names files (console-ROLE.log).
var roleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func hasParam(ps []Param, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (st *declState) stage(thread *starlark.Thread, fname string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		name    string
		fn      starlark.Callable
		timeout builtins.Timeout
		retries int
		onError starlark.Value = starlark.None
	)
	if err := starlark.UnpackArgs(fname, args, kwargs, "name", &name, "fn", &fn, "timeout?", &timeout, "retries?", &retries, "on_error?", &onError); err != nil {
		return nil, err
	}
	if strings.TrimSpace(name) == "" {
		return nil, fmt.Errorf("stage: name must not be empty")
	}
	for _, s := range st.plan.Stages {
		if s.Name == name {
			return nil, fmt.Errorf("stage: %q declared twice (first at %s)", name, s.Pos)
		}
	}
	if retries < 0 || retries > 100 {
		return nil, fmt.Errorf("stage %q: retries must be between 0 and 100", name)
	}
	var recover starlark.Callable
	if onError != starlark.None {
		c, ok := onError.(starlark.Callable)
		if !ok {
			return nil, fmt.Errorf("stage %q: on_error must be a function recover(ctx, error), got %s", name, onError.Type())
		}
		recover = c
	}
	st.plan.Stages = append(st.plan.Stages, Stage{Name: name, Fn: fn, Timeout: timeout.D(), Retries: retries, OnError: recover, Pos: builtins.Caller(thread)})
	return starlark.None, nil
}

func (st *declState) cleanup(thread *starlark.Thread, fname string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		fn      starlark.Callable
		timeout builtins.Timeout
	)
	if err := starlark.UnpackArgs(fname, args, kwargs, "fn", &fn, "timeout?", &timeout); err != nil {
		return nil, err
	}
	st.plan.Cleanups = append(st.plan.Cleanups, Cleanup{Name: fn.Name(), Fn: fn, Timeout: timeout.Or(DefaultCleanupTimeout), Pos: builtins.Caller(thread)})
	return starlark.None, nil
}

func applyParams(j *Job, overrides map[string]string, file string) error {
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i := -1
		for n, p := range j.Params {
			if p.Name == k {
				i = n
			}
		}
		if i < 0 {
			names := make([]string, len(j.Params))
			for n, p := range j.Params {
				names[n] = p.Name
			}
			declared := "none"
			if len(names) > 0 {
				declared = strings.Join(names, ", ")
			}
			return builtins.Job(fmt.Errorf("%s: unknown --param %q; the job declares: %s", file, k, declared))
		}
		v, err := convertParam(j.Params[i].Value, overrides[k])
		if err != nil {
			return builtins.Job(fmt.Errorf("%s: --param %s=%q: %v", file, k, overrides[k], err))
		}
		j.Params[i].Value = v
		j.Params[i].Overridden = true
	}
	return nil
}

func convertParam(def starlark.Value, s string) (starlark.Value, error) {
	switch def.(type) {
	case starlark.Int:
		var n int64
		if _, err := fmt.Sscan(s, &n); err != nil || fmt.Sprint(n) != strings.TrimSpace(s) {
			return nil, fmt.Errorf("want an integer like the declared default %s", def)
		}
		return starlark.MakeInt64(n), nil
	case starlark.Float:
		var f float64
		if _, err := fmt.Sscan(s, &f); err != nil {
			return nil, fmt.Errorf("want a number like the declared default %s", def)
		}
		return starlark.Float(f), nil
	case starlark.Bool:
		switch strings.ToLower(s) {
		case "true", "1", "yes":
			return starlark.True, nil
		case "false", "0", "no":
			return starlark.False, nil
		}
		return nil, fmt.Errorf("want true or false like the declared default %s", def)
	}
	return starlark.String(s), nil
}

// loader implements load() for job files.
type loader struct {
	root *os.Root
	// labDir is the lab directory; labRoot, opened on the first @lab//
	// load, is its lib/ directory.
	labDir  string
	labRoot *os.Root
	// libs are libraries.star's libraries, cacheDir where they are fetched.
	libs        map[string]*Library
	cacheDir    string
	predeclared starlark.StringDict
	cache       map[string]*loadEntry
	plan        *Plan
	print       func(string)
	// ctx ends every thread of the declare phase; reason says why.
	ctx    context.Context
	reason func() string
	stops  []func() bool
}

func (l *loader) closeLab() {
	if l.labRoot != nil {
		l.labRoot.Close()
	}
}

func (l *loader) stopAll() {
	for _, stop := range l.stops {
		stop()
	}
}

type loadEntry struct {
	globals starlark.StringDict
	err     error
	loading bool
}

func (l *loader) newThread(env *builtins.Env, maxSteps uint64, print func(string)) *starlark.Thread {
	l.print = print
	t := &starlark.Thread{Load: l.load}
	t.Print = func(_ *starlark.Thread, msg string) {
		if l.print != nil {
			l.print(msg)
		} else if env.Rec != nil {
			env.Rec.Print(msg)
		}
	}
	t.SetMaxExecutionSteps(maxSteps)
	t.OnMaxSteps = func(t *starlark.Thread) {
		t.Cancel(fmt.Sprintf("step limit of %d Starlark steps exceeded (a runaway loop?)", maxSteps))
	}
	builtins.Attach(t, env)
	if l.ctx != nil {
		// Starlark checks cancellation between steps; this is what ends a
		// long computation at the declare deadline or on a signal.
		l.stops = append(l.stops, context.AfterFunc(l.ctx, func() { t.Cancel(l.reason()) }))
		if l.ctx.Err() != nil {
			t.Cancel(l.reason())
		}
	}
	return t
}

// StdlibPrefix marks modules embedded in the binary.
const StdlibPrefix = "@stdlib//"

// LabPrefix marks modules in the lab's lib/ directory.
const LabPrefix = "@lab//"

func (l *loader) load(thread *starlark.Thread, module string) (starlark.StringDict, error) {
	from, _ := thread.Local(loadFromKey).(string)
	name, data, err := l.read(from, module)
	if err != nil {
		return nil, err
	}
	e, ok := l.cache[name]
	if ok {
		if e.loading {
			return nil, fmt.Errorf("load(%q): cycle in load graph", module)
		}
		return e.globals, e.err
	}
	e = &loadEntry{loading: true}
	l.cache[name] = e
	l.plan.Inputs = append(l.plan.Inputs, input(name, data))
	l.plan.sources[name] = data
	if err := checkSource(name, data); err != nil {
		e.loading = false
		e.err = err
		return nil, err
	}
	// A library runs in a thread of its own with the same sandbox.
	env := builtins.EnvOf(thread)
	t := l.newThread(env, l.plan.MaxSteps, l.print)
	t.Name = "load " + name
	t.SetLocal(loadFromKey, name)
	t.Print = thread.Print
	e.globals, e.err = starlark.ExecFileOptions(FileOptions, t, name, data, l.predeclared)
	e.loading = false
	if e.err == nil {
		e.globals.Freeze()
	}
	return e.globals, e.err
}

// loadFromKey is the thread-local name of the module a load thread runs.
const loadFromKey = "basalt.interp.loadfrom"

// read finds module, loaded by the module from ("" for the job file).
func (l *loader) read(from, module string) (string, []byte, error) {
	if strings.HasPrefix(module, StdlibPrefix) {
		p := strings.TrimPrefix(module, StdlibPrefix)
		if !fs.ValidPath(p) || !strings.HasSuffix(p, ".star") {
			return "", nil, fmt.Errorf("load(%q): not a valid @stdlib// module name", module)
		}
		data, err := fs.ReadFile(stdlib.FS, p)
		if err != nil {
			return "", nil, fmt.Errorf("load(%q): no such module in the standard library (see `basalt doc stdlib`)", module)
		}
		return module, data, nil
	}
	if p, ok := strings.CutPrefix(module, LabPrefix); ok {
		root, err := l.labLib()
		if err != nil {
			return "", nil, fmt.Errorf("load(%q): %w", module, err)
		}
		clean, data, err := ReadConfined(root, p, "the lab's lib/ directory")
		if err != nil {
			return "", nil, fmt.Errorf("load(%q): %w", module, err)
		}
		return LabPrefix + clean, data, nil
	}
	if lib, p, ok := l.libraryOf(module); ok {
		root, err := l.libRoot(lib)
		if err != nil {
			return "", nil, fmt.Errorf("load(%q): %w", module, err)
		}
		clean, data, err := ReadConfined(root, p, "library "+lib.Name+" at "+lib.Commit[:12])
		if err != nil {
			return "", nil, fmt.Errorf("load(%q): %w", module, err)
		}
		return "@" + lib.Name + "//" + clean, data, nil
	}
	if lib, _, ok := l.libraryOf(from); ok && !strings.HasPrefix(module, "@") {
		return "", nil, fmt.Errorf("load(%q): a library loads its own files as @%s//PATH.star, not by a path relative to the job", module, lib.Name)
	}
	if strings.HasPrefix(from, LabPrefix) && !strings.HasPrefix(module, "@") {
		// A relative path would name a file beside the job, which differs
		// from job to job; a lab library names its siblings in full.
		return "", nil, fmt.Errorf("load(%q): a @lab// library loads lab libraries as @lab//NAME.star, not by a path relative to the job", module)
	}
	if strings.HasPrefix(module, "@") {
		return "", nil, fmt.Errorf("load(%q): only @stdlib//, @lab// and files under the job's directory can be loaded, and @NAME// for the libraries %s declares", module, LibrariesFile)
	}
	clean, data, err := ReadConfined(l.root, module, "the job's directory")
	if err != nil {
		return "", nil, fmt.Errorf("load(%q): %w", module, err)
	}
	return clean, data, nil
}

// labLib opens the lab's lib/ directory, once.
func (l *loader) labLib() (*os.Root, error) {
	if l.labRoot != nil {
		return l.labRoot, nil
	}
	if l.labDir == "" {
		return nil, errors.New("no lab: @lab// needs a lab directory (--lab, $BASALT_LAB or ./lab)")
	}
	root, err := os.OpenRoot(filepath.Join(l.labDir, "lib"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("lab %s has no lib/ directory", l.labDir)
		}
		return nil, fmt.Errorf("open lab %s lib/: %v", l.labDir, rootErr(err))
	}
	l.labRoot = root
	return root, nil
}

// ReadConfined reads the module file name under root: a relative path
// ending in .star, never "..", an absolute path or a symlink out of root
// (os.Root refuses those). where names root in errors. It returns the
// cleaned name, as recorded in the plan's inputs.
func ReadConfined(root *os.Root, name, where string) (string, []byte, error) {
	if !strings.HasSuffix(name, ".star") {
		return "", nil, errors.New("module names end in .star")
	}
	if path.IsAbs(name) || filepath.IsAbs(name) {
		return "", nil, fmt.Errorf("absolute paths are refused; name a file under %s", where)
	}
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", nil, fmt.Errorf("the path leaves %s", where)
	}
	f, err := root.Open(clean)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("no such file under %s", where)
		}
		return "", nil, fmt.Errorf("refused: %v", rootErr(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSourceSize+1))
	if err != nil {
		return "", nil, err
	}
	return clean, data, nil
}

// rootErr shortens os.Root's errors to their reason.
func rootErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
