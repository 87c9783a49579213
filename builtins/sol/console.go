package sol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

// Mode selects the default per-character typing delay.
type Mode int

const (
	// ModeBootloader types with Options.BootloaderDelay. It is the mode a
	// console starts in: a device powers up into its firmware.
	ModeBootloader Mode = iota
	// ModeShell types with Options.TestShellDelay.
	ModeShell
)

func (m Mode) String() string {
	if m == ModeShell {
		return "shell"
	}
	return "bootloader"
}

// Backoff paces reconnection attempts after a transport loss: the first
// attempt is immediate, then the delay starts at Initial and doubles up to
// Max. Defaults 50ms and 2s.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Options configure a Console. The zero value is usable.
type Options struct {
	// Window caps the unconsumed console output kept for matching
	// (default expect.DefaultWindow, 1 MiB); it bounds memory whatever the
	// length of the stream.
	Window int
	// ErrorPatterns are regular expressions that end any expect at once
	// with a *DeviceErrorMatch (kernel panic, Oops, bootloader errors).
	ErrorPatterns []string
	// Capture receives every byte read from the console, in order, exactly
	// once (console.log). It is written from the console's reader goroutine.
	Capture io.Writer
	// Emit records machine events: console_connect, console_gap, expect,
	// send, send_retry. Typed text is never in them.
	Emit func(typ string, fields map[string]any)
	// AddSecret is called with text typed as secret, before it is typed,
	// so that the capture writer and the recorder can redact its echo.
	AddSecret func(value string)
	// Secrets are values known before anything is typed (the device's
	// BMC password): like typed secrets they are masked in errors' console
	// tails and lines, also when the tail begins or ends inside one —
	// which the bundle's redactor, seeing only the whole message, cannot
	// tell from other text.
	Secrets []string
	Log     *slog.Logger // nil discards
	// Per-character delays of ModeBootloader and ModeShell; 0 types a
	// whole text in one write.
	BootloaderDelay time.Duration
	TestShellDelay  time.Duration
	Backoff         Backoff
	// OpenAttempts bounds the attempts Start makes to open the transport
	// (default 5); Start also gives up when its ctx ends. Reconnection
	// after a loss keeps trying until Close. Either stops at once on an
	// error that says it is permanent (a Permanent() bool method that
	// returns true: the BMC refused the user name or password).
	OpenAttempts int
	// LineEnding ends the lines SendLine types; default "\n".
	LineEnding string
	// EchoTimeout is how long SendLine with VerifyEcho waits for the echo
	// of a typed line (default 1s), and EchoRetries how many times it
	// retypes a line whose echo differs (default 3). EraseLine is typed
	// before retyping; default Ctrl-U (kill line).
	EchoTimeout time.Duration
	EchoRetries int
	EraseLine   string
	// TailSize is how many of the last console bytes a timeout error
	// carries; default 1024.
	TailSize int
	// NoTermAnswers keeps the console from answering the device's cursor
	// position requests (ESC [ 6 n) as a terminal does; see term. A
	// replayed console, whose device answers nothing, sets it.
	NoTermAnswers bool
}

// Console drives one serial console over a Transport: one reader goroutine
// captures and matches everything the device prints and reconnects with
// backoff when the transport is lost; Expect and Send run in the callers'
// goroutines under their contexts.
type Console struct {
	t       Transport
	o       Options
	log     *slog.Logger
	errPats []expect.Pattern
	optErr  error

	expectMu sync.Mutex // one Expect at a time
	typeMu   sync.Mutex // one Send at a time
	lastKey  time.Time  // when the last key went out (held by typeMu)

	mu        sync.Mutex
	m         *expect.Matcher
	waiter    *waiter
	notify    chan struct{} // closed when output arrives
	connected chan struct{} // closed while a connection is up
	tail      []byte        // the last TailSize bytes received
	conn      io.ReadWriteCloser
	lostAt    time.Time
	lostErr   error
	fatal     error  // why the reader gave up reconnecting, if it did
	losses    uint64 // connections lost so far
	gaps      uint64 // output lost inside connections that ended
	mode      Mode
	secrets   []string
	started   bool
	closed    bool
	cancel    context.CancelFunc
	ctx       context.Context
	done      chan struct{} // closed when the reader exits

	// wmu orders the console's writes: what callers type and the
	// reader's terminal answers. typed counts the typed writes begun;
	// answeredAt is typed when the reader last delivered output, and term
	// follows the output (both the reader's).
	wmu        sync.Mutex
	people     atomic.Int32 // terminals attached that answer for themselves
	typed      atomic.Uint64
	answeredAt uint64
	term       term
}

