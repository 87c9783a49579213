// Package bundle writes a job's result bundle:
//
//	result.json   status, error class and position, stages, tests, artifacts, inputs
//	events.jsonl  one JSON object per line, written with one write(2) per line
//	console.log   every console byte, secrets masked
//	console.idx   console.log's byte offsets mapped to time and stage
//	job.log       what the job printed
//	junit.xml     the test cases, for GitLab and Jenkins
//	report.html   all of it on one self-contained page
//	artifacts/    files fetched from the target
//
// Everything written passes through a Redactor, so secret values never reach
// the bundle. result.json is replaced atomically (temp file + rename) each
// time it is saved, so it is present and valid whatever happens short of
// SIGKILL; events.jsonl is valid up to its last complete line even then.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins"
)

// SchemaVersion is the version of result.json's layout.
const SchemaVersion = 1

// Result is the content of result.json.
type Result struct {
	SchemaVersion int            `json:"schema_version"`
	Job           string         `json:"job"`
	File          string         `json:"file"`
	Device        map[string]any `json:"device,omitempty"`
	// Devices are a multi-device job's devices by role (secrets redacted).
	Devices    map[string]map[string]any `json:"devices,omitempty"`
	Runner     Runner                    `json:"runner"`
	Params     map[string]string         `json:"params,omitempty"`
	Inputs     []Input                   `json:"inputs"`
	Status     string                    `json:"status"` // running | pass | fail | error | canceled
	Error      *ErrorInfo                `json:"error,omitempty"`
	Started    time.Time                 `json:"started"`
	Ended      *time.Time                `json:"ended,omitempty"`
	DurationMS int64                     `json:"duration_ms"`
	Stages     []Stage                   `json:"stages"`
	Cleanup    []Stage                   `json:"cleanup"`
	Tests      []builtins.TestCase       `json:"tests"`
	Artifacts  []Artifact                `json:"artifacts"`
	Summary    map[string]int            `json:"summary"`
	// Recoveries are the failures the job recovered from: errors caught
	// by try_call and stage attempts followed by their on_error function.
	Recoveries []Recovery `json:"recoveries,omitempty"`
	// State is ctx.state as JSON, saved at every stage and cleanup
	// boundary.
	State json.RawMessage `json:"state,omitempty"`
	// Triage are the lab's known issues (known-issues.star) that the
	// run's failure matches.
	Triage []Triage `json:"triage,omitempty"`
	// LabContext is what the lab did during the job: console gaps,
	// retypes, protocol retries.
	LabContext *LabContext `json:"lab_context,omitempty"`
	// Baseline is the diff of a baseline bundle (a, `basalt run
	// --baseline`) with this run (b), without its hunks.
	Baseline *Diff `json:"baseline,omitempty"`
	// BaselineError says why there is no Baseline.
	BaselineError string         `json:"baseline_error,omitempty"`
	Extra         map[string]any `json:"extra,omitempty"`
}

// Triage is a known issue that a failed run matches.
type Triage struct {
	ID  string `json:"id"`
	URL string `json:"url,omitempty"`
	// Title says what the issue is, in the lab's words.
	Title string `json:"title,omitempty"`
	// Failure is what matched: "error" (the job's) or "test NAME".
	Failure string `json:"failure"`
	// Matched names what of the signature matched, as "key=value".
	Matched []string `json:"matched"`
	// Pos is the known_issue() call in known-issues.star.
	Pos string `json:"pos,omitempty"`
}

// Runner names the program that wrote the bundle.
type Runner struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// PeakRSSKB is the runner's own peak resident set size (not its
	// children's, such as a qemu it started), in KiB.
	PeakRSSKB int64 `json:"peak_rss_kb,omitempty"`
}

