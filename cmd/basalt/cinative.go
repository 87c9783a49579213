package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/pipeline"
)

// Limits of the CI systems' own formats.
const (
	// GitHub Actions takes at most 1 MiB of step summary per step.
	stepSummaryMax = 1 << 20
	// basalt annotates the first failures only; GitHub shows 10 error
	// annotations per step anyway.
	maxAnnotations = 10
)

// ciEnv says which CI runs basalt: GitHub Actions and GitLab CI set these
// variables in every job.
type ciEnv struct {
	github, gitlab bool
	stepSummary    string // $GITHUB_STEP_SUMMARY
}

func ciFromEnv() ciEnv {
	return ciEnv{
		github:      os.Getenv("GITHUB_ACTIONS") == "true",
		gitlab:      os.Getenv("GITLAB_CI") == "true",
		stepSummary: os.Getenv("GITHUB_STEP_SUMMARY"),
	}
}

var sectionNameRE = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// gitlabSections wraps a progress callback so that each stage and cleanup
// function is a collapsible section of the GitLab job log: the markers are
// \e[0Ksection_start:UNIXTIME:NAME[collapsed=...]\r\e[0KHEADER and
// \e[0Ksection_end:UNIXTIME:NAME\r\e[0K (GitLab docs, "Custom collapsible
// sections"); names are [a-zA-Z0-9_.-].
func gitlabSections(emit func(string), next func(pipeline.ProgressEvent)) func(pipeline.ProgressEvent) {
	open := map[string]bool{}
	name := func(kind, stage string) string {
		return kind + "_" + sectionNameRE.ReplaceAllString(stage, "_")
	}
	return func(ev pipeline.ProgressEvent) {
		now := time.Now().Unix()
		switch ev.Kind {
		case "stage_start", "cleanup_start":
			kind := strings.TrimSuffix(ev.Kind, "_start")
			n := name(kind, ev.Stage)
			if !open[n] {
				open[n] = true
				emit(fmt.Sprintf("\x1b[0Ksection_start:%d:%s[collapsed=false]\r\x1b[0K%s %s\n", now, n, kind, ev.Stage))
			}
			next(ev)
		case "stage_end", "cleanup_end":
			next(ev)
			n := name(strings.TrimSuffix(ev.Kind, "_end"), ev.Stage)
			if open[n] {
				delete(open, n)
				emit(fmt.Sprintf("\x1b[0Ksection_end:%d:%s\r\x1b[0K\n", now, n))
			}
		default:
			next(ev)
		}
	}
}

// failure is one thing that went wrong, for annotations and summaries.
type failure struct {
	file  string
	line  int
	title string
	msg   string
}

// failures lists the failed tests (of each stage's last attempt) and the
// job's error, each at the job file position that best names it: the
// error's own position, or the declaration of the test's stage.
func failures(res bundle.Result, plan *interp.Plan) []failure {
	stagePos := map[string]string{}
	if plan != nil {
		for _, st := range plan.Stages {
			stagePos[st.Name] = st.Pos
		}
	}
	var out []failure
	for _, tc := range bundle.Standing(res) {
		if tc.Result != "fail" {
			continue
		}
		f := failure{title: fmt.Sprintf("%s (stage %s)", tc.Name, tc.Stage), msg: tc.Message}
		if f.msg == "" {
			f.msg = tc.Name + " failed"
		}
		f.file, f.line = splitPos(stagePos[tc.Stage], res.File)
		out = append(out, f)
	}
	if e := res.Error; e != nil {
		f := failure{title: e.Class + " error", msg: e.Message}
		if e.Stage != "" {
			f.title += " in stage " + e.Stage
		}
		pos := e.Pos
		if pos == "" {
			pos = stagePos[e.Stage]
		}
		f.file, f.line = splitPos(pos, res.File)
		out = append(out, f)
	}
	return out
}

// splitPos splits "file:line:col"; without one the job file, line 1.
func splitPos(pos, file string) (string, int) {
	parts := strings.Split(pos, ":")
	if len(parts) >= 2 {
		if n, err := strconv.Atoi(parts[1]); err == nil {
			return parts[0], n
		}
	}
	return file, 1
}