type waiter struct {
	s  *expect.Search
	ch chan expect.Match // buffered, 1
}

// New returns a console over t. Nothing is opened until Start.
func New(t Transport, opts Options) *Console {
	if opts.Backoff.Initial <= 0 {
		opts.Backoff.Initial = 50 * time.Millisecond
	}
	if opts.Backoff.Max < opts.Backoff.Initial {
		opts.Backoff.Max = max(2*time.Second, opts.Backoff.Initial)
	}
	if opts.LineEnding == "" {
		opts.LineEnding = "\n"
	}
	if opts.EchoTimeout <= 0 {
		opts.EchoTimeout = time.Second
	}
	if opts.EchoRetries <= 0 {
		opts.EchoRetries = 3
	}
	if opts.EraseLine == "" {
		opts.EraseLine = "\x15"
	}
	if opts.TailSize <= 0 {
		opts.TailSize = 1024
	}
	if opts.OpenAttempts <= 0 {
		opts.OpenAttempts = 5
	}
	c := &Console{
		t:         t,
		o:         opts,
		log:       opts.Log,
		m:         expect.New(opts.Window),
		notify:    make(chan struct{}),
		connected: make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, s := range opts.Secrets {
		if s != "" {
			c.secrets = append(c.secrets, s)
		}
	}
	for _, p := range opts.ErrorPatterns {
		ep, err := expect.Regexp(p)
		if err != nil {
			c.optErr = errors.Join(c.optErr, fmt.Errorf("error pattern: %w", err))
			continue
		}
		c.errPats = append(c.errPats, ep)
	}
	return c
}

// String names the console's transport.
func (c *Console) String() string { return c.t.String() }

func (c *Console) emit(typ string, fields map[string]any) {
	if c.o.Emit != nil {
		c.o.Emit(typ, fields)
	}
}

// Start opens the transport, retrying with backoff until ctx ends, and
// starts the reader. The reader outlives ctx: it runs until Close.
func (c *Console) Start(ctx context.Context) error {
	if c.optErr != nil {
		return builtins.Infra(fmt.Errorf("console %s: %w", c.t, c.optErr))
	}
	c.mu.Lock()
	if c.started || c.closed {
		c.mu.Unlock()
		return errors.New("console: Start called twice or after Close")
	}
	c.started = true
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.done = make(chan struct{})
	c.mu.Unlock()

	conn, attempts, err := c.dial(ctx, c.o.OpenAttempts)
	if err != nil {
		c.cancel()
		close(c.done)
		return builtins.Infra(fmt.Errorf("open console %s after %d attempts: %w", c.t, attempts, err))
	}
	go c.run(conn)
	return nil
}

// dial opens the transport with backoff until ctx or the console ends,
// maxAttempts attempts fail (0: no limit) or one fails permanently.
func (c *Console) dial(ctx context.Context, maxAttempts int) (io.ReadWriteCloser, int, error) {
	delay := time.Duration(0)
	var last error
	for attempt := 1; ; attempt++ {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, attempt - 1, errors.Join(ctx.Err(), last)
			case <-c.ctx.Done():
				t.Stop()
				return nil, attempt - 1, errClosed
			}
		}
		delay = min(max(2*delay, c.o.Backoff.Initial), c.o.Backoff.Max)
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := c.t.Open(octx)
		cancel()
		if err != nil {
			last = err
			c.log.Debug("console open failed", "transport", c.t.String(), "attempt", attempt, "error", err)
			if ctx.Err() != nil {
				return nil, attempt, errors.Join(ctx.Err(), last)
			}
			if permanent(err) || attempt == maxAttempts {
				return nil, attempt, err
			}
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return nil, attempt, errClosed
		}
		c.conn = conn
		close(c.connected)
		c.mu.Unlock()
		c.emit("console_connect", map[string]any{"transport": c.t.String(), "attempts": attempt})
		c.log.Info("console connected", "transport", c.t.String(), "attempts", attempt)
		return conn, attempt, nil
	}
}

var errClosed = errors.New("console closed")

// permanent reports whether err says that opening again cannot succeed.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// Losses returns how many times the connection has been lost so far.
// Keystrokes written shortly before a loss may never have reached the
// device; a caller that knows when retyping is safe (target.run, before its
// command has started) compares Losses before and after typing.
func (c *Console) Losses() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.losses
}

