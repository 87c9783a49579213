package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/power"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/runtime/artifact"
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
	// deviceType and deviceTags pick the device from a pool of the lab;
	// deviceTypes are the --device-type flags, which splitTypes sorts
	// into deviceType and roleTypes (ROLE=TYPE, a multi-device job).
	deviceTypes []string
	deviceType  string
	roleTypes   map[string]string
	deviceTags  []string
	// poolCands are the devices each --device-type ROLE=TYPE picks from.
	poolCands map[string][]string
	// bisect maps the exit codes for git bisect run (bisectCode).
	bisect bool
	// maxMemoryMiB bounds the job's heap (0: no limit).
	maxMemoryMiB uint64
	// hold keeps a failed job's device as it is for this long
	// (--hold-on-failure); session, when set, runs after the stages
	// instead (basalt shell).
	hold time.Duration
	// baseline is a bundle this run is compared with at its end
	// (result.json baseline).
	baseline string
	session  func(o pipeline.Outcome, con *sol.Console)
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
the cleanup. The exit code tells test failures (1) from errors in the job or the
lab files (2), infrastructure failures a retry may fix (3), misbehaving devices (4),
cancellation (5) and usage mistakes (64: no bundle is written).`,
		Example: `  basalt run jobs/highbank-deploy.star --device sim
  basalt run job.star --lab ./lab --device highbank01 --param image=ubuntu.img.gz --out results/42
  basalt run job.star --device sim --follow`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			err := a.runJob(args[0], &f)
			if f.bisect {
				return bisectCode(err)
			}
			return err
		},
	}
	f.register(c)
	c.Flags().StringVar(&f.out, "out", "", "bundle directory (default results/<job>-<UTC timestamp>)")
	c.Flags().BoolVar(&f.follow, "follow", false, "stream the console to stdout while the job runs")
	c.Flags().DurationVar(&f.wait, "wait", 0, "wait up to this long for a busy device instead of failing at once")
	c.Flags().StringArrayVar(&f.deviceTypes, "device-type", nil, "run on the first free device of the lab of this type (with --wait, wait for one, first come first served); ROLE=TYPE for a role of a multi-device job (repeatable)")
	c.Flags().StringArrayVar(&f.deviceTags, "device-tag", nil, "with --device-type: only devices whose tags = [...] hold this tag (repeatable: every tag)")
	c.Flags().BoolVar(&f.bisect, "bisect", false, "exit for git bisect run: 0 pass, 1 tests failed, 125 (skip) on infrastructure and device errors, 128 (stop the bisect) when canceled or misused")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log debug messages to stderr")
	c.Flags().Uint64Var(&f.maxMemoryMiB, "max-memory", interp.DefaultMemoryLimit>>20, "job memory limit in MiB: a job whose heap grows past it ends with a job error (0: none)")
	c.Flags().DurationVar(&f.hold, "hold-on-failure", 0, "when the job fails, keep the device, its console and servers as they are for this long before the cleanup (basalt console DEVICE attaches, basalt release DEVICE ends it)")
	c.Flags().StringVar(&f.baseline, "baseline", "", "compare this run with the bundle in this directory at its end (as basalt diff; result.json baseline, report.html)")
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
	if f.hold < 0 {
		return usagef("--hold-on-failure must not be negative")
	}
	if err := f.splitDevices(); err != nil {
		return err
	}
	if err := f.splitTypes(); err != nil {
		return err
	}
	// A multi-device job: --device ROLE=NAME or --device-type ROLE=TYPE
	// for each role.
	multi := len(f.roleDevices)+len(f.roleTypes) > 0
	if multi && f.hold > 0 {
		return usagef("--hold-on-failure is for single-device jobs")
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	// Usage mistakes exit 64 before anything is written: a job file that
	// is not there, a bundle directory already used.
	if fi, err := os.Stat(file); err != nil {
		return usagef("job file %s: %w", file, osErr(err))
	} else if fi.IsDir() {
		return usagef("job file %s is a directory", file)
	}
	if f.out != "" && bundle.Exists(f.out) {
		return usagef("--out %s already holds a result bundle; give a new directory", f.out)
	}
	if f.baseline != "" {
		// A baseline that cannot be compared is the command line's
		// mistake, found before anything runs.
		if _, err := readDiffBundle(f.baseline); err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.code, err: fmt.Errorf("--baseline: %w", ee.err)}
			}
			return usagef("--baseline: %v", err)
		}
	}
	if f.deviceType != "" && f.device != "" {
		return usagef("give --device or --device-type, not both")
	}
	if len(f.deviceTags) > 0 && f.deviceType == "" && len(f.roleTypes) == 0 {
		return usagef("--device-tag needs --device-type")
	}
	out := newReporter(a.stdout, a.stderr)

	// Resolve the device first: an unknown device is a usage error found
	// before anything runs; a lab file that does not load is reported in
	// the bundle, as a job error (exit 2).
	var (
		lb     *lab.Lab
		dev    *lab.Device
		labErr error
		roles  []roleDevice
	)
	if multi {
		if lb, roles, labErr, err = a.resolveMulti(f); err != nil {
			return err
		}
	}
	if f.device != "" {
		lb, dev, err = resolveDevice(f.lab, f.device)
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		labErr = err
	}
	// A pool run locks its device now, before the job is declared: which
	// device it gets decides the rest. A lock that cannot be had is
	// reported in the bundle (exit 3, or 5 when canceled while waiting).
	var (
		poolHeld *lab.Held
		poolErr  error
		poolInfo map[string]any
	)
	if f.deviceType != "" {
		l, err := loadLab(f.lab)
		var names []string
		if err == nil {
			a.learnSecrets(l, nil)
			names, err = poolDevices(l, f.deviceType, f.deviceTags)
		}
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		labErr = err
		if err == nil {
			lb = l
			waitStart := time.Now()
			holderJob := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
			poolHeld, poolErr = lockPool(a.ctx, l, f.deviceType, f.deviceTags, names, holderJob, f.wait)
			poolInfo = map[string]any{"type": f.deviceType, "tags": f.deviceTags, "devices": names,
				"waited_ms": time.Since(waitStart).Milliseconds()}
			if poolErr == nil {
				defer poolHeld.Release()
				poolInfo["device"] = poolHeld.Device
				poolInfo["locked_at"] = time.Now().UTC().Format(time.RFC3339Nano)
				if dev, err = l.Device(poolHeld.Device); err != nil {
					labErr, dev = builtins.Job(err), nil
				}
			}
		}
	}
	if f.hold > 0 && dev != nil && dev.File == "" {
		return usagef("--hold-on-failure needs a lab device, which basalt console can name (basalt device add sim NAME makes a sim one)")
	}
	a.learnSecrets(lb, dev)
	// The lab's known issues, matched against the run's failures at its
	// end (result.json triage); a broken known-issues.star is a lab error.
	known, knownErr := lab.LoadKnownIssues(jobLabDir(f.lab))
	if knownErr != nil && labErr == nil {
		labErr = builtins.Job(fmt.Errorf("lab %s: %w", jobLabDir(f.lab), knownErr))
	}
	if lb == nil {
		// No device: the lab's secrets are still masked, as check does,
		// should a --param repeat one.
		if l, err := loadLab(f.lab); err == nil {
			a.learnSecrets(l, nil)
		}
	}
	logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))

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
	// The same static checks as `basalt check` (unknown members and
	// keywords, builtins the device cannot serve) before anything runs.
	var plan *interp.Plan
	calls, declErr := lintJob(file, jobLabDir(f.lab))
	if declErr == nil {
		plan, declErr = interp.Declare(interp.Options{File: file, Params: params, Modules: modules, MaxSteps: f.maxSteps,
			Ctx: ctx, Timeout: f.declareTimeout, LabDir: jobLabDir(f.lab), CacheDir: labCacheDir(jobLabDir(f.lab)),
			Print: func(msg string) { out.print(msg) }})
	}
	if declErr == nil {
		declErr = plan.Validate()
	}
	if declErr == nil && dev != nil {
		declErr = compatible(plan, lb, dev)
	} else if declErr == nil {
		_, declErr = checkDevice(plan, f.lab, "")
	}
	if declErr == nil && dev != nil && calls != nil {
		if err := deviceUses(calls.Uses, dev); err != nil {
			declErr = builtins.Job(err)
		}
	}

	if declErr == nil && (multi || len(plan.Job.Devices) > 0) {
		if f.device != "" || f.deviceType != "" {
			return usagef("%s: job %s has roles %s: give --device ROLE=NAME (or --device-type ROLE=TYPE) for each", plan.Job.Pos, plan.Job.Name, strings.Join(plan.Job.Roles(), ", "))
		}
		if err := checkRoles(plan, f.roleGiven()); err != nil {
			return err
		}
		if labErr == nil {
			declErr = compatibleRoles(plan, lb, roles)
		}
	}
	if declErr == nil && f.device == "" && f.deviceType == "" && plan.Job.DeviceType != "" {
		return usagef("%s: job %s is for device type %q: give --device NAME, a device file or sim", plan.Job.Pos, plan.Job.Name, plan.Job.DeviceType)
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
	if multi {
		res.Devices = roleFacts(roles)
	}
	if poolInfo != nil {
		res.Extra = map[string]any{"pool": poolInfo}
	}
	var follow io.Writer
	if f.follow {
		follow = out.follower()
	}
	// A lab device's console is served to `basalt console` on a socket
	// beside its lock, the bytes of console.log.
	var watchers *hub
	if dev != nil && dev.File != "" {
		watchers = newHub()
		if follow != nil {
			follow = io.MultiWriter(follow, watchers)
		} else {
			follow = watchers
		}
	}
	b, err := bundle.Create(dir, res, bundle.Options{Redactor: a.redact, Follow: follow, Print: out.printer(), OnLimit: limitExceeded})
	if errors.Is(err, bundle.ErrExists) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EROFS) {
		// --out (or the default results/) names a place no bundle can
		// be written to: the command line's mistake, not the lab's.
		return &usageError{err}
	}
	if err != nil {
		return &exitError{code: pipeline.ExitInfra, err: err}
	}
	if f.baseline != "" {
		b.CompareWith(f.baseline)
	}
	fail := func(err error, class builtins.Class) error {
		info := &bundle.ErrorInfo{Class: string(class), Message: err.Error()}
		status := pipeline.StatusError
		if class == builtins.ClassCanceled {
			status = pipeline.StatusCanceled
		}
		b.Update(func(r *bundle.Result) { r.Status = status; r.Error = info })
		b.Emit("job_end", map[string]any{"status": status, "class": string(class), "error": err.Error()})
		b.Triage(known)
		b.Close()
		out.summary(b.Result(), dir)
		out.baseline(b.Result())
		a.ciReport(b.Result(), plan, dir)
		return &exitError{code: pipeline.ExitCode(status, class)}
	}
	if poolErr != nil {
		return fail(poolErr, builtins.ClassOf(poolErr))
	}
	if labErr != nil {
		return fail(labErr, builtins.ClassOf(labErr)) // lab errors are job errors; a pool with no admissible device is infra
	}
	if declErr != nil {
		return fail(declErr, builtins.ClassOf(declErr))
	}
	b.Update(func(r *bundle.Result) {
		r.Params = plan.ParamStrings()
		r.Inputs = inputs(plan)
	})
	if poolHeld != nil {
		out.printf("device %s: the first free of pool %s (waited %s)\n", poolHeld.Device, poolName(f.deviceType, f.deviceTags),
			(time.Duration(poolInfo["waited_ms"].(int64)) * time.Millisecond).String())
	}
	if multi {
		var release func()
		roles, release, err = a.lockMulti(lb, roles, f, plan, b)
		defer release()
		if err != nil {
			return fail(err, builtins.ClassOf(err))
		}
		out.startRoles(plan, roles, dir)
	} else {
		out.start(plan, dev, dir)
	}

	heldPath := ""
	if poolHeld != nil {
		heldPath = poolHeld.Path
	} else if dev != nil && dev.File != "" {
		// Devices of the lab are locked; each `--device sim` run has a
		// node of its own and needs no lock.
		held, err := lockDevice(a.ctx, lb, dev, plan.Job.Name, f.wait)
		if err != nil {
			return fail(err, builtins.ClassInfra)
		}
		defer held.Release()
		heldPath = held.Path
		b.Emit("device_locked", map[string]any{"device": dev.Name})
	}
	if heldPath != "" {
		// Before the release: the next holder's socket has the same path.
		defer watchers.close()
		st, err := lab.ReadState(filepath.Dir(heldPath), dev.Name)
		if err == nil {
			err = st.Admit(dev.Name, plan.Job.HealthCheck)
		}
		if err != nil {
			return fail(err, builtins.ClassDevice)
		}
		if err := watchers.serve(consoleSocket(lb, dev)); err != nil {
			logger.Warn("no console for basalt console", "device", dev.Name, "error", err)
		}
	}

	env := &builtins.Env{
		Ctx:    a.ctx,
		JobDir: plan.Dir,
		Rec:    b,
		Log:    logger,
		Params: plan.ParamStrings(),
		Facts:  lab.Facts(dev),
	}
	lab.SetDevice(env, dev)
	// The backends live until the last cleanup has finished: under
	// a.abort, which only a second signal cancels. The job's deadline
	// starts now: opening the console is part of it.
	jobStart := time.Now()
	wireAll := wire
	if multi {
		stopConsoles, err := roleEnvs(env, b, lb, roles, follow)
		defer stopConsoles()
		if err != nil {
			return fail(err, builtins.ClassOf(err))
		}
		wireAll = wireRoles
	}
	closeBackends, err := wireAll(ctx, a.abort, jobStart.Add(plan.Job.Timeout), env, lb, b)
	if err != nil {
		if closeBackends != nil {
			closeBackends()
		}
		return fail(err, builtins.ClassOf(err))
	}
	sb, _ := sol.BackendOf(env)
	con, _ := sb.(*sol.Console)
	if watchers != nil {
		watchers.mu.Lock()
		watchers.con = con
		watchers.power, _ = power.BackendOf(env)
		watchers.mu.Unlock()
	}
	progress := out.progress
	if ciFromEnv().gitlab {
		progress = gitlabSections(func(s string) { out.printf("%s", s) }, progress)
	}
	r := &pipeline.Runner{Plan: plan, Env: env, Bundle: b, Log: logger, Abort: a.abort, Progress: progress, OnThread: a.onThread,
		Start: jobStart}
	switch {
	case f.session != nil:
		r.Hold = func(o pipeline.Outcome) { f.session(o, con) }
	case f.hold > 0:
		r.Hold = func(o pipeline.Outcome) {
			if o.Status == pipeline.StatusPass || o.Status == pipeline.StatusCanceled {
				return
			}
			why := watchers.hold(a.ctx, f.hold, func() {
				fmt.Fprintf(a.stderr, "basalt: job %s: %s; holding %s for %s before its cleanup:\n  basalt console %s   attaches to its console (~. detaches)\n  basalt release %s   ends the hold (or Ctrl-C here)\n",
					plan.Job.Name, o.Status, dev.Name, f.hold, dev.Name, dev.Name)
				b.Emit("hold_start", map[string]any{"device": dev.Name, "timeout_ms": f.hold.Milliseconds()})
			})
			b.Emit("hold_end", map[string]any{"device": dev.Name, "reason": why})
			fmt.Fprintf(a.stderr, "basalt: released %s (%s): running the cleanup\n", dev.Name, why)
		}
	}
	// The BMC's SEL and sensors before and after: result.json lab_context.
	// Through the job's own IPMI session, before the first stage and
	// after the last cleanup.
	labDev, labBMC := lab.DeviceOf(env), jobLabReader(env)
	labStart := bmcSnapshot(a.abort, labDev, labBMC, "start")
	outcome := r.Run(ctx)
	recordLabBMC(b, labStart, bmcSnapshot(a.abort, labDev, labBMC, "end"))
	if closeBackends != nil {
		closeBackends()
	}
	if plan.Job.HealthCheck && dev != nil && dev.File != "" && outcome.Status != pipeline.StatusCanceled {
		// LAVA's health semantics: a health check that passes makes the
		// device good; one that fails or is incomplete makes it bad.
		health := lab.HealthBad
		if outcome.Status == pipeline.StatusPass {
			health = lab.HealthGood
		}
		stateDir := lab.DefaultLockDir()
		if lb != nil && lb.LockDir != "" {
			stateDir = lb.LockDir
		}
		if _, err := lab.UpdateState(stateDir, dev.Name, func(s *lab.State) {
			s.Health, s.HealthJob, s.HealthAt, s.HealthBundle = health, plan.Job.Name, time.Now().UTC().Truncate(time.Second), dir
		}); err != nil {
			fmt.Fprintf(a.stderr, "basalt: %v\n", err)
		}
		b.Emit("device_health", map[string]any{"device": dev.Name, "health": health})
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.Update(func(r *bundle.Result) { r.Runner.PeakRSSKB = ru.Maxrss })
	}
	b.Triage(known)
	if err := b.Close(); err != nil {
		fmt.Fprintf(a.stderr, "basalt: %v\n", err)
	}
	out.summary(b.Result(), dir)
	out.baseline(b.Result())
	a.ciReport(b.Result(), plan, dir)
	code := outcome.ExitCode()
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}

// Exit codes of `basalt run --bisect` that git-bisect(1) gives a meaning:
// 125 skips the commit, 128 and above stop the bisect.
const (
	exitBisectSkip  = 125
	exitBisectAbort = 128
)

// bisectCode maps run's outcome for `git bisect run`: an infrastructure or
// device error (after the stage retries) says nothing about the commit, so
// the commit is skipped instead of blamed; a canceled run or a usage mistake
// stops the bisect, as blaming every commit for them would be worse. Pass
// (0), failed tests (1) and job errors (2: the job or lab file at this
// commit is broken) keep their codes, which git reads as good and bad.
func bisectCode(err error) error {
	if err == nil {
		return nil
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return &exitError{code: exitBisectAbort, err: ue.err}
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		return err
	}
	why := map[int]string{pipeline.ExitInfra: "an infrastructure error", pipeline.ExitDevice: "a device error", pipeline.ExitCanceled: "canceled"}[ee.code]
	switch ee.code {
	case pipeline.ExitInfra, pipeline.ExitDevice:
		return &exitError{code: exitBisectSkip, err: errors.Join(ee.err, fmt.Errorf("--bisect: %s (exit %d) says nothing about this commit: exit %d, git bisect skips it", why, ee.code, exitBisectSkip))}
	case pipeline.ExitCanceled:
		return &exitError{code: exitBisectAbort, err: errors.Join(ee.err, fmt.Errorf("--bisect: canceled: exit %d, git bisect stops", exitBisectAbort))}
	}
	return err
}

// inputs lists the job file, loaded libraries and local artifacts with
// their digests, for result.json.
func inputs(plan *interp.Plan) []bundle.Input {
	var in []bundle.Input
	for _, i := range plan.Inputs {
		if i.Commit != "" { // a libraries.star library
			in = append(in, bundle.Input{Name: i.Name, URL: i.URL, Commit: i.Commit})
			continue
		}
		in = append(in, bundle.Input{Name: i.Name, Path: i.Name, Size: i.Size, SHA256: i.SHA256})
	}
	for _, art := range plan.Artifacts() {
		if art.URL {
			in = append(in, bundle.Input{Name: art.Param, URL: art.Value})
			continue
		}
		// The file the builtins will use, by the same rules (package artifact).
		f, err := artifact.Resolve(plan.Dir, art.Value)
		if err != nil {
			continue
		}
		sum, err := f.Sum()
		f.Close()
		if err == nil {
			in = append(in, bundle.Input{Name: art.Param, Path: art.Value, Size: f.Size, SHA256: sum})
		}
	}
	return in
}

// learnSecrets adds the secret values of the lab's devices and of dev
// (which may be a file outside the lab) to the redactor of every output,
// so that a secret shows nowhere — not even where a job or a --param
// repeats it.
func (a *app) learnSecrets(l *lab.Lab, dev *lab.Device) {
	if a.redact == nil { // an app built by a test, without run's writers
		a.redact = bundle.NewRedactor()
	}
	if l != nil {
		// Lab devices are loaded with their secrets as references. A
		// secret that can be read is masked; one that cannot is not needed
		// (check and device show never need one) and is no error here.
		for name := range l.Devices {
			if d, err := l.Device(name); err == nil {
				a.redact.Add(d.Secrets()...)
			}
		}
	}
	a.redact.Add(dev.Secrets()...)
}

// simTypes are the device types whose jobs the built-in sim device runs: it
// simulates a Highbank node (its BMC, SOL console, PXE firmware and shell).
var simTypes = []string{"sim", "highbank"}

// compatible checks that the job's device type exists (in the lab or built
// in) and that the device is of that type — or is the sim device and the
// type is one it simulates.
func compatible(plan *interp.Plan, lb *lab.Lab, dev *lab.Device) error {
	return compatibleType(plan.Job.Pos, "", plan.Job.DeviceType, lb, dev)
}

// compatibleType is compatible for a device type want declared at pos;
// what starts the messages (a role's "role server: ").
func compatibleType(pos, what, want string, lb *lab.Lab, dev *lab.Device) error {
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
		return builtins.Job(fmt.Errorf("%s: %sunknown device type %q (known: %v)", pos, what, want, sortedStrings(known)))
	}
	if dev == nil || dev.Type == nil || dev.Type.Is(want) {
		return nil
	}
	if dev.Type.Is("sim") {
		if slices.Contains(simTypes, want) {
			return nil
		}
		return builtins.Job(fmt.Errorf("%s: %sthe job is for device type %q; device %q is the simulator, which runs jobs of type %s",
			pos, what, want, dev.Name, strings.Join(simTypes, " or ")))
	}
	return builtins.Job(fmt.Errorf("%s: %sthe job is for device type %q but device %q is a %q", pos, what, want, dev.Name, dev.Type.Name))
}

// osErr drops the *PathError's operation and path, which the caller names.
func osErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

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
