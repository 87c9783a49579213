package bundle

import (
	"strings"

	"github.com/basalt-lab/basalt/runtime/lab"
)

// triageConsole is how much of a stage's console (its last bytes) a known
// issue's console regexp is matched against.
const triageConsole = 1 << 20

// failed is one failure of a run, as known issues are matched against it.
type failed struct {
	what    string // "error", "test NAME"
	class   string
	stage   string
	builtin string
	message string
	test    string
}

// stretch is a run of console.log bytes written in one stage.
type stretch struct {
	stage      string
	start, end int64 // end -1: up to the console's end
}

// Triage matches the run's failures — the job's error, then each failed
// test case that stands — against the lab's known issues, records the
// issues that match in result.json (triage) and saves it. Each issue is
// listed once, for the first failure it matches. It is called when the
// job has ended, before Close (junit.xml and report.html show it).
func (b *Bundle) Triage(issues []lab.KnownIssue) []Triage {
	res := b.Result()
	if len(issues) == 0 || res.Status == "pass" {
		return nil
	}
	var fs []failed
	if e := res.Error; e != nil {
		fs = append(fs, failed{what: "error", class: e.Class, stage: e.Stage, builtin: b.failedBuiltin(e), message: e.Message})
	}
	for _, tc := range Standing(res) {
		if tc.Result == "fail" {
			msg := tc.Message
			if msg == "" {
				msg = tc.Name + " failed"
			}
			fs = append(fs, failed{what: "test " + tc.Name, class: "test", stage: tc.Stage, message: msg, test: tc.Name})
		}
	}
	consoles := map[string][]byte{}
	console := func(stage string) []byte {
		c, ok := consoles[stage]
		if !ok {
			c = b.stageConsole(stage, triageConsole)
			consoles[stage] = c
		}
		return c
	}
	var out []Triage
	for _, k := range issues {
		for _, f := range fs {
			if m, ok := matches(k, f, console); ok {
				out = append(out, Triage{ID: b.R.String(k.ID), URL: b.R.String(k.URL), Title: b.R.String(k.Title),
					Failure: b.R.String(f.what), Matched: m, Pos: k.Pos})
				break
			}
		}
	}
	if len(out) > 0 {
		b.Update(func(r *Result) { r.Triage = out })
		for _, t := range out {
			b.Emit("triage", map[string]any{"id": t.ID, "url": t.URL, "failure": t.Failure, "matched": t.Matched})
		}
	}
	return out
}

// matches reports whether f has every trait k asks for, and names them.
func matches(k lab.KnownIssue, f failed, console func(string) []byte) ([]string, bool) {
	var m []string
	check := func(key string, want string, got string) bool {
		if want == "" {
			return true
		}
		m = append(m, key+"="+want)
		return want == got
	}
	if !check("error_class", k.ErrorClass, f.class) || !check("stage", k.Stage, f.stage) || !check("builtin", k.Builtin, f.builtin) {
		return nil, false
	}
	if k.Test != nil {
		if f.test == "" || !k.Test.MatchString(f.test) {
			return nil, false
		}
		m = append(m, "test=/"+k.Test.String()+"/")
	}
	if k.Error != nil {
		if !k.Error.MatchString(f.message) {
			return nil, false
		}
		m = append(m, "error=/"+k.Error.String()+"/")
	}
	if k.Console != nil {
		if !k.Console.Match(console(f.stage)) {
			return nil, false
		}
		m = append(m, "console=/"+k.Console.String()+"/")
	}
	return m, true
}

// failedBuiltin is the builtin whose failed call is the job's error: the
// last failed call of its stage, else the module.fn its message starts
// with.
func (b *Bundle) failedBuiltin(e *ErrorInfo) string {
	b.mu.Lock()
	name := b.failedCalls[e.Stage]
	b.mu.Unlock()
	if name != "" {
		return name
	}
	head, _, ok := strings.Cut(e.Message, ": ")
	if ok && strings.Count(head, ".") == 1 && !strings.ContainsAny(head, " /") {
		return head
	}
	return ""
}

// stageConsole returns up to max of the last console bytes written in
// stage (all stages' when stage is "").
func (b *Bundle) stageConsole(stage string, max int) []byte {
	size := b.con.off.Load()
	if stage == "" {
		return b.consoleBefore(size, max)
	}
	b.con.mu.Lock()
	sts := append([]stretch(nil), b.con.stretches...)
	b.con.mu.Unlock()
	var parts [][]byte
	left := max
	for i := len(sts) - 1; i >= 0 && left > 0; i-- {
		st := sts[i]
		if st.stage != stage {
			continue
		}
		end := st.end
		if end < 0 {
			end = size
		}
		p := b.consoleBefore(end, int(min(int64(left), end-st.start)))
		parts = append([][]byte{p}, parts...)
		left -= len(p)
	}
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
