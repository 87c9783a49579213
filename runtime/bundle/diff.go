package bundle

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/diff"
)

// The bounds of a console diff, so that two 50 MB consoles take tens of
// MB, not gigabytes. Each side keeps, per console line, a hash of its
// normalised text, its offset, number and length (24 bytes), for at most
// DiffMaxLines lines; lines past that are counted, not compared. The consoles are
// aligned stage by stage (a stage's lines with the same stage's on the
// other side), each on its first DiffAlignWindow lines per side: past
// that, a stage's lines are compared one for one, which still finds the
// first divergence but shows no hunk. At most DiffMaxHunks hunks of
// DiffHunkLines lines each are kept; DiffMaxNotable different notable
// lines per side.
const (
	DiffMaxLines    = 1 << 20
	DiffAlignWindow = 50000
	DiffMaxHunks    = 50
	DiffHunkLines   = 200
	DiffMaxNotable  = 10000
	diffLineWidth   = 400
)

// Diff is what basalt diff finds between bundles A and B: their consoles
// aligned, stage by stage, after Normalize; the first line where they part;
// the warning, error, Oops, call trace, BUG: and panic lines that only one
// side has; the stages' status and duration side by side; the tests whose
// results differ.
type Diff struct {
	A DiffSide `json:"a"`
	B DiffSide `json:"b"`
	// Same is true when the normalised consoles are equal and so are the
	// status, the stages (names and status) and the tests' results.
	Same            bool        `json:"same"`
	FirstDivergence *Divergence `json:"first_divergence,omitempty"`
	OnlyA           []DiffLine  `json:"only_a"`
	OnlyB           []DiffLine  `json:"only_b"`
	Stages          []StageDiff `json:"stages"`
	Tests           []TestDiff  `json:"tests,omitempty"`
	Hunks           []Hunk      `json:"hunks,omitempty"`
	Notes           []string    `json:"notes,omitempty"`
}

// DiffSide names one bundle of a diff.
type DiffSide struct {
	Bundle       string `json:"bundle"`
	Job          string `json:"job"`
	Status       string `json:"status"`
	DurationMS   int64  `json:"duration_ms"`
	ConsoleBytes int64  `json:"console_bytes"`
	ConsoleLines int    `json:"console_lines"` // lines with text after normalising
}

// DiffLine is one console line of one side.
type DiffLine struct {
	Side   string `json:"side"` // a | b
	Line   int    `json:"line"` // 1-based, in console.log
	Offset int64  `json:"offset"`
	Stage  string `json:"stage"`
	// AtMS is the line's time since its job started (console.idx), -1
	// when the bundle does not say.
	AtMS int64  `json:"at_ms"`
	Text string `json:"text"` // as a person reads it: control characters removed, cut to 400 runes
	Norm string `json:"normalized"`
	// Count, for a notable line only one side has, is how many more times
	// than the other side it has it.
	Count int `json:"count,omitempty"`
}

// Divergence is the first place where the normalised consoles part: the
// first line of A and of B that the other side does not have there (nil
// when that side has none: its console ends, or only the other side has
// lines at that place).
type Divergence struct {
	Stage string    `json:"stage"`
	A     *DiffLine `json:"a,omitempty"`
	B     *DiffLine `json:"b,omitempty"`
}

// StageDiff is one stage or cleanup function of both sides (nil where a
// side did not have it).
type StageDiff struct {
	Name string     `json:"name"`
	Kind string     `json:"kind"` // stage | cleanup
	A    *StageSide `json:"a,omitempty"`
	B    *StageSide `json:"b,omitempty"`
}

// StageSide is a stage as one side ran it.
type StageSide struct {
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Attempts   int    `json:"attempts"`
}

// TestDiff is a test case whose standing result differs ("" where a side
// has no such case).
type TestDiff struct {
	Name string `json:"name"`
	A    string `json:"a"`
	B    string `json:"b"`
}

// Hunk is one stretch of the aligned consoles where they differ, with up
// to three equal lines of context either side.
type Hunk struct {
	Stage string     `json:"stage"`
	Lines []HunkLine `json:"lines"`
	// Cut counts the lines of the hunk left out past DiffHunkLines.
	Cut int `json:"cut,omitempty"`
}

// HunkLine is a line of a hunk: Op " " (both sides have it; Line is A's,
// LineB B's), "-" (only A) or "+" (only B).
type HunkLine struct {
	Op    string `json:"op"`
	Line  int    `json:"line"`
	LineB int    `json:"line_b,omitempty"`
	Text  string `json:"text"`
}

