package bundle

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/basalt-lab/basalt/builtins"
)

// The console in report.html: each stretch of one stage shows at most its
// first and last ReportConsoleEdge bytes, and the whole report at most
// ReportConsoleBudget bytes of console (the stretch the job failed in is
// always shown); what is left out is named with a link to console.log. The
// events table shows at most ReportEvents events, the job's structure and
// the failures first.
const (
	ReportConsoleEdge   = 32 << 10
	ReportConsoleBudget = 2 << 20
	ReportEvents        = 5000
	reportContextLines  = 40
	reportContextBytes  = 16 << 10
	reportLineWidth     = 400
)

//go:embed report.html.tmpl
var reportTmplText string

var reportTmpl = template.Must(template.New("report").Parse(reportTmplText))

// WriteReport renders report.html from the bundle in dir, passing it
// through r (nil: no redactor; the bundle's files are redacted already).
func WriteReport(dir string, r *Redactor) error {
	rd, err := ReadBundle(dir)
	if err != nil {
		return err
	}
	page, err := rd.ReportHTML()
	if err != nil {
		return err
	}
	if r != nil {
		page = []byte(r.String(string(page)))
	}
	if err := writeAtomic(filepath.Join(dir, "report.html"), page); err != nil {
		return fmt.Errorf("write report.html: %w", err)
	}
	return nil
}

// ReportHTML renders the bundle as one self-contained HTML page: no
// script, style sheet, font or image comes from anywhere else.
func (rd *Read) ReportHTML() ([]byte, error) {
	var buf bytes.Buffer
	if err := reportTmpl.Execute(&buf, rd.report()); err != nil {
		return nil, fmt.Errorf("render report.html: %w", err)
	}
	return buf.Bytes(), nil
}

type report struct {
	R         Result
	Device    string
	Started   string
	Duration  string
	Axis      []axisTick
	Stages    []stageBar
	Lanes     []lane
	Events    []eventRow
	EventsOut int // events left out of the table
	Tests     []testRow
	Failure   *failure
	Console   []conSegment
	ConSize   int64
	ConShown  int64
	Problems  []string
	Triage    []Triage
	Generated string
	// RoleConsoles are a multi-device job's console-ROLE.log files.
	RoleConsoles []string

	rel  func(time.Time) string
	href func(int64) string

	// The BMC's part of the lab context, decoded.
	SELAdded []map[string]any
	Sensors  []sensorRow
}

type sensorRow struct{ Name, Start, End string }

// bmcContext decodes lab_context.bmc's SEL records and sensor readings.
func (rp *report) bmcContext(bmc *LabBMC) {
	if bmc == nil {
		return
	}
	json.Unmarshal(bmc.SELAdded, &rp.SELAdded)
	var start, end []map[string]any
	json.Unmarshal(bmc.SensorsStart, &start)
	json.Unmarshal(bmc.SensorsEnd, &end)
	rows := map[string]*sensorRow{}
	var order []string
	reading := func(m map[string]any) string { return strings.TrimSpace(fmt.Sprint(m["reading"])) }
	for i, list := range [][]map[string]any{start, end} {
		for _, m := range list {
			name := fmt.Sprint(m["name"])
			r, ok := rows[name]
			if !ok {
				r = &sensorRow{Name: name}
				rows[name] = r
				order = append(order, name)
			}
			if i == 0 {
				r.Start = reading(m)
			} else {
				r.End = reading(m)
			}
		}
	}
	for _, n := range order {
		rp.Sensors = append(rp.Sensors, *rows[n])
	}
}

// Rel is t as the report shows times: since the job started.
func (rp *report) Rel(t time.Time) string { return rp.rel(t) }

// ConHref links to the console line that offset off falls in.
func (rp *report) ConHref(off int64) string { return rp.href(off) }

type axisTick struct {
	Style template.CSS
	Label string
}

type stageBar struct {
	Name, Status, Label, Error string
	Attempts                   int
	Style                      template.CSS
	Href                       string
}

type lane struct {
	Name  string
	Marks []mark
}

type mark struct {
	Style template.CSS
	Class string
	Title string
	Href  string
}

type eventRow struct {
	ID, Rel, Stage, Type, Class, What, Outcome, Dur, ConHref, Fields string
}