// gapCounter is a connection that knows when output was lost inside it
// (the SOL transport sees a BMC sequence number skipped).
type gapCounter interface{ Gaps() uint64 }

// Gaps returns how many times console output was lost inside a connection
// (not counting losses of the connection itself): output the device
// printed that the console will never see.
func (c *Console) Gaps() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.gaps
	if g, ok := c.conn.(gapCounter); ok {
		n += g.Gaps()
	}
	return n
}

// run is the reader goroutine.
func (c *Console) run(conn io.ReadWriteCloser) {
	defer close(c.done)
	buf := make([]byte, min(32<<10, max(c.m.Window()/4, 1)))
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			c.answer(conn, buf[:n])
			c.deliver(buf[:n])
		}
		if err == nil {
			continue
		}
		conn.Close()
		if c.ctx.Err() != nil {
			return
		}
		lostAt := time.Now()
		c.mu.Lock()
		if g, ok := conn.(gapCounter); ok {
			c.gaps += g.Gaps()
		}
		c.conn = nil
		c.connected = make(chan struct{})
		c.lostAt, c.lostErr = lostAt, err
		c.losses++
		c.mu.Unlock()
		c.log.Warn("console lost", "transport", c.t.String(), "error", err)

		var attempts int
		conn, attempts, err = c.dial(c.ctx, 0)
		if err != nil {
			if !errors.Is(err, errClosed) && c.ctx.Err() == nil {
				// A permanent failure: waiting callers learn why at once.
				c.log.Error("console gave up reconnecting", "transport", c.t.String(), "error", err)
				c.mu.Lock()
				c.fatal = err
				c.mu.Unlock()
			}
			return
		}
		gap := time.Since(lostAt)
		c.emit("console_gap", map[string]any{
			"transport":   c.t.String(),
			"duration_ms": gap.Milliseconds(),
			"error":       c.lostErr.Error(),
			"attempts":    attempts,
		})
	}
}

// answer types the answers to what p asks of the terminal, before p is
// delivered: a line typed by whoever waits for p comes after them, as it
// would from a person at a terminal.
//
// A request that may have been sent before something typed reached the
// device is left unanswered, as the answer would come after that input:
// busybox would take it, after the Enter of a typed line, as input to the
// command, echo it into the command's output and break its end marker;
// unanswered, busybox only waits its 20 ms. That is a request after
// typing since the output before p was delivered, unless p shows the
// device went on to a new line before it asked (the echo of the typed
// line's Enter and what it printed: a prompt that was already delivered,
// and typed at, has no line feed between it and its request).
func (c *Console) answer(conn io.Writer, p []byte) {
	a, afterLF := c.term.write(p)
	if c.o.NoTermAnswers || c.people.Load() > 0 {
		return
	}
	typed := c.typed.Load()
	quiet := typed == c.answeredAt
	c.answeredAt = typed
	// The reader never waits for a write in progress: one that is
	// blocked because the device does not read while it waits for us to
	// read its output would block both.
	if a == nil || !(quiet || afterLF) || !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	if c.typed.Load() != typed {
		return
	}
	if _, err := conn.Write(a); err != nil {
		// The reader sees the loss on its next Read.
		c.log.Debug("console: answer the terminal request", "transport", c.t.String(), "error", err)
	}
}

// PersonAttached says a person's terminal now sees the output and types
// what it answers itself (basalt console, read-write): the console stops
// answering for it until the returned function is called, so the device
// does not get two answers.
func (c *Console) PersonAttached() (detached func()) {
	c.people.Add(1)
	var once sync.Once
	return func() { once.Do(func() { c.people.Add(-1) }) }
}