// BadBundleError is DiffBundles' error for a directory that is not a
// bundle it can compare; Missing is true when result.json is not there.
type BadBundleError struct {
	Dir     string
	Missing bool
	Err     error
}

func (e *BadBundleError) Error() string { return e.Err.Error() }
func (e *BadBundleError) Unwrap() error { return e.Err }

// ReadForDiff reads dir as DiffBundles needs it: a bundle with its
// result.json (of this schema version) and console.log. Other damage is in
// the Read's Problems.
func ReadForDiff(dir string) (*Read, error) {
	if _, err := os.Stat(filepath.Join(dir, "result.json")); errors.Is(err, os.ErrNotExist) {
		return nil, &BadBundleError{Dir: dir, Missing: true, Err: fmt.Errorf("bundle %s: result.json is missing (not a bundle, or one cut short before it was written)", dir)}
	}
	rd, err := ReadBundle(dir)
	if err != nil {
		return nil, &BadBundleError{Dir: dir, Err: err}
	}
	if _, err := os.Stat(filepath.Join(dir, "console.log")); err != nil {
		return nil, &BadBundleError{Dir: dir, Err: fmt.Errorf("bundle %s: console.log is missing: there is no console to compare", dir)}
	}
	return rd, nil
}

// DiffBundles compares bundles a and b (see Diff).
func DiffBundles(a, b *Read) (*Diff, error) {
	// Both consoles at once: normalising is most of the work.
	var (
		ca, cb *console
		errB   error
		wg     sync.WaitGroup
	)
	wg.Go(func() { cb, errB = readConsole(b, "b") })
	ca, err := readConsole(a, "a")
	wg.Wait()
	if err == nil {
		err = errB
	}
	if err != nil {
		return nil, err
	}
	d := &Diff{A: side(a, ca), B: side(b, cb), OnlyA: []DiffLine{}, OnlyB: []DiffLine{}}
	if a.Result.Job != b.Result.Job {
		d.Notes = append(d.Notes, fmt.Sprintf("the bundles are of different jobs (%s, %s): their stages line up by name only", a.Result.Job, b.Result.Job))
	}
	d.Notes = append(d.Notes, ca.notes...)
	d.Notes = append(d.Notes, cb.notes...)
	d.stages(a.Result, b.Result)
	d.tests(a.Result, b.Result)
	d.align(a, b, ca, cb)
	d.notable(a, b, ca, cb)
	d.Same = d.FirstDivergence == nil && a.Result.Status == b.Result.Status && len(d.Tests) == 0
	for _, st := range d.Stages {
		if st.A == nil || st.B == nil || st.A.Status != st.B.Status {
			d.Same = false
		}
	}
	return d, nil
}

// Summary is d as result.json's baseline keeps it: without hunks.
func (d *Diff) Summary() *Diff {
	s := *d
	s.Hunks = nil
	return &s
}

func side(rd *Read, c *console) DiffSide {
	return DiffSide{Bundle: rd.Dir, Job: rd.Result.Job, Status: rd.Result.Status, DurationMS: rd.Result.DurationMS,
		ConsoleBytes: rd.ConsoleSize, ConsoleLines: c.lines}
}

// cline is a console line as a diff keeps it.
type cline struct {
	hash uint64
	off  int64
	n    int32 // 1-based line number
	end  int32 // bytes of the line read (at most MaxNormalizedLine)
}

// console is one side's console, by stage.
type console struct {
	order   []string
	byStage map[string][]cline
	notable map[string]*notableLine
	lines   int
	notes   []string
}

type notableLine struct {
	count int
	first cline
	stage string
}