type testRow struct {
	Stage, Name, Result, Measurement, Dur, Message, ConHref string
	Attempt                                                 int
}

type failure struct {
	Class, Message, Stage, Pos, Backtrace string
	Lines                                 []conLine
	ConHref                               string
}

type conLine struct {
	ID, Rel, Time, Stage, Text string
	Mark                       bool // the line the failure happened on
}

type conSegment struct {
	Stage, Rel string
	Lines      []conLine
	Omitted    []omission // where bytes were left out: before Lines[i]
}

type omission struct {
	Before     int // index in Lines
	From, To   int64
	Bytes      string
	ConsoleRef string
}

func (rd *Read) report() *report {
	res := rd.Result
	rp := &report{R: res, ConSize: rd.ConsoleSize, Problems: rd.Problems, Triage: res.Triage,
		Generated: time.Now().UTC().Format(time.RFC3339)}
	if n, ok := res.Device["name"]; ok {
		rp.Device = fmt.Sprint(n)
	}
	var roles []string
	for role, d := range res.Devices {
		roles = append(roles, fmt.Sprintf("%s=%v", role, d["name"]))
		rp.RoleConsoles = append(rp.RoleConsoles, "console-"+role+".log")
	}
	sort.Strings(roles)
	sort.Strings(rp.RoleConsoles)
	if len(roles) > 0 {
		rp.Device = strings.Join(roles, " ")
	}
	t0 := res.Started
	if t0.IsZero() && len(rd.Events) > 0 {
		t0 = rd.Events[0].Time
	}
	t1 := t0
	if res.Ended != nil {
		t1 = *res.Ended
	}
	for _, ev := range rd.Events {
		if ev.Time.After(t1) {
			t1 = ev.Time
		}
	}
	total := t1.Sub(t0)
	if total <= 0 {
		total = time.Millisecond
	}
	rp.Started = t0.Format("2006-01-02 15:04:05.000 MST")
	rp.Duration = total.Round(time.Millisecond).String()
	pct := func(t time.Time) float64 {
		p := float64(t.Sub(t0)) / float64(total) * 100
		return min(max(p, 0), 100)
	}
	span := func(a, b time.Time) template.CSS {
		l, r := pct(a), pct(b)
		return template.CSS(fmt.Sprintf("left:%.3f%%;width:%.3f%%", l, max(r-l, 0.15)))
	}
	rel := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return fmt.Sprintf("+%.3fs", t.Sub(t0).Seconds())
	}
	for i := 0; i <= 4; i++ {
		rp.Axis = append(rp.Axis, axisTick{Style: template.CSS(fmt.Sprintf("left:%d%%", i*25)),
			Label: fmt.Sprintf("+%.1fs", total.Seconds()*float64(i)/4)})
	}

	// The console first: the events and tests link into its lines.
	cv := rd.consoleView(rel)
	rp.Console, rp.ConShown = cv.segments, cv.shown
	href := func(off int64) string {
		if off < 0 {
			return ""
		}
		if id := cv.lineOf(off); id != "" {
			return "#" + id
		}
		return "console.log"
	}
	rp.rel, rp.href = rel, href
	if res.LabContext != nil {
		rp.bmcContext(res.LabContext.BMC)
	}

	for _, st := range append(append([]Stage(nil), res.Stages...), res.Cleanup...) {
		if st.Started == nil {
			continue
		}
		end := t1
		if st.Ended != nil {
			end = *st.Ended
		}
		b := stageBar{Name: st.Name, Status: st.Status, Attempts: st.Attempts, Error: firstLine(st.Error), Style: span(*st.Started, end),
			Label: fmt.Sprintf("%s %s (%s)", st.Name, st.Status, end.Sub(*st.Started).Round(time.Millisecond))}
		rp.Stages = append(rp.Stages, b)
	}

	lanes := map[string]*lane{}
	order := []string{"builtins", "ipmi", "power", "dhcp", "tftp", "http", "console", "tests", "other"}
	for _, n := range order {
		lanes[n] = &lane{Name: n}
	}
	// The table: the job's structure and every failure first, then the
	// rest in order, up to ReportEvents.
	keep := make([]bool, len(rd.Events))
	kept := 0
	for i, ev := range rd.Events {
		if lifecycle(ev.Type) || ev.Str("outcome") == "error" || ev.Type == "test_case" {
			keep[i] = true
			kept++
		}
	}
	for i := range rd.Events {
		if kept >= ReportEvents {
			break
		}
		if !keep[i] {
			keep[i] = true
			kept++
		}
	}
	cur := "" // the stage the events happen in
	for i, ev := range rd.Events {
		if st, ok := stageOf(ev.Type, ev.Fields); ok && strings.HasSuffix(ev.Type, "_start") {
			cur = st
		}
		if ev.Stage == "" {
			ev.Stage = cur
		}
		if st, ok := stageOf(ev.Type, ev.Fields); ok && !strings.HasSuffix(ev.Type, "_start") {
			cur = st
		}
		if !keep[i] {
			rp.EventsOut++
			continue
		}
		ln := laneOf(ev.Type)
		id := "e-" + strconv.FormatInt(ev.Seq, 10)
		row := eventRow{ID: id, Rel: rel(ev.Time), Stage: ev.Stage, Type: ev.Type, Class: ln, What: what(ev),
			Outcome: ev.Str("outcome"), ConHref: href(ev.ConsoleOffset), Fields: restFields(ev)}
		if ev.Type == "test_case" {
			row.Outcome = ev.Str("result")
		}
		start := ev.Time
		if d, ok := ev.Fields["duration_ms"].(json.Number); ok {
			ms, _ := d.Int64()
			row.Dur = fmt.Sprintf("%d ms", ms)
			if ev.Type == "call" || ev.Type == "ipmi" || ev.Type == "tftp" || ev.Type == "http" {
				// These events are written when they end.
				start = ev.Time.Add(-time.Duration(ms) * time.Millisecond)
			}
		}
		rp.Events = append(rp.Events, row)
		if ln == "" {
			continue
		}
		cls := "ok"
		switch row.Outcome {
		case "error", "fail", "not_found", "timeout":
			cls = "bad"
		}
		lanes[ln].Marks = append(lanes[ln].Marks, mark{Style: span(start, ev.Time), Class: cls,
			Title: fmt.Sprintf("%s %s %s %s", row.Rel, ev.Type, clip(row.What, 120), row.Outcome), Href: "#" + id})
	}
	rp.EventsOut += rd.Dropped
	for _, n := range order {
		if len(lanes[n].Marks) > 0 {
			rp.Lanes = append(rp.Lanes, *lanes[n])
		}
	}

	// Tests: the i-th test_case event is the i-th case of result.json.
	var offs []int64
	for _, ev := range rd.Events {
		if ev.Type == "test_case" {
			offs = append(offs, ev.ConsoleOffset)
		}
	}
	tests := append([]builtins.TestCase(nil), res.Tests...)
	for i := range tests {
		tests[i].ConsoleOffset = -1
		if i < len(offs) {
			tests[i].ConsoleOffset = offs[i]
		}
	}
	res.Tests = tests
	for _, tc := range Standing(res) {
		row := testRow{Stage: tc.Stage, Name: tc.Name, Result: tc.Result, Attempt: tc.Attempt, Message: tc.Message,
			Dur: fmt.Sprintf("%d ms", tc.DurationMS), ConHref: href(tc.ConsoleOffset)}
		if tc.Measurement != nil {
			row.Measurement = strings.TrimSpace(strconv.FormatFloat(*tc.Measurement, 'g', -1, 64) + " " + tc.Units)
		}
		rp.Tests = append(rp.Tests, row)
	}

	if e := res.Error; e != nil {
		f := &failure{Class: e.Class, Message: e.Message, Stage: e.Stage, Pos: e.Pos, Backtrace: e.Backtrace}
		off := rd.failureOffset()
		if off >= 0 {
			f.ConHref = href(off)
			f.Lines = rd.contextBefore(off, rel)
		}
		rp.Failure = f
	}
	return rp
}

