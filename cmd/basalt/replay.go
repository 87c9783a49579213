package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/basalt-lab/basalt/runtime/replay"
	"github.com/spf13/cobra"
)

type replayFlags struct {
	out     string
	lab     string
	verbose bool
}

func (a *app) replayCmd() *cobra.Command {
	var f replayFlags
	c := &cobra.Command{
		Use:   "replay BUNDLE [JOB.star]",
		Short: "Run a job again against a recorded bundle, without hardware",
		Long: `replay runs a job — the bundle's own job file, or JOB.star, possibly edited — against
the run recorded in BUNDLE instead of a device. The recorded console.log is fed back
in step with the job: up to each point where the recorded job typed, started a
console epoch (a power action) or waited in vain, and on once the replayed job has
done the same. What the job types is compared with what was typed (in the recorded,
masked form where the recording masked a secret); IPMI, power and PXE calls, and the
files target.fetch fetched, are answered from the recording; sol.expect and
target.run run the real matcher on the recorded output. An expect that the recorded
console cannot satisfy fails at once, as a timeout (a device error).

The replay passes when the job makes the recorded calls in order (ipmi, power, pxe,
target, sol.send/sendline/mark; sol.expect, sol.mode and test.* are free) and its
expects match the recorded output; otherwise it prints the first divergence: the
call, its file:line, what the recording did and what the job did. Exit codes are
run's: 0 passed, 1 a test now fails (or the job passed but left out a recorded
call), 2 the job typed or called something else (a job error), 4 an expect no longer
matches. The replay writes a bundle of its own (--out).

A bundle that is cut short or edited so that it cannot be followed is refused
(exit 2) with every problem named; one of another schema version too, naming both
versions; a directory without result.json is exit 64.`,
		Example: `  basalt replay results/highbank-deploy-20261201T223424.000Z
  basalt replay results/42 jobs/highbank-deploy.star --out results/42-replay`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			job := ""
			if len(args) == 2 {
				job = args[1]
			}
			return a.replayJob(args[0], job, &f)
		},
	}
	c.Flags().StringVar(&f.out, "out", "", "bundle directory of the replay (default results/<job>-replay-<UTC timestamp>)")
	c.Flags().StringVar(&f.lab, "lab", "", "lab directory for @lab// libraries and device types (default $BASALT_LAB, else ./lab)")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log debug messages to stderr")
	return c
}