func readConsole(rd *Read, name string) (*console, error) {
	c := &console{byStage: map[string][]cline{}, notable: map[string]*notableLine{}}
	f, err := os.Open(filepath.Join(rd.Dir, "console.log"))
	if err != nil {
		return nil, &BadBundleError{Dir: rd.Dir, Err: fmt.Errorf("bundle %s: console.log: %w", rd.Dir, err)}
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var (
		off, kept int64
		n         int32
		ix        = 0
		dropped   int
		full      bool
	)
	for {
		line, long, err := readLine(br)
		if len(line) == 0 && err != nil {
			if err != io.EOF {
				return nil, &BadBundleError{Dir: rd.Dir, Err: fmt.Errorf("bundle %s: console.log: %w", rd.Dir, err)}
			}
			break
		}
		n++
		start := off
		off += int64(len(line)) + long
		for ix+1 < len(rd.Index) && rd.Index[ix+1].Offset <= start {
			ix++
		}
		stage := ""
		if ix < len(rd.Index) && rd.Index[ix].Offset <= start {
			stage = rd.Index[ix].Stage
		}
		norm := Normalize(string(line))
		if norm == "" {
			continue
		}
		c.lines++
		cl := cline{hash: hashString(norm), off: start, n: n, end: int32(len(line))}
		if Notable(norm) {
			if nl, ok := c.notable[norm]; ok {
				nl.count++
			} else if len(c.notable) < DiffMaxNotable {
				c.notable[norm] = &notableLine{count: 1, first: cl, stage: stage}
			} else if !full {
				full = true
				c.notes = append(c.notes, fmt.Sprintf("%s: more than %d different warning and error lines; the rest are not compared", name, DiffMaxNotable))
			}
		}
		if kept >= DiffMaxLines {
			dropped++
			continue
		}
		kept++
		if _, ok := c.byStage[stage]; !ok {
			c.order = append(c.order, stage)
		}
		c.byStage[stage] = append(c.byStage[stage], cl)
	}
	if dropped > 0 {
		c.notes = append(c.notes, fmt.Sprintf("%s: console.log has %d lines past the first %d; they are counted, not compared", name, dropped, DiffMaxLines))
	}
	return c, nil
}

// readLine returns the next line of br without its "\n", at most
// MaxNormalizedLine bytes of it; long counts the bytes past those that
// were skipped, and the newline.
func readLine(br *bufio.Reader) (line []byte, long int64, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if len(line) < MaxNormalizedLine {
			take := min(len(frag), MaxNormalizedLine-len(line))
			line = append(line, frag[:take]...)
			long += int64(len(frag) - take)
		} else {
			long += int64(len(frag))
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if bytes.HasSuffix(line, []byte("\n")) {
			line = line[:len(line)-1]
			long++
		}
		return line, long, err
	}
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// stages lists both sides' stages and cleanups: A's in order, then those
// only B has.
func (d *Diff) stages(a, b Result) {
	add := func(kind string, sts []Stage, isA bool) {
		for _, st := range sts {
			ss := &StageSide{Status: st.Status, DurationMS: st.DurationMS, Attempts: st.Attempts}
			found := false
			for i := range d.Stages {
				if d.Stages[i].Name == st.Name && d.Stages[i].Kind == kind && (isA && d.Stages[i].A == nil || !isA && d.Stages[i].B == nil) {
					if isA {
						d.Stages[i].A = ss
					} else {
						d.Stages[i].B = ss
					}
					found = true
					break
				}
			}
			if !found {
				sd := StageDiff{Name: st.Name, Kind: kind}
				if isA {
					sd.A = ss
				} else {
					sd.B = ss
				}
				d.Stages = append(d.Stages, sd)
			}
		}
	}
	add("stage", a.Stages, true)
	add("cleanup", a.Cleanup, true)
	add("stage", b.Stages, false)
	add("cleanup", b.Cleanup, false)
}

func (d *Diff) tests(a, b Result) {
	results := func(r Result) (map[string]string, []string) {
		m := map[string]string{}
		var order []string
		for _, tc := range Standing(r) {
			if _, ok := m[tc.Name]; !ok {
				order = append(order, tc.Name)
			}
			m[tc.Name] = tc.Result
		}
		return m, order
	}
	ma, oa := results(a)
	mb, ob := results(b)
	seen := map[string]bool{}
	for _, name := range append(oa, ob...) {
		if seen[name] {
			continue
		}
		seen[name] = true
		if ma[name] != mb[name] {
			d.Tests = append(d.Tests, TestDiff{Name: name, A: ma[name], B: mb[name]})
		}
	}
}

// align diffs the consoles stage by stage, in the order A's console has
// its stages, then those only B's has.
func (d *Diff) align(a, b *Read, ca, cb *console) {
	order := append([]string(nil), ca.order...)
	for _, s := range cb.order {
		if _, ok := ca.byStage[s]; !ok {
			order = append(order, s)
		}
	}
	fa, fb := openConsole(a), openConsole(b)
	defer fa.close()
	defer fb.close()
	dropped := 0
	for _, stage := range order {
		la, lb := ca.byStage[stage], cb.byStage[stage]
		wa, wb := la[:min(len(la), DiffAlignWindow)], lb[:min(len(lb), DiffAlignWindow)]
		if len(la) > len(wa) || len(lb) > len(wb) {
			d.Notes = append(d.Notes, fmt.Sprintf("stage %s: %d and %d console lines; the first %d of each are aligned, the rest compared one for one",
				stageLabel(stage), len(la), len(lb), DiffAlignWindow))
		}
		ops := alignLines(wa, wb)
		var hunk *Hunk
		flush := func() {
			if hunk != nil && len(d.Hunks) < DiffMaxHunks {
				d.Hunks = append(d.Hunks, *hunk)
			}
			hunk = nil
		}
		for k, op := range ops {
			if op.op != ' ' && d.FirstDivergence == nil {
				d.FirstDivergence = firstOf(ops[k:], stage, wa, wb, fa, fb)
			}
			if op.op == ' ' && !nearChange(ops, k) {
				flush()
				continue
			}
			if hunk == nil {
				if len(d.Hunks) >= DiffMaxHunks {
					if k == 0 || ops[k-1].op == ' ' && !nearChange(ops, k-1) {
						dropped++ // the first line of a hunk not kept
					}
					continue
				}
				hunk = &Hunk{Stage: stage}
			}
			if len(hunk.Lines) >= DiffHunkLines {
				hunk.Cut++
				continue
			}
			hl := HunkLine{Op: string(op.op)}
			switch op.op {
			case ' ':
				hl.Line, hl.LineB, hl.Text = int(wa[op.i].n), int(wb[op.j].n), fa.text(wa[op.i])
			case '-':
				hl.Line, hl.Text = int(wa[op.i].n), fa.text(wa[op.i])
			case '+':
				hl.Line, hl.Text = int(wb[op.j].n), fb.text(wb[op.j])
			}
			hunk.Lines = append(hunk.Lines, hl)
		}
		flush()
		if d.FirstDivergence == nil && (len(la) > len(wa) || len(lb) > len(wb)) {
			// Past the window: one for one.
			for i := len(wa); ; i++ {
				if i >= len(la) && i >= len(lb) {
					break
				}
				if i < len(la) && i < len(lb) && la[i].hash == lb[i].hash {
					continue
				}
				dv := &Divergence{Stage: stage}
				if i < len(la) {
					dv.A = fa.line("a", a, la[i], stage)
				}
				if i < len(lb) {
					dv.B = fb.line("b", b, lb[i], stage)
				}
				d.FirstDivergence = dv
				break
			}
		}
	}
	if dropped > 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("%d hunks past the first %d are not shown", dropped, DiffMaxHunks))
	}
}