// failureOffset is the console offset at which the job's error happened:
// that of the failed builtin call, else of the failed stage's end, else of
// job_end; -1 when the events do not say.
func (rd *Read) failureOffset() int64 {
	e := rd.Result.Error
	off := int64(-1)
	for _, ev := range rd.Events {
		failed := ev.Str("outcome") == "error" || ev.Str("outcome") == "aborted"
		switch {
		case ev.Type == "call" && failed && (e.Stage == "" || ev.Stage == e.Stage):
			return ev.ConsoleOffset
		case (ev.Type == "stage_end" || ev.Type == "cleanup_end") && failed && off < 0:
			off = ev.ConsoleOffset
		case ev.Type == "job_end" && off < 0:
			off = ev.ConsoleOffset
		}
	}
	return off
}

// contextBefore returns the console lines that end at off, the last of
// them marked.
func (rd *Read) contextBefore(off int64, rel func(time.Time) string) []conLine {
	start := max(0, off-reportContextBytes)
	data := rd.ConsoleAt(start, int(off-start))
	if start > 0 {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			start += int64(i + 1)
			data = data[i+1:]
		}
	}
	lines := rd.lines(data, start, rel)
	if len(lines) > reportContextLines {
		lines = lines[len(lines)-reportContextLines:]
	}
	for i := range lines {
		lines[i].ID = "" // anchors are the console section's
	}
	if n := len(lines); n > 0 {
		lines[n-1].Mark = true
	}
	return lines
}

