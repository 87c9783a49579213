package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/spf13/cobra"
)

type jobFlags struct {
	// devices are the --device flags; splitDevices sorts them into device
	// (one device) or roleDevices (ROLE=NAME, a multi-device job).
	devices     []string
	device      string
	roleDevices map[string]string
	lab         string
	params      []string
	maxSteps    uint64
	// declareTimeout bounds the job file's top level (run and check).
	declareTimeout time.Duration
}

func (f *jobFlags) register(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.devices, "device", nil, "device to run on: a name in the lab, a device .star file, or sim (the built-in simulated node); ROLE=NAME for each role of a multi-device job (repeatable)")
	c.Flags().StringVar(&f.lab, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")
	c.Flags().StringArrayVar(&f.params, "param", nil, "override a declared job param, `k=v` (repeatable)")
	c.Flags().Uint64Var(&f.maxSteps, "max-steps", interp.DefaultMaxSteps, "Starlark step limit of the declare phase and of each stage attempt")
	c.Flags().DurationVar(&f.declareTimeout, "declare-timeout", interp.DefaultDeclareTimeout, "deadline of the declare phase (the job file's top level and its loads)")
	c.RegisterFlagCompletionFunc("device", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return completeDevices(f.lab), cobra.ShellCompDirectiveNoFileComp
	})
}

func (f *jobFlags) paramMap() (map[string]string, error) {
	m := map[string]string{}
	for _, p := range f.params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usagef("--param %q: want k=v", p)
		}
		if _, dup := m[k]; dup {
			return nil, usagef("--param %s given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

func (a *app) checkCmd() *cobra.Command {
	var f jobFlags
	c := &cobra.Command{
		Use:   "check JOB.star",
		Short: "Validate a job and print its plan, touching nothing",
		Long: `check evaluates the job file's top level, validates the plan (syntax and names,
device type, params, artifacts, stage timeouts within the job timeout, load targets)
and prints it. It also reads the lab's known-issues.star (bad regexps, unknown keys,
ids given twice are lab errors naming file:line:col, exit 2). It has no side effects:
no device is locked or contacted.`,
		Example: "  basalt check jobs/highbank-deploy.star\n  basalt check job.star --device sim --param image=other.img.gz",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			params, err := f.paramMap()
			if err != nil {
				return err
			}
			if err := f.splitDevices(); err != nil {
				return err
			}
			// The contract has no secret params, but a --param (or a
			// default) may repeat a device's password: every secret of the
			// lab is masked in what check prints. Errors are check's to
			// report below, in order.
			if l, err := loadLab(f.lab); err == nil {
				a.learnSecrets(l, nil)
			}
			if f.device != "" {
				if l, d, err := resolveDevice(f.lab, f.device); err == nil {
					a.learnSecrets(l, d)
				}
			}
			for _, name := range f.roleDevices {
				if l, d, err := resolveDevice(f.lab, name); err == nil {
					a.learnSecrets(l, d)
				}
			}
			calls, err := lintJob(args[0], jobLabDir(f.lab))
			if err != nil {
				return &exitError{code: pipeline.ExitJob, err: err}
			}
			// The lab's known issues, as run reads them at its end: a bad
			// regexp or key there would otherwise show only when a run
			// fails.
			if dir := jobLabDir(f.lab); dir != "" {
				if _, err := lab.LoadKnownIssues(dir); err != nil {
					return &exitError{code: pipeline.ExitJob, err: fmt.Errorf("lab %s: %w", dir, err)}
				}
			}
			plan, err := interp.Declare(interp.Options{File: args[0], Params: params, Modules: predeclared(), MaxSteps: f.maxSteps,
				Ctx: a.ctx, Timeout: f.declareTimeout, LabDir: jobLabDir(f.lab), CacheDir: labCacheDir(jobLabDir(f.lab)),
				Print: func(msg string) { fmt.Fprintln(a.stderr, msg) }})
			if err != nil {
				return &exitError{code: exitCodeOf(err), err: err}
			}
			if err := plan.Validate(); err != nil {
				return &exitError{code: pipeline.ExitJob, err: err}
			}
			if err := checkUses(calls, f.lab, f.device); err != nil {
				return &exitError{code: exitCodeOf(err), err: err}
			}
			var devs []string
			if len(plan.Job.Devices) > 0 || len(f.roleDevices) > 0 {
				devs, err = checkRoleDevices(plan, f.lab, f.roleDevices)
			} else {
				var dev string
				dev, err = checkDevice(plan, f.lab, f.device)
				if dev != "" {
					devs = []string{"device:      " + dev}
				}
			}
			if err != nil {
				return &exitError{code: exitCodeOf(err), err: err}
			}
			plan.Print(a.stdout)
			for _, d := range devs {
				fmt.Fprintln(a.stdout, d)
			}
			fmt.Fprintln(a.stdout, "ok")
			return nil
		},
	}
	f.register(c)
	return c
}

func exitCodeOf(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return pipeline.ExitUsage
	}
	return pipeline.ExitCode("error", builtins.ClassOf(err))
}