// nearChange reports whether the equal line ops[k] is within three lines
// of a change.
func nearChange(ops []alignOp, k int) bool {
	for i := max(0, k-3); i < min(len(ops), k+4); i++ {
		if ops[i].op != ' ' {
			return true
		}
	}
	return false
}

// firstOf makes the divergence that starts at ops[0]: the first line only
// A has there and the first only B has, up to the next equal line.
func firstOf(ops []alignOp, stage string, wa, wb []cline, fa, fb *consoleFile) *Divergence {
	dv := &Divergence{Stage: stage}
	for _, op := range ops {
		if op.op == ' ' {
			break
		}
		if op.op == '-' && dv.A == nil {
			dv.A = fa.line("a", fa.rd, wa[op.i], stage)
		}
		if op.op == '+' && dv.B == nil {
			dv.B = fb.line("b", fb.rd, wb[op.j], stage)
		}
	}
	return dv
}

type alignOp struct {
	op   byte // ' ', '-', '+'
	i, j int  // indexes in a and b (the one of the side the op has)
}

// alignLines aligns a and b on their hashes with go-internal's anchored
// diff (Go's internal/diff: O(n log n), anchored on lines unique to both
// sides), reading its unified output back into one op per line.
func alignLines(a, b []cline) []alignOp {
	text := func(ls []cline) []byte {
		buf := make([]byte, 0, 17*len(ls))
		for _, l := range ls {
			buf = strconv.AppendUint(buf, l.hash, 16)
			buf = append(buf, '\n')
		}
		return buf
	}
	out := diff.Diff("a", text(a), "b", text(b))
	ops := make([]alignOp, 0, max(len(a), len(b)))
	i, j := 0, 0
	equalTo := func(x, y int) {
		for i < x && j < y {
			ops = append(ops, alignOp{op: ' ', i: i, j: j})
			i++
			j++
		}
	}
	for _, l := range bytes.Split(out, []byte("\n")) {
		switch {
		case bytes.HasPrefix(l, []byte("@@ ")):
			var x, nx, y, ny int
			fmt.Sscanf(string(l), "@@ -%d,%d +%d,%d @@", &x, &nx, &y, &ny)
			if nx > 0 {
				x--
			}
			if ny > 0 {
				y--
			}
			equalTo(x, y)
		case bytes.HasPrefix(l, []byte("---")), bytes.HasPrefix(l, []byte("+++")), bytes.HasPrefix(l, []byte("diff ")):
		case len(l) > 0 && l[0] == ' ':
			ops = append(ops, alignOp{op: ' ', i: i, j: j})
			i++
			j++
		case len(l) > 0 && l[0] == '-':
			ops = append(ops, alignOp{op: '-', i: i})
			i++
		case len(l) > 0 && l[0] == '+':
			ops = append(ops, alignOp{op: '+', j: j})
			j++
		}
	}
	equalTo(len(a), len(b))
	// Lines past the end of one side that the output did not account for
	// (none, if it is read right) are one side's.
	for ; i < len(a); i++ {
		ops = append(ops, alignOp{op: '-', i: i})
	}
	for ; j < len(b); j++ {
		ops = append(ops, alignOp{op: '+', j: j})
	}
	return ops
}