type consoleView struct {
	segments []conSegment
	shown    int64
	offs     []int64 // start offset of each line shown, ascending
}

func (cv *consoleView) lineOf(off int64) string {
	i := sort.Search(len(cv.offs), func(i int) bool { return cv.offs[i] > off })
	if i == 0 {
		return ""
	}
	return "c-" + strconv.FormatInt(cv.offs[i-1], 10)
}

// consoleView cuts the console into its stages' stretches and each into
// what the report shows of it.
func (rd *Read) consoleView(rel func(time.Time) string) *consoleView {
	type stretch struct {
		stage      string
		start, end int64
		t          time.Time
	}
	var sts []stretch
	for _, e := range rd.Index {
		if e.Offset >= rd.ConsoleSize {
			break
		}
		if n := len(sts); n > 0 && sts[n-1].stage == e.Stage {
			continue
		}
		if n := len(sts); n > 0 {
			sts[n-1].end = e.Offset
		}
		sts = append(sts, stretch{stage: e.Stage, start: e.Offset, t: e.Time})
	}
	if len(sts) == 0 && rd.ConsoleSize > 0 {
		sts = []stretch{{start: 0}}
	}
	if len(sts) > 0 && sts[0].start > 0 {
		sts = append([]stretch{{start: 0, t: sts[0].t}}, sts...)
		sts[0].end = sts[1].start
	}
	if n := len(sts); n > 0 {
		sts[n-1].end = rd.ConsoleSize
	}
	failStage := ""
	if rd.Result.Error != nil {
		failStage = rd.Result.Error.Stage
	}
	cv := &consoleView{}
	budget := int64(ReportConsoleBudget)
	for i, st := range sts {
		if st.end <= st.start {
			continue
		}
		seg := conSegment{Stage: st.stage, Rel: rel(st.t)}
		size := st.end - st.start
		edge := int64(ReportConsoleEdge)
		mustShow := st.stage == failStage || i == len(sts)-1
		if budget <= 0 && !mustShow {
			edge = 0
		}
		if size <= 2*edge {
			seg.Lines = rd.lines(rd.ConsoleAt(st.start, int(size)), st.start, rel)
			cv.shown += size
		} else {
			head := rd.ConsoleAt(st.start, int(edge))
			if i := bytes.LastIndexByte(head, '\n'); i >= 0 && i+1 < len(head) {
				head = head[:i+1]
			}
			tailFrom := st.end - edge
			tail := rd.ConsoleAt(tailFrom, int(edge))
			if i := bytes.IndexByte(tail, '\n'); i >= 0 && i+1 < len(tail) {
				tailFrom += int64(i + 1)
				tail = tail[i+1:]
			}
			if edge == 0 {
				head, tail, tailFrom = nil, nil, st.end
			}
			seg.Lines = rd.lines(head, st.start, rel)
			from := st.start + int64(len(head))
			seg.Omitted = []omission{{Before: len(seg.Lines), From: from, To: tailFrom, Bytes: sizeString(tailFrom - from)}}
			seg.Lines = append(seg.Lines, rd.lines(tail, tailFrom, rel)...)
			cv.shown += int64(len(head) + len(tail))
		}
		budget -= size
		for _, l := range seg.Lines {
			off, _ := strconv.ParseInt(strings.TrimPrefix(l.ID, "c-"), 10, 64)
			cv.offs = append(cv.offs, off)
		}
		cv.segments = append(cv.segments, seg)
	}
	return cv
}

