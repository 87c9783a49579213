package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/spf13/cobra"
)

type runFlags struct {
	jobFlags
	out     string
	follow  bool
	wait    time.Duration
	verbose bool
	// maxMemoryMiB bounds the job's heap (0: no limit).
	maxMemoryMiB uint64
}

func (a *app) runCmd() *cobra.Command {
	var f runFlags
	c := &cobra.Command{
		Use:   "run JOB.star",
		Short: "Run a job and write its result bundle",
		Long: `run declares the job (its top-level code), locks the device, executes the stages
in order under the job's deadline, always runs the cleanup functions, and writes the
result bundle (result.json, events.jsonl, console.log, junit.xml, artifacts/).

The first SIGINT or SIGTERM cancels the job and runs cleanup; a second one aborts
the cleanup. The exit code tells test failures (1) from job errors (2), broken
labs (3), misbehaving devices (4) and cancellation (5).`,
		Example: `  basalt run jobs/highbank-deploy.star --device sim
  basalt run job.star --lab ./lab --device highbank01 --param image=ubuntu.img.gz --out results/42
  basalt run job.star --device sim --follow`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return a.runJob(args[0], &f)
		},
	}
	f.register(c)
	c.Flags().StringVar(&f.out, "out", "", "bundle directory (default results/<job>-<UTC timestamp>)")
	c.Flags().BoolVar(&f.follow, "follow", false, "stream the console to stdout while the job runs")
	c.Flags().DurationVar(&f.wait, "wait", 0, "wait up to this long for a busy device instead of failing at once")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log debug messages to stderr")
	c.Flags().Uint64Var(&f.maxMemoryMiB, "max-memory", interp.DefaultMemoryLimit>>20, "job memory limit in MiB: a job whose heap grows past it ends with a job error (0: none)")
	return c
}

