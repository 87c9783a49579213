package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/runtime/bundle"
)

// Divergence is where a replayed job first parted from the recording.
type Divergence struct {
	// Call is the builtin of the replayed call ("sol.sendline"), Pos its
	// file:line:col; both may be empty when it is not in a call.
	Call string `json:"call,omitempty"`
	Pos  string `json:"pos,omitempty"`
	// Expected is what the recording did there, Got what the job did.
	Expected string `json:"expected"`
	Got      string `json:"got"`
	// Seq is the recorded event the replay was at.
	Seq int64 `json:"recorded_seq,omitempty"`
}

func (d *Divergence) String() string {
	where := ""
	switch {
	case d.Call != "" && d.Pos != "":
		where = d.Call + " at " + d.Pos + ": "
	case d.Call != "":
		where = d.Call + ": "
	case d.Pos != "":
		where = d.Pos + ": "
	}
	return fmt.Sprintf("%sexpected %s; got %s", where, d.Expected, d.Got)
}

// Session is one replay of a Record. Its methods are safe for concurrent
// use.
type Session struct {
	rec *Record

	mu      sync.Mutex
	cond    *sync.Cond
	op      int   // next recorded Op not yet reached
	feed    int64 // console bytes delivered
	call    int   // next recorded aligned call
	stalled bool  // the transport waits for the job: nothing more below the limit
	pending *stallCtx
	closed  bool
	div     *Divergence
	note    *Divergence // an expect the recording cannot satisfy, in the current call
	sent    []string    // texts typed so far (for fetch's nonce)
	typedTo int         // the op after a compared send whose keys have not gone out; 0 for none
	where   string      // "stage NAME" or "cleanup NAME" the job is in
	missed  *Divergence // a recorded call a cleanup's start skipped
}

// NewSession starts a replay of rec.
func NewSession(rec *Record) *Session {
	s := &Session{rec: rec}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Record returns the recording.
func (s *Session) Record() *Record { return s.rec }

// Divergence returns the first divergence, or nil.
func (s *Session) Divergence() *Divergence {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.div == nil {
		return nil
	}
	d := *s.div
	return &d
}

// diverge records d if it is the first divergence and returns the job
// error a backend fails with. s.mu is held.
func (s *Session) diverge(d Divergence) error {
	if s.div == nil {
		s.div = &d
	}
	return builtins.Job(fmt.Errorf("replay: the job parted from the recording: expected %s; got %s", d.Expected, d.Got))
}

// limit is how far the console may be fed: up to the next recorded op.
// s.mu is held.
func (s *Session) limit() int64 {
	if s.op < len(s.rec.Ops) {
		return min(s.rec.Ops[s.op].Offset, int64(len(s.rec.Console)))
	}
	return int64(len(s.rec.Console))
}

// advance moves past the recorded op (or ops) reached. s.mu is held.
func (s *Session) advance(to int) {
	s.op = to
	s.stalled = false
	s.cond.Broadcast()
}

// skipTimeouts returns the index of the first op from s.op that is not a
// timed-out expect: the job has moved on past those waits. s.mu is held.
func (s *Session) skipTimeouts() int {
	i := s.op
	for i < len(s.rec.Ops) && s.rec.Ops[i].Kind == "timeout" {
		i++
	}
	return i
}

// Close ends the console feed.
func (s *Session) Close() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Transport returns the console transport that feeds the recorded
// console: bytes up to the next recorded send, epoch mark or timed-out
// expect, and further once the replayed job has done that too. What the
// job types is compared by the Console wrapper, not here.
func (s *Session) Transport() sol.Transport { return transport{s} }

type transport struct{ s *Session }

func (t transport) String() string { return "replay " + t.s.rec.Dir }

func (t transport) Open(ctx context.Context) (io.ReadWriteCloser, error) { return &conn{s: t.s}, nil }

type conn struct {
	s      *Session
	closed atomic.Bool
}

func (c *conn) Read(p []byte) (int, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed || c.closed.Load() {
			return 0, io.EOF
		}
		if lim := s.limit(); s.feed < lim {
			n := copy(p, s.rec.Console[s.feed:lim])
			s.feed += int64(n)
			s.stalled = false
			return n, nil
		}
		// Everything below the limit has been delivered: the console's
		// reader matched it before reading again. An expect still waiting
		// cannot match before the job acts: in the recorded world it
		// times out now.
		if !s.stalled {
			s.stalled = true
			s.cond.Broadcast() // a Mark waits for this
		}
		if s.pending != nil {
			s.pending.expire()
		}
		s.cond.Wait()
	}
}