// deliver hands bytes read to the capture and to the matcher, and wakes
// whoever waits for output.
func (c *Console) deliver(p []byte) {
	if c.o.Capture != nil {
		if _, err := c.o.Capture.Write(p); err != nil {
			c.log.Error("console capture failed", "error", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.Write(p)
	if len(p) >= c.o.TailSize {
		c.tail = append(c.tail[:0], p[len(p)-c.o.TailSize:]...)
	} else {
		if over := len(c.tail) + len(p) - c.o.TailSize; over > 0 {
			c.tail = append(c.tail[:0], c.tail[over:]...)
		}
		c.tail = append(c.tail, p...)
	}
	if w := c.waiter; w != nil {
		if m, ok := w.s.Next(); ok {
			w.ch <- m
			c.waiter = nil
		}
	}
	close(c.notify)
	c.notify = make(chan struct{})
}

// Close stops the reader and closes the connection. Pending Expect and Send
// calls fail.
func (c *Console) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn, started := c.conn, c.started
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	if started {
		<-c.done
	}
	return nil
}

// SetMode selects the default typing delay.
func (c *Console) SetMode(m Mode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mode = m
}

// Mode returns the current mode.
func (c *Console) Mode() Mode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mode
}

// Expect waits until one of patterns matches the console output, and
// returns the match; the output after it stays for the next Expect. The
// device type's error patterns are searched too: if one matches first,
// Expect fails with a *DeviceErrorMatch (class device). When ctx's deadline
// passes it fails with a *TimeoutError (class device), or, if the
// transport is down at that moment, a *LostError (class infra).
func (c *Console) Expect(ctx context.Context, patterns ...expect.Pattern) (expect.Match, error) {
	return c.ExpectWith(ctx, ExpectOptions{}, patterns...)
}

// ExpectOptions qualify one Expect.
type ExpectOptions struct {
	// ErrorPatterns, when Override is set, replace the device type's error
	// patterns for this Expect; nil with Override searches none.
	ErrorPatterns []expect.Pattern
	Override      bool
}

// Mark starts a new console epoch: the output received so far is consumed
// unseen, so no later Expect matches it and no error pattern fires on it,
// and a later timeout error shows only output of the new epoch. Every
// power action calls it (a stale "No bootable device found" from an earlier
// boot must not end the next boot's expect). The capture keeps everything.
func (c *Console) Mark() {
	c.mu.Lock()
	n := c.m.Discard()
	c.tail = c.tail[:0]
	off := c.m.End()
	c.mu.Unlock()
	c.emit("console_mark", map[string]any{"offset": off, "discarded": n})
}

// ExpectWith is Expect with per-call options.
func (c *Console) ExpectWith(ctx context.Context, o ExpectOptions, patterns ...expect.Pattern) (expect.Match, error) {
	if len(patterns) == 0 {
		return expect.Match{}, builtins.Job(errors.New("expect: no patterns"))
	}
	c.expectMu.Lock()
	defer c.expectMu.Unlock()
	start := time.Now()
	errPats := c.errPats
	if o.Override {
		errPats = o.ErrorPatterns
	}
	all := append(patterns[:len(patterns):len(patterns)], errPats...)
	names := make([]string, len(patterns))
	for i, p := range patterns {
		names[i] = p.String()
	}

	c.mu.Lock()
	if !c.started || c.closed {
		c.mu.Unlock()
		return expect.Match{}, builtins.Infra(fmt.Errorf("console %s: not started or closed", c.t))
	}
	s, err := c.m.Search(all...)
	if err != nil {
		c.mu.Unlock()
		return expect.Match{}, builtins.Job(err)
	}
	m, ok := s.Next()
	var w *waiter
	if !ok {
		w = &waiter{s: s, ch: make(chan expect.Match, 1)}
		c.waiter = w
	}
	done := c.done
	c.mu.Unlock()

	if !ok {
		select {
		case m = <-w.ch:
		case <-ctx.Done():
			c.mu.Lock()
			if c.waiter == w {
				c.waiter = nil
				err := c.expectFailed(ctx, names, start)
				c.mu.Unlock()
				return expect.Match{}, err
			}
			c.mu.Unlock()
			m = <-w.ch // matched as the deadline passed
		case <-done:
			c.mu.Lock()
			if c.waiter == w {
				c.waiter = nil
			}
			fatal := c.fatal
			c.mu.Unlock()
			if fatal != nil {
				return expect.Match{}, builtins.Infra(fmt.Errorf("console %s: reconnect: %w", c.t, fatal))
			}
			return expect.Match{}, builtins.Infra(fmt.Errorf("console %s: %w", c.t, errClosed))
		}
	}

	fields := map[string]any{
		"patterns":    names,
		"duration_ms": time.Since(start).Milliseconds(),
	}
	if m.Index >= len(patterns) {
		ep := all[m.Index]
		line := c.redact(c.lineOf(m))
		fields["outcome"] = "device_error"
		fields["error_pattern"] = ep.String()
		c.emit("expect", fields)
		return m, builtins.Device(&DeviceErrorMatch{Pattern: ep.String(), Line: line})
	}
	fields["outcome"] = "match"
	fields["index"] = m.Index
	c.emit("expect", fields)
	return m, nil
}

// lineOf returns the console line holding m's start, as far as received.
func (c *Console) lineOf(m expect.Match) string {
	before := m.Before
	if i := strings.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	c.mu.Lock()
	after := c.m.Since(m.Offset + int64(len(m.Text)))
	if i := bytes.IndexByte(after, '\n'); i >= 0 {
		after = after[:i]
	}
	line := before + m.Text + string(after)
	c.mu.Unlock()
	return strings.TrimRight(line, "\r\n")
}

// expectFailed builds the error of an Expect whose ctx ended. c.mu is held.
func (c *Console) expectFailed(ctx context.Context, names []string, start time.Time) error {
	fields := map[string]any{"patterns": names, "duration_ms": time.Since(start).Milliseconds()}
	if errors.Is(ctx.Err(), context.Canceled) {
		fields["outcome"] = "canceled"
		c.emit("expect", fields)
		return fmt.Errorf("expect %s: %w", strings.Join(names, " | "), ctx.Err())
	}
	if c.conn == nil && !c.lostAt.IsZero() {
		fields["outcome"] = "console_lost"
		c.emit("expect", fields)
		return builtins.Infra(&LostError{Transport: c.t.String(), For: time.Since(c.lostAt), Err: c.lostErr, Patterns: names})
	}
	fields["outcome"] = "timeout"
	c.emit("expect", fields)
	tail := c.redact(string(c.tail))
	pending := c.redact(string(c.m.Since(c.m.End() - int64(c.m.Buffered()))))
	return builtins.Device(&TimeoutError{Patterns: names, Tail: []byte(tail), After: time.Since(start), Pending: []byte(pending)})
}

// redact replaces the secrets typed on this console in s, including a
// secret cut at either end of s. c.mu is held.
func (c *Console) redact(s string) string {
	for _, sec := range c.secrets {
		s = strings.ReplaceAll(s, sec, redacted)
		for k := len(sec) - 1; k >= min(3, len(sec)); k-- {
			if strings.HasPrefix(s, sec[len(sec)-k:]) {
				s = redacted + s[k:]
				break
			}
		}
		for k := len(sec) - 1; k >= min(3, len(sec)); k-- {
			if strings.HasSuffix(s, sec[:k]) {
				s = s[:len(s)-k] + redacted
				break
			}
		}
	}
	return s
}

// redacted stands for a secret in the console capture, as in events and errors.
const redacted = builtins.Redacted

// TimeoutError is an Expect that found none of its patterns by the
// deadline. Tail holds the last console bytes (secrets typed on the
// console redacted).
type TimeoutError struct {
	Patterns []string
	Tail     []byte
	After    time.Duration
	// Pending is the output that came after the last match and matched
	// nothing (at most the console's window), secrets masked: what a
	// command that never printed its end marker printed before it was
	// given up.
	Pending []byte
}

// Error names the patterns and the console's last line, bounded: the whole
// tail is in Tail and console.log, and `basalt run` ends with the console's
// last lines; an error message is no place for a kilobyte of escapes.
func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("no match for %s after %s", strings.Join(e.Patterns, " | "), e.After.Round(time.Millisecond))
	if l := lastLine(e.Tail, 120); l != "" {
		msg += fmt.Sprintf("; the console's last line: %q", l)
	}
	return msg
}

