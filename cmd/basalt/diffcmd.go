package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/spf13/cobra"
)

// exitDiffer is diff's exit code for bundles that differ, as diff(1)'s.
const exitDiffer = 1

func (a *app) diffCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "diff BUNDLE_A BUNDLE_B",
		Short: "Compare two result bundles: consoles aligned, first divergence, new warnings, stage times",
		Long: `diff compares two result bundles, such as a run that passed and one that did not.

It aligns their consoles stage by stage after normalising what changes from run to
run (timestamps and times of day, the kernel's "[    1.234567] " prefixes,
durations and rates, IPv4 and IPv6 addresses and ports, MAC addresses, UUIDs,
nonces, digests and hex pointers), and prints the first line where they part, the
warning, error, Oops, call trace, BUG: and panic lines only one side has, the
stages' status and duration side by side, the tests whose results differ and the
differing stretches of console. --json prints the same as one JSON object.

It exits 0 when the bundles are the same (normalised consoles, status, stages and
test results), 1 when they differ, as diff(1) does; 64 for a directory without
result.json, 2 for a bundle it cannot compare (another schema version, no
console.log), naming what is missing.`,
		Example: "  basalt diff results/good results/bad\n  basalt diff --json results/good results/bad | jq .first_divergence",
		Args:    cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return a.diff(args[0], args[1], asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the diff as JSON")
	return c
}

func (a *app) diff(dirA, dirB string, asJSON bool) error {
	var reads [2]*bundle.Read
	for i, dir := range []string{dirA, dirB} {
		rd, err := readDiffBundle(dir)
		if err != nil {
			return err
		}
		for _, p := range rd.Problems {
			fmt.Fprintf(a.stderr, "basalt: warning: bundle %s: %s\n", dir, p)
		}
		reads[i] = rd
	}
	d, err := bundle.DiffBundles(reads[0], reads[1])
	if err != nil {
		return &exitError{code: pipeline.ExitJob, err: err}
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return err
		}
	} else {
		printDiff(a.stdout, d, true)
	}
	if !d.Same {
		return &exitError{code: exitDiffer}
	}
	return nil
}

// readDiffBundle reads a bundle for diff and --baseline: a directory
// without result.json is a usage error (64), one that cannot be compared
// exit 2.
func readDiffBundle(dir string) (*bundle.Read, error) {
	if err := bundleDir(dir); err != nil {
		return nil, err
	}
	rd, err := bundle.ReadForDiff(dir)
	if err != nil {
		return nil, &exitError{code: pipeline.ExitJob, err: err}
	}
	return rd, nil
}

// printDiff prints d for a person; hunks too when full (basalt diff, not
// the run's summary of its baseline).
func printDiff(w io.Writer, d *bundle.Diff, full bool) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	for _, s := range []struct {
		name string
		s    bundle.DiffSide
	}{{"a", d.A}, {"b", d.B}} {
		p("%s: %s (job %s: %s, %s, %d console lines)\n", s.name, s.s.Bundle, s.s.Job, s.s.Status,
			time.Duration(s.s.DurationMS)*time.Millisecond, s.s.ConsoleLines)
	}
	p("stages:\n")
	for _, st := range d.Stages {
		name := st.Name
		if st.Kind == "cleanup" {
			name = "cleanup " + name
		}
		delta := ""
		if st.A != nil && st.B != nil {
			delta = fmt.Sprintf("  %+v", time.Duration(st.B.DurationMS-st.A.DurationMS)*time.Millisecond)
		}
		p("  %-24s %-22s %-22s%s\n", name, stageCell(st.A), stageCell(st.B), delta)
	}
	for _, t := range d.Tests {
		p("test %s: a %s, b %s\n", t.Name, orNone(t.A), orNone(t.B))
	}
	if dv := d.FirstDivergence; dv != nil {
		p("first divergence, stage %s:\n", bundle.StageLabel(dv.Stage))
		p("  a %s\n  b %s\n", lineCell(dv.A), lineCell(dv.B))
	} else {
		p("consoles: the same after normalising\n")
	}
	for _, s := range []struct {
		name  string
		lines []bundle.DiffLine
	}{{"a", d.OnlyA}, {"b", d.OnlyB}} {
		if len(s.lines) == 0 {
			continue
		}
		p("warnings and errors only in %s:\n", s.name)
		for _, l := range s.lines {
			times := ""
			if l.Count > 1 {
				times = fmt.Sprintf(" (%d times)", l.Count)
			}
			p("  %s%s\n", lineCell(&l), times)
		}
	}
	if full {
		for _, h := range d.Hunks {
			p("@@ stage %s @@\n", bundle.StageLabel(h.Stage))
			for _, l := range h.Lines {
				switch l.Op {
				case " ":
					p("  %6d %6d   %s\n", l.Line, l.LineB, l.Text)
				case "-":
					p("- %6d %6s   %s\n", l.Line, "", l.Text)
				case "+":
					p("+ %6s %6d   %s\n", "", l.Line, l.Text)
				}
			}
			if h.Cut > 0 {
				p("  ... %d more lines of this hunk\n", h.Cut)
			}
		}
	}
	for _, n := range d.Notes {
		p("note: %s\n", n)
	}
	if d.Same {
		p("result: same\n")
	} else {
		p("result: differ\n")
	}
}

func stageCell(s *bundle.StageSide) string {
	if s == nil {
		return "-"
	}
	c := fmt.Sprintf("%s %s", s.Status, time.Duration(s.DurationMS)*time.Millisecond)
	if s.Attempts > 1 {
		c += fmt.Sprintf(" (%d attempts)", s.Attempts)
	}
	return c
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// lineCell is a console line as diff prints it: where, when, what.
func lineCell(l *bundle.DiffLine) string {
	if l == nil {
		return "(no line here: only the other side has lines at this place)"
	}
	at := ""
	if l.AtMS >= 0 {
		at = fmt.Sprintf(" %+.3fs", float64(l.AtMS)/1000)
	}
	return fmt.Sprintf("console.log:%d%s %s: %s", l.Line, at, bundle.StageLabel(l.Stage), strings.TrimSpace(l.Text))
}

// baseline prints, after the run's summary, how it compares with its
// --baseline bundle.
func (r *reporter) baseline(res bundle.Result) {
	if res.BaselineError != "" {
		r.eprintf("basalt: --baseline: %s\n", res.BaselineError)
		return
	}
	d := res.Baseline
	if d == nil {
		return
	}
	if d.Same {
		r.printf("baseline %s: the same (normalised console, status, stages, tests)\n", d.A.Bundle)
		return
	}
	r.printf("baseline %s: differs (basalt diff %s %s)\n", d.A.Bundle, d.A.Bundle, d.B.Bundle)
	if dv := d.FirstDivergence; dv != nil {
		r.printf("  first divergence, stage %s:\n    baseline %s\n    this run %s\n", bundle.StageLabel(dv.Stage), lineCell(dv.A), lineCell(dv.B))
	}
	for _, l := range d.OnlyB {
		r.printf("  only in this run: %s\n", lineCell(&l))
	}
	for _, l := range d.OnlyA {
		r.printf("  only in the baseline: %s\n", lineCell(&l))
	}
}