// Write takes the job's keys; the first ones after a send was compared
// let the console go on (not before: a line typed with verify_echo looks
// for its echo only in what comes after it starts typing).
func (c *conn) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.s.mu.Lock()
		c.s.applyTyped()
		c.s.mu.Unlock()
	}
	return len(p), nil
}

func (c *conn) Close() error {
	c.closed.Store(true)
	c.s.mu.Lock()
	c.s.cond.Broadcast()
	c.s.mu.Unlock()
	return nil
}

// stallCtx is an expect's context that the feed ends, as a deadline, when
// the recorded console has nothing more for it.
type stallCtx struct {
	context.Context
	cancel  context.CancelFunc
	expired atomic.Bool
}

func (c *stallCtx) expire() {
	c.expired.Store(true)
	c.cancel()
}

func (c *stallCtx) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// Console wraps the sol.Console over the replay Transport: it holds what
// the job types to what the recorded job typed and ends expects that the
// recorded console cannot satisfy. It is the job's sol backend and the
// target's console.
type Console struct {
	S *Session
	C *sol.Console
}

var _ sol.Backend = (*Console)(nil)

// Expect is ExpectWith with no options.
func (c *Console) Expect(ctx context.Context, patterns ...expect.Pattern) (expect.Match, error) {
	return c.ExpectWith(ctx, sol.ExpectOptions{}, patterns...)
}