// lastLine returns the last non-blank line of b, its end kept when it is
// longer than max bytes.
func lastLine(b []byte, max int) string {
	lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			if len(l) > max {
				l = "…" + strings.ToValidUTF8(l[len(l)-max:], "")
			}
			return l
		}
	}
	return ""
}

// Unwrap lets errors.Is(err, context.DeadlineExceeded) hold.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// DeviceErrorMatch is an Expect ended by one of the device type's error
// patterns. Line is the console line that matched.
type DeviceErrorMatch struct {
	Pattern string
	Line    string
}

func (e *DeviceErrorMatch) Error() string {
	return fmt.Sprintf("device error on the console (%s): %q", e.Pattern, e.Line)
}

// LostError is a console transport that was down when an Expect or Send
// ran out of time.
type LostError struct {
	Transport string
	For       time.Duration
	Err       error
	Patterns  []string // of the Expect, if any
}

func (e *LostError) Error() string {
	msg := fmt.Sprintf("console %s lost for %s and not back by the deadline: %v", e.Transport, e.For.Round(time.Millisecond), e.Err)
	if len(e.Patterns) > 0 {
		msg += "; waiting for " + strings.Join(e.Patterns, " | ")
	}
	return msg
}

func (e *LostError) Unwrap() error { return e.Err }