// lines splits console bytes that begin at console offset base into
// lines, each with its time and stage from the index and its text made
// printable.
func (rd *Read) lines(data []byte, base int64, rel func(time.Time) string) []conLine {
	var out []conLine
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
			end = off + end
		} else {
			end = len(data)
		}
		at := base + int64(off)
		l := conLine{ID: "c-" + strconv.FormatInt(at, 10), Text: printable(data[off:end], reportLineWidth)}
		if e, ok := rd.Index.At(at); ok {
			l.Rel, l.Time, l.Stage = rel(e.Time), e.Time.Format("15:04:05.000"), e.Stage
		}
		out = append(out, l)
		off = next
	}
	return out
}

// printable returns console bytes as text that shows what they are:
// printable UTF-8 as it is, tabs as spaces, a carriage return at the end
// dropped, and every other byte — control characters, escape sequences,
// invalid UTF-8 — as \xNN, cut to width runes. html/template escapes the
// rest.
func printable(b []byte, width int) string {
	b = bytes.TrimRight(b, "\r")
	var s strings.Builder
	n := 0
	for i := 0; i < len(b) && n < width; n++ {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == '\t':
			s.WriteByte(' ')
		case r == utf8.RuneError && size <= 1, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			for _, c := range b[i : i+size] {
				fmt.Fprintf(&s, `\x%02x`, c)
			}
		default:
			s.WriteRune(r)
		}
		i += size
		if n == width-1 && i < len(b) {
			s.WriteString("…")
		}
	}
	return s.String()
}

func laneOf(typ string) string {
	switch {
	case typ == "call":
		return "builtins"
	case typ == "ipmi" || typ == "qemu":
		return "ipmi"
	case typ == "power":
		return "power"
	case typ == "dhcp":
		return "dhcp"
	case typ == "tftp" || strings.HasPrefix(typ, "pxe_"):
		return "tftp"
	case typ == "http" || typ == "http_progress" || strings.HasPrefix(typ, "sim.http") || typ == "sim.wget" ||
		strings.HasPrefix(typ, "artifact") || typ == "target_fetch" || typ == "target_push" || typ == "deploy_progress":
		return "http"
	case typ == "expect" || typ == "send" || typ == "send_retry" || strings.HasPrefix(typ, "console_") ||
		strings.HasPrefix(typ, "target_") || strings.HasPrefix(typ, "sim"):
		return "console"
	case typ == "test_case" || typ == "test_parse":
		return "tests"
	case lifecycle(typ) || typ == "print":
		return ""
	}
	return "other"
}

// what is the one-line gist of an event.
func what(ev Event) string {
	switch ev.Type {
	case "call":
		var args []string
		if a, ok := ev.Fields["args"].([]any); ok {
			for _, x := range a {
				args = append(args, fmt.Sprint(x))
			}
		}
		s := fmt.Sprintf("%s(%s)", ev.Str("builtin"), strings.Join(args, ", "))
		if p := ev.Str("pos"); p != "" {
			s += " at " + p
		}
		if e := ev.Str("error"); e != "" {
			s += ": " + firstLine(e)
		}
		return s
	case "stage_start", "stage_end":
		return "stage " + ev.Str("stage") + " " + ev.Str("error")
	case "cleanup_start", "cleanup_end":
		return "cleanup " + ev.Str("cleanup") + " " + ev.Str("error")
	}
	for _, k := range []string{"command", "file", "path", "url", "pattern", "patterns", "text", "cmd", "name", "message", "event", "kind", "error"} {
		if v, ok := ev.Fields[k]; ok {
			return fmt.Sprintf("%s %v", k, v)
		}
	}
	return ""
}

// restFields is the event as JSON without the fields every event has.
func restFields(ev Event) string {
	m := make(map[string]any, len(ev.Fields))
	for k, v := range ev.Fields {
		switch k {
		case "seq", "time", "type", "console_offset":
			continue
		}
		m[k] = v
	}
	data, _ := json.Marshal(m)
	return clip(string(data), 600)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