// ExpectWith runs the real matcher on the fed console. When the feed
// stalls (nothing more until the job acts) it fails as a timeout would;
// that is a divergence unless the recording timed out there too.
func (c *Console) ExpectWith(ctx context.Context, o sol.ExpectOptions, patterns ...expect.Pattern) (expect.Match, error) {
	s := c.S
	inner, cancel := context.WithCancel(ctx)
	defer cancel()
	sc := &stallCtx{Context: inner, cancel: cancel}
	s.mu.Lock()
	s.applyTyped()
	s.pending = sc
	if s.stalled {
		sc.expire()
	}
	s.mu.Unlock()
	m, err := c.C.ExpectWith(sc, o, patterns...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	if err == nil || !sc.expired.Load() {
		return m, err
	}
	names := make([]string, len(patterns))
	for i, p := range patterns {
		names[i] = p.String()
	}
	if s.op < len(s.rec.Ops) && s.rec.Ops[s.op].Kind == "timeout" {
		// The recorded expect timed out here as well; if it was another
		// one (the recorded job's had matched before), and the call fails
		// with it, that is the divergence.
		op := s.rec.Ops[s.op]
		if rp := strings.Join(op.Patterns, " | "); rp != strings.Join(names, " | ") && s.note == nil {
			s.note = &Divergence{Seq: op.Seq, Expected: "a match before the recorded expect for " + rp + " timed out (through " + s.rec.Where(max(s.feed-1, 0)) + ")",
				Got: "no match for " + strings.Join(names, " | ")}
		}
		s.advance(s.op + 1)
		return m, err
	}
	next := "the end of the recording"
	seq := int64(0)
	if s.op < len(s.rec.Ops) {
		op := s.rec.Ops[s.op]
		next, seq = describe(op), op.Seq
	}
	// A divergence if the call fails with it: an expect with timeout_ok
	// (or the target's wait for its prompt) may time out on hardware too.
	if s.note == nil {
		s.note = &Divergence{Seq: seq,
			Expected: fmt.Sprintf("a match in the recorded console before %s (through %s)", next, s.rec.Where(max(s.feed-1, 0))),
			Got:      fmt.Sprintf("no match for %s", strings.Join(names, " | "))}
	}
	return m, err
}

func describe(op Op) string {
	switch op.Kind {
	case "send":
		if op.Secret {
			return "a secret send"
		}
		return "typing " + strconv.Quote(op.Text)
	case "mark":
		return "a power action (console epoch)"
	}
	return "an expect that timed out (" + strings.Join(op.Patterns, " | ") + ")"
}

// Send compares text with the next recorded send, then types it.
func (c *Console) Send(ctx context.Context, text string, o sol.SendOptions) error {
	if err := c.S.typed(text, o.Secret); err != nil {
		return err
	}
	return c.C.Send(ctx, text, o)
}

// SendLine is Send of text and the line ending.
func (c *Console) SendLine(ctx context.Context, text string, o sol.SendOptions) error {
	if err := c.S.typed(text+"\n", o.Secret); err != nil {
		return err
	}
	return c.C.SendLine(ctx, text, o)
}

// Mark starts a console epoch where the recording did: once the console
// has received what was recorded before it, and before what came after.
func (c *Console) Mark() {
	if next, ok := c.S.toMark(); ok {
		c.C.Mark()
		c.S.mu.Lock()
		c.S.advance(next)
		c.S.mu.Unlock()
		return
	}
	c.C.Mark()
}

// SetMode selects the typing delay (none in a replay).
func (c *Console) SetMode(m sol.Mode) { c.C.SetMode(m) }

// Losses and Gaps are the replay console's: none.
func (c *Console) Losses() uint64 { return c.C.Losses() }
func (c *Console) Gaps() uint64   { return c.C.Gaps() }

func (s *Session) typed(text string, secret bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyTyped()
	i := s.skipTimeouts()
	got := strconv.Quote(text)
	if secret {
		got = "a secret send"
	}
	if i >= len(s.rec.Ops) {
		return s.diverge(Divergence{Expected: "nothing more typed (the recording types nothing after this)", Got: "typing " + got})
	}
	op := s.rec.Ops[i]
	ok := op.Kind == "send" && op.Secret == secret && (secret || masked(op.Text, text))
	if !ok {
		exp := describe(op)
		if op.Kind == "send" && !op.Secret && !secret {
			a, b := around(op.Text, text)
			exp, got = "typing "+a, b
		}
		return s.diverge(Divergence{Seq: op.Seq, Expected: exp, Got: "typing " + got})
	}
	if !secret {
		s.sent = append(s.sent, op.Text)
	}
	s.typedTo = i + 1 // applied when the keys go out (conn.Write)
	return nil
}

// applyTyped moves past a compared send once its keys went out, or when
// the job does anything else (a send of no keys writes nothing). s.mu is
// held.
func (s *Session) applyTyped() {
	if s.typedTo > 0 {
		s.advance(s.typedTo)
		s.typedTo = 0
	}
}

// toMark moves to the next recorded mark and waits until the console has
// been fed up to it; it returns the op after it. A job that marks where
// the recording did not is a divergence (ok false).
func (s *Session) toMark() (next int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyTyped()
	i := s.skipTimeouts()
	if i < len(s.rec.Ops) && s.rec.Ops[i].Kind == "mark" {
		s.op = i
		s.stalled = false
		s.cond.Broadcast()
		for !s.stalled && !s.closed {
			s.cond.Wait()
		}
		return i + 1, true
	}
	exp := "no power action (the recording has none here)"
	var seq int64
	if i < len(s.rec.Ops) {
		exp, seq = describe(s.rec.Ops[i]), s.rec.Ops[i].Seq
	}
	s.diverge(Divergence{Seq: seq, Expected: exp, Got: "a power action (console epoch)"})
	return 0, false
}

// around quotes two typed texts that differ; long ones only around the
// first byte where they differ (the whole texts are in the events).
func around(a, b string) (string, string) {
	const long, before, after = 120, 40, 60
	if len(a) <= long && len(b) <= long {
		return strconv.Quote(a), strconv.Quote(b)
	}
	k := 0
	for k < len(a) && k < len(b) && a[k] == b[k] {
		k++
	}
	cut := func(s string) string {
		from, to := max(0, k-before), min(len(s), k+after)
		q := strconv.Quote(s[from:to])
		if from > 0 {
			q = "…" + q
		}
		if to < len(s) {
			q += "…"
		}
		return q
	}
	return cut(a), cut(b)
}

// masked reports whether typed equals the recorded text, in which each
// bundle.Mask stands for a secret the recorder masked.
func masked(recorded, typed string) bool {
	parts := strings.Split(recorded, bundle.Mask)
	if len(parts) == 1 {
		return recorded == typed
	}
	if !strings.HasPrefix(typed, parts[0]) {
		return false
	}
	rest := typed[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest[min(1, len(rest)):], p)
		if i < 0 {
			return false
		}
		rest = rest[min(1, len(rest))+i+len(p):]
	}
	last := parts[len(parts)-1]
	return len(rest) > len(last) && strings.HasSuffix(rest, last)
}

