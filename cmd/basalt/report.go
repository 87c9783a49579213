package main

import (
	"fmt"
	"io"
	"os"
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
}

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
	fmt.Fprintf(r.out, format, a...)
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
			line += ": " + firstLine(ev.Err)
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

func (r *reporter) summary(res bundle.Result, dir string) {
	s := res.Summary
	if s == nil {
		s = map[string]int{}
		for _, t := range res.Tests {
			s[t.Result]++
		}
	}
	tests := fmt.Sprintf("tests: %d passed, %d failed, %d skipped", s["pass"], s["fail"], s["skip"])
	if s["unknown"] > 0 {
		tests += fmt.Sprintf(", %d unknown", s["unknown"])
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
	r.printf("%s\n", tests)
	if res.Error != nil {
		where := ""
		if res.Error.Pos != "" {
			where = " at " + res.Error.Pos
		}
		// On stderr, where CI looks for why a job did not pass.
		r.mu.Lock()
		fmt.Fprintf(r.errw, "basalt: %s error%s: %s\n", res.Error.Class, where, res.Error.Message)
		r.mu.Unlock()
	}
	r.printf("result: %s  bundle: %s\n", status, dir)
}