// Input is a file the job read: the job file, loaded libraries, artifacts.
type Input struct {
	Name string `json:"name"`
	Path string `json:"path,omitempty"`
	URL  string `json:"url,omitempty"`
	// Commit is the commit of a git repository the job read (a
	// libraries.star library, a test.run_definition repository).
	Commit string `json:"commit,omitempty"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ErrorInfo says why a job did not complete.
type ErrorInfo struct {
	Class     string `json:"class"` // infra | device | job | canceled
	Message   string `json:"message"`
	Stage     string `json:"stage,omitempty"`
	Pos       string `json:"pos,omitempty"` // file:line:col in the job
	Backtrace string `json:"backtrace,omitempty"`
}

// Recovery is a failure the job recovered from (a "recovered" event).
type Recovery struct {
	By      string `json:"by"` // try_call | on_error
	Stage   string `json:"stage"`
	Attempt int    `json:"attempt,omitempty"`
	Class   string `json:"class"` // infra | device
	Message string `json:"message"`
	Builtin string `json:"builtin,omitempty"` // the builtin that failed
	Pos     string `json:"pos,omitempty"`     // file:line:col of its call
	At      string `json:"at,omitempty"`      // file:line:col of the try_call
	Outcome string `json:"outcome,omitempty"` // on_error: ok | error
	Error   string `json:"error,omitempty"`   // on_error's own error
	// Retry (on_error): another attempt of the stage followed. False after
	// the last attempt: the stage failed whatever on_error did.
	Retry *bool `json:"retry,omitempty"`
}

func recoveryOf(f map[string]any) Recovery {
	str := func(k string) string { s, _ := f[k].(string); return s }
	n, _ := f["attempt"].(int)
	var retry *bool
	if v, ok := f["retry"].(bool); ok {
		retry = &v
	}
	return Recovery{Retry: retry, By: str("by"), Stage: str("stage"), Attempt: n, Class: str("class"), Message: str("message"),
		Builtin: str("builtin"), Pos: str("pos"), At: str("at"), Outcome: str("outcome"), Error: str("recover_error")}
}

// Stage is one stage or cleanup function of the job.
type Stage struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"` // pending | running | pass | error | canceled | skipped
	Started    *time.Time `json:"started,omitempty"`
	Ended      *time.Time `json:"ended,omitempty"`
	DurationMS int64      `json:"duration_ms"`
	Attempts   int        `json:"attempts"`
	Error      string     `json:"error,omitempty"`
}

// Artifact is a file stored under artifacts/.
type Artifact struct {
	Name   string `json:"name"`
	Path   string `json:"path"` // relative to the bundle
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Bundle is an open result bundle. It implements builtins.Recorder and is
// safe for concurrent use.
type Bundle struct {
	Dir string
	R   *Redactor

	mu      sync.Mutex
	result  Result
	events  *os.File
	seq     int64
	console *os.File
	conIdx  *os.File
	con     *conIndex
	conW    *StreamWriter
	jobLog  *os.File
	printTo io.Writer
	closed  bool
	// baseline is the bundle Close compares this one with (CompareWith).
	baseline string

	// failedCalls names, by stage, the builtin of the stage's last failed
	// call (triage's builtin=).
	failedCalls map[string]string

	// roleCons are the console-ROLE.log files of a multi-device job,
	// roleW their redacting writers (role.go).
	roleCons map[string]*os.File
	roleW    map[string]*StreamWriter

	limits     Limits
	onLimit    func(error)
	logBytes   int64
	eventBytes int64
	logFull    bool
	eventsFull bool
}

// Default volume limits of a bundle (see Limits).
const (
	DefaultJobLogLimit = 16 << 20
	DefaultEventsLimit = 64 << 20
)

// Limits bound what a job can make the bundle write, so that a job that
// prints without end fills neither the disk nor the CI log. Past a limit,
// the bundle drops what the job adds (job.log lines; events other than the
// job's, stages' and cleanups' own, which are few) and reports a job error
// once through Options.OnLimit.
type Limits struct {
	// JobLog is the most bytes job.log holds; 0 means DefaultJobLogLimit.
	JobLog int64
	// Events is the most bytes events.jsonl holds; 0 means DefaultEventsLimit.
	Events int64
}

// Options configure Create.
type Options struct {
	Secrets []string
	// Redactor, when set, is the one the bundle masks with (Secrets are
	// added to it), shared with the run's other outputs.
	Redactor *Redactor
	// Follow, when set, receives the console stream live (--follow).
	Follow io.Writer
	// Print, when set, receives the job log lines too (the terminal).
	Print io.Writer
	// Limits bound job.log and events.jsonl.
	Limits Limits
	// OnLimit, when set, is called once per limit exceeded with a job
	// error naming it; the runner ends the job with it.
	OnLimit func(error)
}

// ErrExists is Create's error for a directory that holds a bundle already.
var ErrExists = errors.New("already holds a result bundle")

// Exists reports whether dir holds a result bundle (its result.json).
func Exists(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, "result.json"))
	return err == nil
}

