package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/spf13/cobra"
)

func (a *app) reportCmd() *cobra.Command {
	var rewrite bool
	c := &cobra.Command{
		Use:   "report BUNDLE",
		Short: "Print the summary of a result bundle, or rewrite its report.html",
		Long: `report prints what a run printed at its end, from the bundle it wrote: the job,
its stages with their status and time, the known issues the failure matches, the
test counts and every failed test with its stage and message, the verdict, the
error, how the run compared with its --baseline bundle, and the console's last
lines with their time and stage.

--html rewrites the bundle's report.html with this basalt (a bundle from an older
one, or one whose report was lost) and prints its path.

A bundle that lacks files or was cut short is still reported, with a warning
naming what is missing. A directory without result.json exits 64; a bundle of
another schema version exits 2, naming both versions. Otherwise report exits with
the code the run exited with (0 passed, 1 tests failed, 2 job, 3 infrastructure,
4 device error, 5 canceled), so CI can gate on a bundle it downloaded; a run cut
short (status still running: the runner was killed) exits 3. --html exits 0 once
report.html is written.`,
		Example: "  basalt report results/highbank-deploy-20261201T223424.000Z\n  basalt report --html results/42",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return a.report(args[0], rewrite)
		},
	}
	c.Flags().BoolVar(&rewrite, "html", false, "rewrite BUNDLE/report.html instead of printing the summary")
	return c
}

func (a *app) report(dir string, rewrite bool) error {
	if err := bundleDir(dir); err != nil {
		return err
	}
	rd, err := bundle.ReadBundle(dir)
	if err != nil {
		return &exitError{code: pipeline.ExitJob, err: err}
	}
	for _, p := range rd.Problems {
		fmt.Fprintf(a.stderr, "basalt: warning: bundle %s: %s\n", dir, p)
	}
	if rewrite {
		if err := bundle.WriteReport(dir, a.redact); err != nil {
			return &exitError{code: pipeline.ExitJob, err: err}
		}
		fmt.Fprintf(a.stdout, "wrote %s\n", filepath.Join(dir, "report.html"))
		return nil
	}
	res := rd.Result
	out := newReporter(a.stdout, a.stdout)
	on := ""
	if n, ok := res.Device["name"]; ok {
		on = fmt.Sprintf(" on device %v", n)
	}
	took := time.Duration(res.DurationMS) * time.Millisecond
	out.printf("%s %s%s: %s (%s), started %s\n", out.paint(bold, "job"), res.Job, on, res.Status, took,
		res.Started.UTC().Format(time.RFC3339))
	for _, st := range res.Stages {
		out.stageLine("stage", st)
	}
	for _, st := range res.Cleanup {
		out.stageLine("cleanup", st)
	}
	out.summaryTo(res, dir, false)
	out.baseline(res)
	if res.Status != pipeline.StatusPass {
		if lines := timedTail(rd); len(lines) > 0 {
			out.printf("console.log, last %d lines:\n", len(lines))
			for _, l := range lines {
				out.printf("  | %s\n", l)
			}
		}
	}
	if code := runExitCode(res); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// runExitCode is the exit code of the run that wrote res, as `basalt run`
// chose it: from its status and its error's class. A run cut short
// (status running, or none) ended without a verdict because the runner
// was killed: an infrastructure error.
func runExitCode(res bundle.Result) int {
	switch res.Status {
	case pipeline.StatusPass, pipeline.StatusFail, pipeline.StatusError, pipeline.StatusCanceled:
	default:
		return pipeline.ExitInfra
	}
	class := ""
	if res.Error != nil {
		class = res.Error.Class
	}
	return pipeline.ExitCode(res.Status, builtins.Class(class))
}

// bundleDir checks that dir is a directory holding a bundle: a usage
// error (64) otherwise.
func bundleDir(dir string) error {
	if fi, err := os.Stat(dir); err != nil {
		return usagef("bundle %s: %w", dir, osErr(err))
	} else if !fi.IsDir() {
		return usagef("bundle %s is not a directory", dir)
	}
	if !bundle.Exists(dir) {
		return usagef("%s holds no result bundle (no result.json)", dir)
	}
	return nil
}

// stageLine prints one stage as the run printed its end.
func (r *reporter) stageLine(what string, st bundle.Stage) {
	status := st.Status
	if status == "pass" {
		status = r.paint(green, status)
	} else if status != "skipped" && status != "pending" {
		status = r.paint(red, status)
	}
	line := fmt.Sprintf("%s %s: %s", what, st.Name, status)
	if st.Started != nil {
		line += fmt.Sprintf(" (%s)", (time.Duration(st.DurationMS) * time.Millisecond).String())
	}
	if st.Attempts > 1 {
		line += fmt.Sprintf(" after %d attempts", st.Attempts)
	}
	if st.Error != "" {
		line += ": " + firstLine(errors.New(st.Error))
	}
	r.printf("%s\n", line)
}

// timedTail returns the console's last lines, each after its time since
// the job started and its stage (from console.idx).
func timedTail(rd *bundle.Read) []string {
	start := max(0, rd.ConsoleSize-consoleTailBytes)
	data := rd.ConsoleAt(start, int(rd.ConsoleSize-start))
	if start > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil
		}
		start, data = start+int64(i+1), data[i+1:]
	}
	data = bytes.TrimRight(data, "\r\n")
	if len(data) == 0 {
		return nil
	}
	var offs []int64
	for off := 0; ; {
		offs = append(offs, start+int64(off))
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	offs = offs[max(0, len(offs)-consoleTailLines):]
	var lines []string
	for i, off := range offs {
		end := start + int64(len(data))
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		text := ""
		if l := bundle.TailLines(data[off-start:end-start], 1, consoleTailWidth, false); len(l) > 0 {
			text = l[0]
		}
		prefix := ""
		if e, ok := rd.Index.At(off); ok {
			stage := e.Stage
			if stage == "" {
				stage = "-"
			}
			prefix = fmt.Sprintf("%+8.3fs %-10s ", e.Time.Sub(rd.Result.Started).Seconds(), stage)
		}
		lines = append(lines, prefix+text)
	}
	return lines
}
