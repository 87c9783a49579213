package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"golang.org/x/term"
)

// reporter prints a run's progress: colored on a terminal, plain lines
// otherwise.
type reporter struct {
	mu     sync.Mutex
	out    io.Writer
	errw   io.Writer
	color  bool
	starts map[string]time.Time
	// midLine: the console stream (--follow) left stdout in the middle of
	// a line, so the next status line starts with a newline.
	midLine bool
	// errShown: a stage or cleanup has failed. The first failure is the
	// job's error, which the summary prints at the end; later ones are
	// printed on their stage's line.
	errShown bool
}

// consoleTailLines is how much of the console the summary of a run that
// did not pass ends with.
const (
	consoleTailLines = 15
	consoleTailWidth = 200
	consoleTailBytes = 64 << 10
)

func newReporter(out, errw io.Writer) *reporter {
	r := &reporter{out: out, errw: errw, starts: map[string]time.Time{}}
	if f, ok := underlying(out).(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb" {
		r.color = true
	}
	return r
}

const (
	green  = "\x1b[32m"
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	bold   = "\x1b[1m"
	reset  = "\x1b[0m"
)

func (r *reporter) paint(code, s string) string {
	if !r.color {
		return s
	}
	return code + s + reset
}

func (r *reporter) printf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.breakLine()
	fmt.Fprintf(r.out, format, a...)
}

// eprintf writes to stderr. r.mu is held.
func (r *reporter) eprintf(format string, a ...any) {
	r.breakLine()
	fmt.Fprintf(r.errw, format, a...)
}

// breakLine ends a console line --follow left open. r.mu is held.
func (r *reporter) breakLine() {
	if r.midLine {
		io.WriteString(r.out, "\n")
		r.midLine = false
	}
}

// follower returns the writer the console stream goes to with --follow.
func (r *reporter) follower() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		// A stdout that fails (a closed pipe) must not stop the console
		// capture this writer is teed from: its error is dropped.
		r.out.Write(p)
		r.midLine = p[len(p)-1] != '\n'
		return len(p), nil
	})
}

func (r *reporter) print(msg string) { r.printf("%s\n", msg) }

// printer returns the writer job print() lines go to.
func (r *reporter) printer() io.Writer {
	return writerFunc(func(p []byte) (int, error) { r.printf("%s", p); return len(p), nil })
}