// Create makes dir (which must not hold a bundle yet) and opens the bundle.
func Create(dir string, res Result, o Options) (*Bundle, error) {
	if err := os.MkdirAll(filepath.Join(dir, "artifacts"), 0o755); err != nil {
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	if Exists(dir) {
		return nil, fmt.Errorf("create bundle: %s: %w", dir, ErrExists)
	}
	r := o.Redactor
	if r == nil {
		r = NewRedactor()
	}
	r.Add(o.Secrets...)
	b := &Bundle{Dir: dir, R: r, printTo: o.Print, limits: o.Limits, onLimit: o.OnLimit}
	if b.limits.JobLog <= 0 {
		b.limits.JobLog = DefaultJobLogLimit
	}
	if b.limits.Events <= 0 {
		b.limits.Events = DefaultEventsLimit
	}
	var err error
	open := func(name string) *os.File {
		if err != nil {
			return nil
		}
		var f *os.File
		f, err = os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
		return f
	}
	b.events = open("events.jsonl")
	b.console = open("console.log")
	b.conIdx = open("console.idx")
	b.jobLog = open("job.log")
	if err != nil {
		b.closeFiles()
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	b.con = &conIndex{w: b.console, idx: b.conIdx, r: b.R}
	var cw io.Writer = b.con
	if o.Follow != nil {
		cw = io.MultiWriter(b.con, o.Follow)
	}
	b.conW = NewStreamWriter(b.R, cw)
	res.SchemaVersion = SchemaVersion
	if res.Status == "" {
		res.Status = "running"
	}
	if res.Started.IsZero() {
		res.Started = time.Now().UTC()
	}
	if res.Runner.Name == "" {
		res.Runner.Name = "basalt"
	}
	b.result = res
	if err := b.Save(); err != nil {
		b.closeFiles()
		return nil, err
	}
	return b, nil
}

// Emit appends one event line to events.jsonl.
func (b *Bundle) Emit(typ string, fields map[string]any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if typ == "recovered" {
		rec := recoveryOf(fields)
		rec.Message, rec.Error = b.R.String(rec.Message), b.R.String(rec.Error)
		b.result.Recoveries = append(b.result.Recoveries, rec)
	}
	if stage, ok := stageOf(typ, fields); ok {
		b.con.setStage(stage)
	}
	if typ == "call" && fields["outcome"] == "error" {
		st, _ := fields["stage"].(string)
		name, _ := fields["builtin"].(string)
		if b.failedCalls == nil {
			b.failedCalls = map[string]string{}
		}
		b.failedCalls[st] = name
	}
	b.seq++
	ev := make(map[string]any, len(fields)+4)
	for k, v := range fields {
		ev[k] = v
	}
	ev["seq"] = b.seq
	// Where the console was when it happened: console.log bytes before
	// this offset were written before the event.
	off := b.con.off.Load()
	ev["console_offset"] = off
	now := time.Now().UTC()
	ev["time"] = now.Format(time.RFC3339Nano)
	b.labContext(typ, fields, now, off)
	ev["type"] = typ
	line, err := json.Marshal(ev)
	if err != nil {
		line, _ = json.Marshal(map[string]any{"seq": b.seq, "type": typ, "marshal_error": err.Error()})
	}
	line = append([]byte(b.R.String(string(line))), '\n')
	var exceeded error
	if b.eventBytes+int64(len(line)) > b.limits.Events && !lifecycle(typ) {
		if b.eventsFull {
			return
		}
		b.eventsFull = true
		exceeded = builtins.Job(fmt.Errorf("events.jsonl limit of %d bytes exceeded; later events of the job are dropped", b.limits.Events))
		line, _ = json.Marshal(map[string]any{"seq": b.seq, "time": ev["time"], "type": "events_truncated", "error": exceeded.Error()})
		line = append(line, '\n')
	}
	b.eventBytes += int64(len(line))
	b.events.Write(line) // one write per line: valid up to the last line after SIGKILL
	if exceeded != nil && b.onLimit != nil {
		// Called under b.mu: OnLimit must not call back into the bundle.
		b.onLimit(exceeded)
	}
}

// lifecycle reports whether events of type typ are the runner's own record
// of the job's structure, written whatever the volume limit.
func lifecycle(typ string) bool {
	for _, p := range []string{"job_", "stage_", "cleanup_", "device_"} {
		if strings.HasPrefix(typ, p) {
			return true
		}
	}
	return false
}

// TestCase records a test result.
func (b *Bundle) TestCase(tc builtins.TestCase) {
	tc.Name = b.R.String(tc.Name)
	tc.Units = b.R.String(tc.Units)
	tc.Message = b.R.String(tc.Message)
	b.mu.Lock()
	tc.ConsoleOffset = b.con.off.Load()
	b.result.Tests = append(b.result.Tests, tc)
	b.mu.Unlock()
	fields := map[string]any{"name": tc.Name, "result": tc.Result, "duration_ms": tc.DurationMS}
	if tc.Role != "" {
		fields["role"] = tc.Role
	}
	if tc.Attempt > 0 {
		fields["attempt"] = tc.Attempt
	}
	if tc.Message != "" {
		fields["message"] = tc.Message
	}
	if tc.Measurement != nil {
		fields["measurement"] = *tc.Measurement
		fields["units"] = tc.Units
	}
	b.Emit("test_case", fields)
}

// Print writes one line of the job log.
func (b *Bundle) Print(msg string) {
	msg = b.R.String(msg)
	b.mu.Lock()
	if b.logFull {
		b.mu.Unlock()
		return
	}
	var exceeded error
	if b.logBytes+int64(len(msg))+1 > b.limits.JobLog {
		b.logFull = true
		exceeded = builtins.Job(fmt.Errorf("print: job.log limit of %d bytes exceeded; later output is dropped", b.limits.JobLog))
		msg = "basalt: " + exceeded.Error()
	}
	b.logBytes += int64(len(msg)) + 1
	if !b.closed {
		fmt.Fprintln(b.jobLog, msg)
	}
	w := b.printTo
	onLimit := b.onLimit
	b.mu.Unlock()
	if exceeded != nil && onLimit != nil {
		onLimit(exceeded)
	}
	if w != nil {
		fmt.Fprintln(w, msg)
	}
	b.Emit("print", map[string]any{"message": msg})
}

// Console returns the writer that captures console bytes.
func (b *Bundle) Console() io.Writer { return b.conW }

// AddSecret registers a value to be masked from now on (e.g. typed with
// sol.sendline(..., secret=True)).
func (b *Bundle) AddSecret(v string) { b.R.Add(v) }

// Artifact copies r to artifacts/name, checks sha256hex when given, and
// records it.
func (b *Bundle) Artifact(name string, r io.Reader, sha256hex string) (string, error) {
	clean := path.Clean("/" + strings.ReplaceAll(name, "\\", "/"))[1:]
	if clean == "" || strings.ContainsRune(clean, 0) {
		return "", fmt.Errorf("artifact name %q is not a usable file name", name)
	}
	rel := path.Join("artifacts", clean)
	dst := filepath.Join(b.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("store artifact %s: %w", name, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sha256hex != "" && !strings.EqualFold(sum, sha256hex) {
		return "", fmt.Errorf("store artifact %s: sha256 is %s, want %s", name, sum, sha256hex)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.result.Artifacts = append(b.result.Artifacts, Artifact{Name: name, Path: rel, Size: n, SHA256: sum})
	b.mu.Unlock()
	b.Emit("artifact", map[string]any{"name": name, "path": rel, "size": n, "sha256": sum})
	return rel, nil
}

// AddInput records an input the job read while it ran (a repository of
// test.run_definition) in result.json, once.
func (b *Bundle) AddInput(in Input) {
	b.mu.Lock()
	for _, have := range b.result.Inputs {
		if have == in {
			b.mu.Unlock()
			return
		}
	}
	b.result.Inputs = append(b.result.Inputs, in)
	b.mu.Unlock()
	b.Save()
}

// Update changes the result under the bundle's lock and saves it.
func (b *Bundle) Update(f func(r *Result)) error {
	b.mu.Lock()
	f(&b.result)
	b.mu.Unlock()
	return b.Save()
}

// Result returns a copy of the current result.
func (b *Bundle) Result() Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.result
	r.Tests = append([]builtins.TestCase(nil), r.Tests...)
	r.Stages = append([]Stage(nil), r.Stages...)
	r.Cleanup = append([]Stage(nil), r.Cleanup...)
	r.Artifacts = append([]Artifact(nil), r.Artifacts...)
	r.Recoveries = append([]Recovery(nil), r.Recoveries...)
	if r.LabContext != nil {
		lc := *r.LabContext
		lc.ConsoleGaps = append([]LabContextGap(nil), lc.ConsoleGaps...)
		lc.Retypes = append([]LabContextGap(nil), lc.Retypes...)
		lc.Retries = make(map[string]int, len(r.LabContext.Retries))
		for k, v := range r.LabContext.Retries {
			lc.Retries[k] = v
		}
		if lc.BMC != nil {
			bmc := *lc.BMC
			bmc.Errors = append([]string(nil), bmc.Errors...)
			lc.BMC = &bmc
		}
		r.LabContext = &lc
	}
	return r
}

// Save writes result.json atomically.
func (b *Bundle) Save() error {
	b.mu.Lock()
	r := b.result
	r.Summary = summarize(Standing(r))
	data, err := json.MarshalIndent(r, "", "  ")
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode result.json: %w", err)
	}
	data = append([]byte(b.R.String(string(data))), '\n')
	return writeAtomic(filepath.Join(b.Dir, "result.json"), data)
}

// Standing returns the test cases that stand: all but those of a retried
// stage's earlier attempts, which result.json keeps (with their attempt)
// but junit.xml and the summary leave out.
func Standing(r Result) []builtins.TestCase {
	last := map[string]int{}
	for _, st := range r.Stages {
		last[st.Name] = st.Attempts
	}
	out := make([]builtins.TestCase, 0, len(r.Tests))
	for _, tc := range r.Tests {
		if n, ok := last[tc.Stage]; ok && tc.Attempt > 0 && tc.Attempt < n {
			continue
		}
		out = append(out, tc)
	}
	return out
}

func summarize(tests []builtins.TestCase) map[string]int {
	s := map[string]int{"total": len(tests), "pass": 0, "fail": 0, "skip": 0, "unknown": 0}
	for _, t := range tests {
		s[t.Result]++
	}
	return s
}

func writeAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600; the bundle's files are all 0644.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// Close writes junit.xml and result.json and closes the files. The result's
// status must have been set.
func (b *Bundle) Close() error {
	b.conW.Flush()
	b.flushRoles()
	b.mu.Lock()
	if b.result.Ended == nil {
		now := time.Now().UTC()
		b.result.Ended = &now
		b.result.DurationMS = now.Sub(b.result.Started).Milliseconds()
	}
	r := b.result
	b.mu.Unlock()
	errs := []error{b.Save()}
	junit, err := JUnit(r, b.consoleBefore)
	if err == nil {
		err = writeAtomic(filepath.Join(b.Dir, "junit.xml"), []byte(b.R.String(string(junit))))
	}
	errs = append(errs, err)
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	errs = append(errs, b.closeFiles())
	if b.baseline != "" {
		// After the files are closed: the diff reads console.log whole.
		d, err := compareBaseline(b.baseline, b.Dir)
		b.mu.Lock()
		if err != nil {
			b.result.BaselineError = err.Error()
		} else {
			b.result.Baseline = d
		}
		b.mu.Unlock()
		errs = append(errs, b.Save())
	}
	// Last: report.html is made from the files as they now are.
	errs = append(errs, WriteReport(b.Dir, b.R))
	for _, e := range errs {
		if e != nil {
			return fmt.Errorf("close bundle %s: %w", b.Dir, e)
		}
	}
	return nil
}

// CompareWith makes Close diff the bundle in dir (the baseline, side a)
// with this one (side b) and keep the summary in result.json's baseline.
func (b *Bundle) CompareWith(dir string) {
	b.mu.Lock()
	b.baseline = dir
	b.mu.Unlock()
}

// consoleBefore returns up to max bytes of console.log that end at off.
func (b *Bundle) consoleBefore(off int64, max int) []byte {
	if off <= 0 {
		return nil
	}
	f, err := os.Open(filepath.Join(b.Dir, "console.log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	start := off - int64(max)
	if start < 0 {
		start = 0
	}
	buf := make([]byte, off-start)
	n, _ := f.ReadAt(buf, start)
	return buf[:n]
}

func (b *Bundle) closeFiles() error {
	var first error
	b.mu.Lock()
	roleCons := b.roleCons
	b.roleCons = nil
	b.mu.Unlock()
	for _, f := range roleCons {
		f.Close()
	}
	for _, f := range []*os.File{b.events, b.console, b.conIdx, b.jobLog} {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// HashFile returns the size and sha256 of a file.
func HashFile(name string) (int64, string, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// SetState records ctx.state, JSON, in result.json (secrets redacted) and
// saves it.
func (b *Bundle) SetState(data []byte) error {
	red := json.RawMessage(b.R.String(string(data)))
	if !json.Valid(red) {
		red = json.RawMessage(`"<redacted state>"`)
	}
	return b.Update(func(r *Result) { r.State = red })
}

// SetExtra puts raw (JSON) into result.json as extra.<key> and saves it
// (test.summary).
func (b *Bundle) SetExtra(key string, raw json.RawMessage) error {
	return b.Update(func(r *Result) {
		if r.Extra == nil {
			r.Extra = map[string]any{}
		}
		r.Extra[key] = raw
	})
}