func (a *app) replayJob(dir, file string, f *replayFlags) error {
	if err := bundleDir(dir); err != nil {
		return err
	}
	rec, err := replay.Load(dir)
	if err != nil {
		return &exitError{code: pipeline.ExitJob, err: err}
	}
	if rec.NeedsToken() {
		return &exitError{code: pipeline.ExitJob, err: fmt.Errorf("replay %s: %w: events.jsonl: the target_run events hold no token (recorded by a basalt older than replay)", dir, replay.ErrBundle)}
	}
	if file == "" {
		file = rec.Result.File
	}
	if fi, err := os.Stat(file); err != nil {
		return usagef("job file %s: %w (give the job file after the bundle)", file, osErr(err))
	} else if fi.IsDir() {
		return usagef("job file %s is a directory", file)
	}
	if f.out != "" && bundle.Exists(f.out) {
		return usagef("--out %s already holds a result bundle; give a new directory", f.out)
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	out := newReporter(a.stdout, a.stderr)
	a.learnSecrets(nil, nil)
	labDir := jobLabDir(f.lab)
	dev, err := replayDevice(rec, labDir)
	if err != nil {
		return &exitError{code: pipeline.ExitJob, err: err}
	}

	ctx, limitExceeded := context.WithCancelCause(a.ctx)
	defer limitExceeded(nil)
	plan, declErr := interp.Declare(interp.Options{File: file, Params: rec.Result.Params, Modules: predeclared(),
		Ctx: ctx, LabDir: labDir, CacheDir: labCacheDir(labDir), Print: func(msg string) { out.print(msg) }})
	if declErr == nil {
		declErr = plan.Validate()
	}
	jobName := rec.Result.Job
	if plan != nil {
		jobName = plan.Job.Name
	}
	outDir := f.out
	if outDir == "" {
		outDir = filepath.Join("results", fmt.Sprintf("%s-replay-%s", jobName, time.Now().UTC().Format("20060102T150405.000Z")))
	}
	res := bundle.Result{Job: jobName, File: file, Runner: bundle.Runner{Name: "basalt", Version: versionString()},
		Device: rec.Result.Device, Extra: map[string]any{"replay": map[string]any{"bundle": dir}}}
	b, err := bundle.Create(outDir, res, bundle.Options{Redactor: a.redact, Print: out.printer(), OnLimit: limitExceeded})
	if err != nil {
		return &usageError{err}
	}
	finish := func(o pipeline.Outcome, s *replay.Session) error {
		var div *replay.Divergence
		if s != nil {
			s.Finish(o.Status == pipeline.StatusPass || o.Status == pipeline.StatusFail)
			div = s.Divergence()
		}
		if div != nil {
			b.Emit("replay_divergence", map[string]any{"call": div.Call, "pos": div.Pos, "expected": div.Expected, "got": div.Got, "recorded_seq": div.Seq})
			b.Update(func(r *bundle.Result) { r.Extra["replay"] = map[string]any{"bundle": dir, "divergence": div} })
		}
		b.Close()
		out.summary(b.Result(), outDir)
		code := o.ExitCode()
		if div != nil {
			fmt.Fprintf(a.stderr, "basalt: replay of %s: first divergence: %s\n", dir, div)
			if code == 0 {
				code = pipeline.ExitFail
			}
		} else if code == 0 {
			fmt.Fprintf(a.stdout, "replay: the job made the recorded calls and its expects matched the recorded console of %s\n", dir)
		}
		if code == 0 {
			return nil
		}
		return &exitError{code: code}
	}
	if declErr != nil {
		class := builtins.ClassOf(declErr)
		b.Update(func(r *bundle.Result) {
			r.Status = pipeline.StatusError
			r.Error = &bundle.ErrorInfo{Class: string(class), Message: declErr.Error()}
		})
		b.Emit("job_end", map[string]any{"status": pipeline.StatusError, "class": string(class), "error": declErr.Error()})
		return finish(pipeline.Outcome{Status: pipeline.StatusError, Class: class, Err: declErr}, nil)
	}
	b.Update(func(r *bundle.Result) { r.Params = plan.ParamStrings(); r.Inputs = inputs(plan) })
	fmt.Fprintf(a.stdout, "replay of %s: recorded %s, %s\n", dir, rec.Result.Started.Format(time.RFC3339), rec.Result.Status)
	out.start(plan, dev, outDir)

	s := replay.NewSession(rec)
	env := &builtins.Env{Ctx: a.ctx, JobDir: plan.Dir, Rec: replay.Tap{Bundle: b, S: s}, Log: logger,
		Params: plan.ParamStrings(), Facts: replayFacts(rec)}
	lab.SetDevice(env, dev)
	jobStart := time.Now()
	closeBackends, err := wireReplay(ctx, env, dev, s, b, labCacheDir(labDir))
	if err != nil {
		if closeBackends != nil {
			closeBackends()
		}
		return finish(pipeline.Outcome{Status: pipeline.StatusError, Class: builtins.ClassOf(err), Err: err}, s)
	}
	progress := func(ev pipeline.ProgressEvent) {
		switch ev.Kind {
		case "stage_start":
			s.EnterStage("stage", ev.Stage, ev.Attempt)
		case "cleanup_start":
			s.EnterStage("cleanup", ev.Stage, 0)
		}
		out.progress(ev)
	}
	r := &pipeline.Runner{Plan: plan, Env: env, Bundle: b, Log: logger, Abort: a.abort, Progress: progress, OnThread: a.onThread, Start: jobStart}
	outcome := r.Run(ctx)
	closeBackends()
	return finish(outcome, s)
}

// replayDevice is the device of a replay: the recorded device's name, MAC
// and facts, of the recorded type (the lab's, else a built-in one), so that
// ctx.device, error patterns and prompts are the recorded run's.
func replayDevice(rec *replay.Record, labDir string) (*lab.Device, error) {
	facts := rec.Result.Device
	str := func(k string) string { s, _ := facts[k].(string); return s }
	if len(facts) == 0 {
		return nil, nil
	}
	types := lab.BuiltinTypes()
	if l, err := loadLab(labDir); err == nil && l != nil && l.Types != nil {
		types = l.Types
	}
	dt := types[str("type")]
	if dt == nil {
		dt = &lab.DeviceType{Name: str("type"), MasterPrompt: str("master_prompt"), ShellPrompt: str("shell_prompt"), LoginPrompt: str("login_prompt")}
	}
	return &lab.Device{Name: str("name"), Type: dt, MAC: str("mac"), Facts: facts}, nil
}

// replayFacts are ctx.device of a replay: the recorded facts, and the
// target's address when the recorded run knew it without asking.
func replayFacts(rec *replay.Record) map[string]any {
	facts := map[string]any{}
	for k, v := range rec.Result.Device {
		facts[k] = v
	}
	if rec.IP != "" {
		facts["ip"] = rec.IP
	}
	return facts
}