func (a *app) runJob(file string, f *runFlags) error {
	params, err := f.paramMap()
	if err != nil {
		return err
	}
	if f.wait < 0 {
		return usagef("--wait must not be negative")
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	out := newReporter(a.stdout, a.stderr)

	// Resolve the device first: a bad --device is the lab's problem, not
	// the job's, and is found before anything runs.
	var (
		lb  *lab.Lab
		dev *lab.Device
	)
	if f.device != "" {
		lb, dev, err = resolveDevice(f.lab, f.device)
		if err != nil {
			return &exitError{code: exitCodeOf(err), err: err}
		}
	}
	secrets := dev.Secrets()
	logger := slog.New(slog.NewTextHandler(&redactingWriter{w: a.stderr, r: bundle.NewRedactor(secrets...)}, &slog.HandlerOptions{Level: level}))

	modules := predeclared()
	for k, v := range a.extraModules {
		modules[k] = v
	}
	// A job limit (memory, bundle volume) cancels this context with a job
	// error as its cause; a signal cancels it through a.ctx.
	ctx, limitExceeded := context.WithCancelCause(a.ctx)
	defer limitExceeded(nil)
	stopWatch := interp.WatchMemory(ctx, f.maxMemoryMiB<<20, limitExceeded)
	defer stopWatch()
	plan, declErr := interp.Declare(interp.Options{File: file, Params: params, Modules: modules, MaxSteps: f.maxSteps,
		Ctx: ctx, Timeout: f.declareTimeout,
		Print: func(msg string) { out.print(msg) }})
	if declErr == nil {
		declErr = plan.Validate()
	}
	if declErr == nil && dev != nil {
		declErr = compatible(plan, lb, dev)
	} else if declErr == nil {
		_, declErr = checkDevice(plan, f.lab, "")
	}

	jobName := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	if plan != nil {
		jobName = plan.Job.Name
	}
	dir := f.out
	if dir == "" {
		dir = filepath.Join("results", fmt.Sprintf("%s-%s", jobName, time.Now().UTC().Format("20060102T150405.000Z")))
	}
	res := bundle.Result{Job: jobName, File: file, Runner: bundle.Runner{Name: "basalt", Version: versionString()}}
	if dev != nil {
		res.Device = lab.Facts(dev)
	}
	var follow io.Writer
	if f.follow {
		follow = a.stdout
	}
	b, err := bundle.Create(dir, res, bundle.Options{Secrets: secrets, Follow: follow, Print: out.printer(), OnLimit: limitExceeded})
	if err != nil {
		return &exitError{code: pipeline.ExitInfra, err: err}
	}
	fail := func(err error, class builtins.Class) error {
		info := &bundle.ErrorInfo{Class: string(class), Message: err.Error()}
		status := pipeline.StatusError
		if class == builtins.ClassCanceled {
			status = pipeline.StatusCanceled
		}
		b.Update(func(r *bundle.Result) { r.Status = status; r.Error = info })
		b.Emit("job_end", map[string]any{"status": status, "class": string(class), "error": err.Error()})
		b.Close()
		out.summary(b.Result(), dir)
		return &exitError{code: pipeline.ExitCode(status, class)}
	}
	if declErr != nil {
		return fail(declErr, builtins.ClassOf(declErr))
	}
	b.Update(func(r *bundle.Result) {
		r.Params = plan.ParamStrings()
		r.Inputs = inputs(plan)
	})
	out.start(plan, dev, dir)

	if dev != nil && dev.File != "" {
		// Devices of the lab are locked; each `--device sim` run has a
		// node of its own and needs no lock.
		held, err := lockDevice(a.ctx, lb, dev, plan.Job.Name, f.wait)
		if err != nil {
			return fail(err, builtins.ClassInfra)
		}
		defer held.Release()
		b.Emit("device_locked", map[string]any{"device": dev.Name})
	}

	env := &builtins.Env{
		Ctx:      a.ctx,
		JobDir:   plan.Dir,
		Rec:      b,
		Log:      logger,
		Device:   dev,
		Lab:      lb,
		Params:   plan.ParamStrings(),
		Facts:    lab.Facts(dev),
		Backends: map[string]any{},
	}
	closeBackends, err := wire(a.ctx, env, b)
	if err != nil {
		if closeBackends != nil {
			closeBackends()
		}
		return fail(err, builtins.ClassOf(err))
	}
	r := &pipeline.Runner{Plan: plan, Env: env, Bundle: b, Log: logger, Abort: a.abort, Progress: out.progress, OnThread: a.onThread}
	outcome := r.Run(ctx)
	if closeBackends != nil {
		closeBackends()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.Update(func(r *bundle.Result) { r.Runner.PeakRSSKB = ru.Maxrss })
	}
	if err := b.Close(); err != nil {
		fmt.Fprintf(a.stderr, "basalt: %v\n", err)
	}
	out.summary(b.Result(), dir)
	code := outcome.ExitCode()
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}

// inputs lists the job file, loaded libraries and local artifacts with
// their digests, for result.json.
func inputs(plan *interp.Plan) []bundle.Input {
	var in []bundle.Input
	for _, i := range plan.Inputs {
		in = append(in, bundle.Input{Name: i.Name, Path: i.Name, Size: i.Size, SHA256: i.SHA256})
	}
	for _, art := range plan.Artifacts() {
		if art.URL {
			in = append(in, bundle.Input{Name: art.Param, URL: art.Value})
			continue
		}
		n, sum, err := bundle.HashFile(filepath.Join(plan.Dir, art.Value))
		if err == nil {
			in = append(in, bundle.Input{Name: art.Param, Path: art.Value, Size: n, SHA256: sum})
		}
	}
	return in
}

// redactingWriter masks secrets in log output.
type redactingWriter struct {
	w io.Writer
	r *bundle.Redactor
}

func (rw *redactingWriter) Write(p []byte) (int, error) {
	_, err := io.WriteString(rw.w, rw.r.String(string(p)))
	return len(p), err
}

// simTypes are the device types whose jobs the built-in sim device runs: it
// simulates a Highbank node (its BMC, SOL console, PXE firmware and shell).
var simTypes = []string{"sim", "highbank"}

// compatible checks that the job's device type exists (in the lab or built
// in) and that the device is of that type — or is the sim device and the
// type is one it simulates.
func compatible(plan *interp.Plan, lb *lab.Lab, dev *lab.Device) error {
	want := plan.Job.DeviceType
	if want == "" {
		return nil
	}
	types := lab.BuiltinTypes()
	if lb != nil {
		types = lb.Types
	}
	if _, ok := types[want]; !ok {
		known := make([]string, 0, len(types))
		for k := range types {
			known = append(known, k)
		}
		return builtins.Job(fmt.Errorf("%s: unknown device type %q (known: %v)", plan.Job.Pos, want, sortedStrings(known)))
	}
	if dev.Type == nil || dev.Type.Name == want {
		return nil
	}
	if dev.Type.Name == "sim" {
		if slices.Contains(simTypes, want) {
			return nil
		}
		return builtins.Job(fmt.Errorf("%s: the job is for device type %q; device %q is the simulator, which runs jobs of type %s",
			plan.Job.Pos, want, dev.Name, strings.Join(simTypes, " or ")))
	}
	return builtins.Job(fmt.Errorf("%s: the job is for device type %q but device %q is a %q", plan.Job.Pos, want, dev.Name, dev.Type.Name))
}

var errNoLab = errors.New("no lab")

func lockDevice(ctx context.Context, lb *lab.Lab, dev *lab.Device, job string, wait time.Duration) (*lab.Held, error) {
	dir := lab.DefaultLockDir()
	if lb != nil && lb.LockDir != "" {
		dir = lb.LockDir
	}
	h, err := lab.Lock(ctx, dir, dev.Name, lab.Holder{PID: os.Getpid(), Job: job, Since: time.Now()}, wait)
	if err != nil {
		return nil, builtins.Infra(err)
	}
	return h, nil
}