// EnterStage moves the replay to where the recording began attempt
// attempt of stage name (kind "stage"), or cleanup name (kind "cleanup"),
// so that each stage and cleanup is compared from its own start even after
// an earlier one parted from the recording. A stage attempt the recording
// does not have is a divergence.
func (s *Session) EnterStage(kind, name string, attempt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyTyped()
	var at *bundle.Event
	for i := range s.rec.Events {
		ev := &s.rec.Events[i]
		if kind == "stage" && ev.Type == "stage_start" && ev.Str("stage") == name && intField(ev.Fields["attempt"]) == attempt ||
			kind == "cleanup" && ev.Type == "cleanup_start" && ev.Str("cleanup") == name {
			at = ev
			break
		}
	}
	if at == nil {
		what := fmt.Sprintf("stage %s attempt %d", name, attempt)
		if kind == "cleanup" {
			what = "cleanup " + name
		}
		s.diverge(Divergence{Expected: "the recorded stages and cleanups", Got: what + ", which the recording does not have"})
		s.op, s.call = len(s.rec.Ops), len(s.rec.Calls)
		s.cond.Broadcast()
		return
	}
	// The recording's calls before this start that the job has not made:
	// a stage begins after the previous one passed or an attempt failed
	// (at its failing call), so they are a divergence now; a cleanup may
	// follow stages that ended early, so they are one if the stages all
	// ran (Finish).
	if s.call < len(s.rec.Calls) && s.rec.Calls[s.call].Seq < at.Seq && s.missed == nil {
		c := s.rec.Calls[s.call]
		s.missed = &Divergence{Seq: c.Seq, Pos: "the end of " + s.where,
			Expected: "the recorded call " + c.Str("builtin") + " at " + c.Str("pos"), Got: "no such call before " + kind + " " + name}
	}
	if kind == "stage" && s.div == nil && s.missed != nil {
		s.div, s.missed = s.missed, nil
	}
	s.where = kind + " " + name
	for s.op < len(s.rec.Ops) && s.rec.Ops[s.op].Seq < at.Seq {
		s.op++
	}
	for s.call < len(s.rec.Calls) && s.rec.Calls[s.call].Seq < at.Seq {
		s.call++
	}
	if at.ConsoleOffset > s.feed {
		s.feed = min(at.ConsoleOffset, int64(len(s.rec.Console)))
	}
	s.stalled = false
	s.cond.Broadcast()
}