// GitHub workflow commands escape %, CR and LF in the message, and also
// : and , in property values (actions/toolkit, command.ts).
func ghEscapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghEscapeProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// summaryMarkdown renders the run for people: the verdict, the failures
// first, then every stage and test; at most max bytes (the rest is
// counted, not shown).
func summaryMarkdown(res bundle.Result, plan *interp.Plan, dir string, max int) string {
	var b strings.Builder
	dev := ""
	if n, ok := res.Device["name"]; ok {
		dev = fmt.Sprintf(" on `%v`", n)
	}
	fmt.Fprintf(&b, "### basalt: %s%s: **%s**\n\n", mdEscape(res.Job), dev, res.Status)
	if s := res.Summary; s != nil {
		fmt.Fprintf(&b, "%d passed, %d failed, %d skipped · %.1f s · bundle `%s`\n\n", s["pass"], s["fail"], s["skip"], float64(res.DurationMS)/1000, dir)
	}
	if len(res.Triage) > 0 {
		b.WriteString("#### Known issues\n\n")
		for _, k := range res.Triage {
			id := "**" + mdEscape(k.ID) + "**"
			if k.URL != "" {
				id = "[" + id + "](" + strings.NewReplacer("(", "%28", ")", "%29", " ", "%20").Replace(k.URL) + ")"
			}
			title := ""
			if k.Title != "" {
				title = " " + mdEscape(k.Title)
			}
			fmt.Fprintf(&b, "- known issue %s%s: %s (matched %s)\n", id, title, mdEscape(k.Failure), mdEscape(strings.Join(k.Matched, ", ")))
		}
		b.WriteString("\n")
	}
	fails := failures(res, plan)
	if len(fails) > 0 {
		b.WriteString("#### Failures\n\n")
		for _, f := range fails {
			fmt.Fprintf(&b, "- **%s** (`%s:%d`): %s\n", mdEscape(f.title), f.file, f.line, mdEscape(firstLineOf(f.msg)))
		}
		b.WriteString("\n")
	}
	var rows []string
	for _, st := range res.Stages {
		rows = append(rows, fmt.Sprintf("| stage | %s | %s | %d ms |", mdEscape(st.Name), st.Status, st.DurationMS))
	}
	for _, tc := range bundle.Standing(res) {
		rows = append(rows, fmt.Sprintf("| test | %s | %s | %d ms |", mdEscape(tc.Stage+"."+tc.Name), tc.Result, tc.DurationMS))
	}
	if len(rows) > 0 {
		b.WriteString("| | name | result | time |\n|---|---|---|---|\n")
		for i, row := range rows {
			more := fmt.Sprintf("\n… %d more rows in result.json\n", len(rows)-i)
			if b.Len()+len(row)+1+len(more) > max {
				b.WriteString(more)
				break
			}
			b.WriteString(row + "\n")
		}
	}
	s := b.String()
	if len(s) > max { // failures alone too long: cut, on a line
		s = s[:max]
		if i := strings.LastIndexByte(s, '\n'); i > 0 {
			s = s[:i+1]
		}
	}
	return s
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "*", `\*`, "_", `\_`, "`", "\\`", "<", "&lt;", ">", "&gt;").Replace(s)
}

// ciReport writes summary.md into the bundle and, under GitHub Actions, the
// step summary and error annotations. Neither can change the job's result:
// a file that cannot be written is a warning.
func (a *app) ciReport(res bundle.Result, plan *interp.Plan, dir string) {
	ci := ciFromEnv()
	md := summaryMarkdown(res, plan, dir, stepSummaryMax)
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(md), 0o644); err != nil {
		fmt.Fprintf(a.stderr, "basalt: warning: write summary: %v (the job's result stands)\n", err)
	}
	if !ci.github {
		return
	}
	for i, f := range failures(res, plan) {
		if i == maxAnnotations {
			break
		}
		fmt.Fprintf(a.stdout, "::error file=%s,line=%d,title=%s::%s\n", ghEscapeProp(f.file), f.line, ghEscapeProp(f.title), ghEscapeData(f.msg))
	}
	if ci.stepSummary == "" {
		return
	}
	// Other steps' summaries are in the file too: append, as GitHub says.
	f, err := os.OpenFile(ci.stepSummary, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, err = io.WriteString(f, md+"\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "basalt: warning: write the step summary $GITHUB_STEP_SUMMARY: %v (the job's result stands)\n", err)
	}
}