// notable lists the notable lines one side has more often than the other.
func (d *Diff) notable(a, b *Read, ca, cb *console) {
	fa, fb := openConsole(a), openConsole(b)
	defer fa.close()
	defer fb.close()
	only := func(x, y *console, fx *consoleFile, name string) []DiffLine {
		out := []DiffLine{}
		for norm, nl := range x.notable {
			more := nl.count
			if o, ok := y.notable[norm]; ok {
				more -= o.count
			}
			if more <= 0 {
				continue
			}
			l := fx.line(name, fx.rd, nl.first, nl.stage)
			l.Count = more
			out = append(out, *l)
		}
		sortLines(out)
		return out
	}
	d.OnlyA = only(ca, cb, fa, "a")
	d.OnlyB = only(cb, ca, fb, "b")
}

func sortLines(ls []DiffLine) {
	for i := 1; i < len(ls); i++ {
		for k := i; k > 0 && ls[k].Line < ls[k-1].Line; k-- {
			ls[k], ls[k-1] = ls[k-1], ls[k]
		}
	}
}

// consoleFile reads lines of a bundle's console.log back for display.
type consoleFile struct {
	rd *Read
	f  *os.File
}

func openConsole(rd *Read) *consoleFile {
	f, _ := os.Open(filepath.Join(rd.Dir, "console.log"))
	return &consoleFile{rd: rd, f: f}
}

func (c *consoleFile) close() {
	if c.f != nil {
		c.f.Close()
	}
}

func (c *consoleFile) raw(l cline) string {
	if c.f == nil {
		return ""
	}
	buf := make([]byte, l.end)
	n, _ := c.f.ReadAt(buf, l.off)
	return string(buf[:n])
}

func (c *consoleFile) text(l cline) string {
	raw := c.raw(l)
	if i := strings.LastIndexByte(strings.TrimRight(raw, "\r"), '\r'); i >= 0 {
		raw = raw[i+1:]
	}
	return cleanLine(raw, diffLineWidth)
}

func (c *consoleFile) line(sideName string, rd *Read, l cline, stage string) *DiffLine {
	at := int64(-1)
	if e, ok := rd.Index.At(l.off); ok && !rd.Result.Started.IsZero() {
		at = e.Time.Sub(rd.Result.Started).Milliseconds()
	}
	return &DiffLine{Side: sideName, Line: int(l.n), Offset: l.off, Stage: stage, AtMS: at, Text: c.text(l), Norm: Normalize(c.raw(l))}
}

func stageLabel(s string) string {
	if s == "" {
		return "(between stages)"
	}
	return s
}

// StageLabel is how a diff names a console stage: "(between stages)" for
// the console outside any stage.
func StageLabel(s string) string { return stageLabel(s) }

// compareBaseline diffs the baseline bundle in dir (A) with the bundle b
// has just closed (B), for result.json's baseline.
func compareBaseline(dir string, self string) (*Diff, error) {
	base, err := ReadForDiff(dir)
	if err != nil {
		return nil, err
	}
	cur, err := ReadForDiff(self)
	if err != nil {
		return nil, err
	}
	d, err := DiffBundles(base, cur)
	if err != nil {
		return nil, err
	}
	return d.Summary(), nil
}