// Finish checks, after a run whose stages all ran (complete), that the job
// made every recorded call.
func (s *Session) Finish(complete bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !complete || s.div != nil {
		return
	}
	if s.missed != nil {
		s.div = s.missed
		return
	}
	if s.call < len(s.rec.Calls) {
		c := s.rec.Calls[s.call]
		s.div = &Divergence{Seq: c.Seq, Pos: "the end of " + s.where,
			Expected: "the recorded call " + c.Str("builtin") + " at " + c.Str("pos"), Got: "the job ended before it"}
	}
}

func intField(v any) int {
	switch n := v.(type) {
	case interface{ Int64() (int64, error) }:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

// current returns the recorded call the replayed job is in, checked to be
// one of names; a backend answers from it.
func (s *Session) current(what string, names ...string) (bundle.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.call >= len(s.rec.Calls) {
		return bundle.Event{}, s.diverge(Divergence{Expected: "no more calls (the recording ends here)", Got: what})
	}
	c := s.rec.Calls[s.call]
	for _, n := range names {
		if c.Str("builtin") == n {
			return c, nil
		}
	}
	return c, s.diverge(Divergence{Seq: c.Seq, Expected: "the recorded call " + c.Str("builtin") + " at " + c.Str("pos"), Got: what})
}

// Called is told of each call event of the replay (Tap): it holds the
// call to the recorded one and moves on.
func (s *Session) Called(f map[string]any) {
	name, _ := f["builtin"].(string)
	pos, _ := f["pos"].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	if outcome, _ := f["outcome"].(string); outcome == "error" && s.note != nil && s.div == nil {
		s.div = s.note
	}
	s.note = nil
	if s.div != nil && s.div.Call == "" && s.div.Pos == "" {
		s.div.Call, s.div.Pos = name, pos
	}
	if !Aligned(name) {
		return
	}
	if s.call >= len(s.rec.Calls) {
		s.diverge(Divergence{Call: name, Pos: pos, Expected: "no more calls (the recording ends here)", Got: "a call of " + name})
		return
	}
	c := s.rec.Calls[s.call]
	s.call++
	got := callString(name, f["args"])
	want := callString(c.Str("builtin"), c.Fields["args"])
	same := c.Str("builtin") == name
	if mod, _, _ := strings.Cut(name, "."); same && (mod == "ipmi" || mod == "power") {
		// What was asked of the BMC must be the same; how long the job
		// was willing to wait need not.
		same = callString(name, untimed(f["args"])) == callString(name, untimed(c.Fields["args"]))
	}
	if !same {
		s.diverge(Divergence{Call: name, Pos: pos, Seq: c.Seq, Expected: want + " (recorded at " + c.Str("pos") + ")", Got: got})
	}
}

// untimed drops the timeout= arguments of a call event's args.
func untimed(args any) []string {
	var out []string
	for _, a := range strs(args) {
		if !strings.HasPrefix(a, "timeout=") {
			out = append(out, a)
		}
	}
	return out
}

func callString(name string, args any) string {
	var parts []string
	switch a := args.(type) {
	case []string:
		parts = a
	case []any:
		for _, x := range a {
			parts = append(parts, fmt.Sprint(x))
		}
	}
	return name + "(" + strings.Join(parts, ", ") + ")"
}

// Tap is the replayed run's recorder: its bundle, which also tells the
// session of each call (the bundle's other methods, SetExtra and AddInput,
// stay reachable for the modules that look for them).
type Tap struct {
	*bundle.Bundle
	S *Session
}

// Emit records the event and, for a call, compares it with the recording.
func (t Tap) Emit(typ string, fields map[string]any) {
	if typ == "call" {
		t.S.Called(fields)
	}
	t.Bundle.Emit(typ, fields)
}

// recordedError is the error a recorded call failed with, with its class.
func recordedError(c bundle.Event) error {
	if c.Str("outcome") != "error" {
		return nil
	}
	msg := strings.TrimPrefix(c.Str("error"), c.Str("builtin")+": ")
	cls := builtins.Class(c.Str("class"))
	if cls == "" {
		cls = builtins.ClassInfra
	}
	return &builtins.Error{Class: cls, Err: errors.New(msg + " (as recorded)")}
}