// underlying looks through writers that wrap another (the redacting
// writers of stdout and stderr), for the terminal check.
func underlying(w io.Writer) io.Writer {
	for {
		u, ok := w.(interface{ Unwrap() io.Writer })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (r *reporter) start(plan *interp.Plan, dev *lab.Device, dir string) {
	on := "no device"
	if dev != nil {
		on = "device " + dev.Name
	}
	r.printf("%s %s on %s (%d stages, timeout %s)\n", r.paint(bold, "job"), plan.Job.Name, on, len(plan.Stages), plan.Job.Timeout)
	r.printf("bundle %s\n", dir)
}

func (r *reporter) progress(ev pipeline.ProgressEvent) {
	switch ev.Kind {
	case "stage_start":
		if ev.Attempt > 1 {
			r.printf("stage %s: attempt %d\n", ev.Stage, ev.Attempt)
		} else {
			r.printf("stage %s: %s\n", ev.Stage, r.paint(yellow, "running"))
		}
	case "retry":
		r.printf("stage %s: %s after: %v\n", ev.Stage, r.paint(yellow, "retrying"), firstLine(ev.Err))
	case "stage_end", "cleanup_end":
		what := "stage"
		if ev.Kind == "cleanup_end" {
			what = "cleanup"
		}
		st := ev.Status
		switch st {
		case "pass":
			st = r.paint(green, st)
		default:
			st = r.paint(red, st)
		}
		line := fmt.Sprintf("%s %s: %s (%s)", what, ev.Stage, st, ev.Duration.Round(time.Millisecond))
		if ev.Err != nil {
			r.mu.Lock()
			first := !r.errShown
			r.errShown = true
			r.mu.Unlock()
			if !first {
				line += ": " + firstLine(ev.Err)
			}
		}
		r.printf("%s\n", line)
	case "cleanup_start":
		r.printf("cleanup %s: %s\n", ev.Stage, r.paint(yellow, "running"))
	}
}

func firstLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.SplitN(err.Error(), "\n", 2)[0]
}

// summary ends the run's output: the test counts, each failed test with
// its stage, the verdict and the bundle, then (on stderr, where CI looks for
// why a job did not pass) the error, once, and the console's last lines.
func (r *reporter) summary(res bundle.Result, dir string) { r.summaryTo(res, dir, true) }

// summaryTo is summary; basalt report prints a console tail of its own
// (with times and stages) instead of this one when tail is false.
func (r *reporter) summaryTo(res bundle.Result, dir string, tail bool) {
	tests := bundle.Standing(res)
	s := map[string]int{}
	for _, t := range tests {
		s[t.Result]++
	}
	line := fmt.Sprintf("tests: %d passed, %d failed, %d skipped", s["pass"], s["fail"], s["skip"])
	if s["unknown"] > 0 {
		line += fmt.Sprintf(", %d unknown", s["unknown"])
	}
	status := res.Status
	switch status {
	case pipeline.StatusPass:
		status = r.paint(green+bold, status)
	case pipeline.StatusFail, pipeline.StatusError:
		status = r.paint(red+bold, status)
	default:
		status = r.paint(yellow+bold, status)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.breakLine()
	fmt.Fprintf(r.out, "%s\n", line)
	for _, t := range tests {
		if t.Result != "fail" && t.Result != "unknown" {
			continue
		}
		where := ""
		if t.Stage != "" {
			where = fmt.Sprintf(" (stage %s)", strings.TrimPrefix(t.Stage, "cleanup:"))
			if strings.HasPrefix(t.Stage, "cleanup:") {
				where = fmt.Sprintf(" (cleanup %s)", strings.TrimPrefix(t.Stage, "cleanup:"))
			}
		}
		msg := ""
		if t.Message != "" {
			msg = ": " + strings.SplitN(t.Message, "\n", 2)[0]
		}
		fmt.Fprintf(r.out, "%s %s%s%s\n", r.paint(red, t.Result+":"), t.Name, where, msg)
	}
	fmt.Fprintf(r.out, "result: %s  bundle: %s\n", status, dir)
	if res.Error != nil {
		where := ""
		if st := res.Error.Stage; st != "" {
			where = " in stage " + st
			if c, ok := strings.CutPrefix(st, "cleanup:"); ok {
				where = " in cleanup " + c
			}
		}
		if res.Error.Pos != "" {
			where += " at " + res.Error.Pos
		}
		r.eprintf("basalt: %s error%s: %s\n", res.Error.Class, where, res.Error.Message)
	}
	for _, k := range res.Triage {
		r.eprintf("%s\n", triageLine(k))
	}
	if res.Status != pipeline.StatusPass && tail {
		if lines := consoleTail(filepath.Join(dir, "console.log")); len(lines) > 0 {
			r.eprintf("console.log, last %d lines:\n", len(lines))
			for _, l := range lines {
				r.eprintf("  | %s\n", l)
			}
		}
	}
}

// consoleTail returns the last lines of a console log, cleaned for a
// terminal, bounded in count and width.
func consoleTail(name string) []string {
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	start := max(0, fi.Size()-consoleTailBytes)
	buf := make([]byte, fi.Size()-start)
	n, _ := f.ReadAt(buf, start)
	return bundle.TailLines(buf[:n], consoleTailLines, consoleTailWidth, start > 0)
}

// triageLine names a known issue the run matched, for CI logs: "known
// issue LAB-12 (URL): title [matched ...]".
func triageLine(k bundle.Triage) string {
	s := "known issue " + k.ID
	if k.URL != "" {
		s += " (" + k.URL + ")"
	}
	if k.Title != "" {
		s += ": " + k.Title
	}
	if len(k.Matched) > 0 {
		s += " [matched " + strings.Join(k.Matched, ", ") + "]"
	}
	return s
}
