package simshell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// MaxLine is the longest input line, as in a Linux tty in canonical mode:
// characters typed past it are dropped.
const MaxLine = 4095

// Serve runs the interactive shell on a serial console: tty's Write is the
// console output and its Read the keystrokes. It echoes input like a tty in
// canonical mode ("\r" or "\n" ends a line, "\r\n" counts once; backspace,
// ^U and ^C edit and interrupt), runs each line and writes the output with
// "\n" turned into "\r\n".
//
// Serve returns ctx's error when ctx ends, ErrPoweroff, ErrReboot or ErrKexec
// once such a command ran, or an error when tty's Read fails. Background
// commands and httpd servers stop when it returns. If tty has
// SetReadDeadline (net.Conn, *os.File), Serve uses it to stop its pending
// Read and clears it before returning; otherwise the Read it left pending
// completes later and its bytes are dropped.
func (s *Shell) Serve(ctx context.Context, tty io.ReadWriter) error {
	s.mu.Lock()
	if s.halt != nil {
		s.mu.Unlock()
		return s.halt
	}
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops background jobs and their servers
	out := newTTYWriter(ctx, tty)
	defer out.close()
	s.fs.console.Store(out)
	s.mu.Lock()
	s.console = out
	s.serveCtx = ctx
	s.mu.Unlock()
	defer s.stopServers()

	stdin, w, err := os.Pipe() // commands read EOF from the console
	if err != nil {
		return fmt.Errorf("simshell: %w", err)
	}
	w.Close()
	defer stdin.Close()
	runner, err := s.newRunner(stdin, out, out, "/root")
	if err != nil {
		return err
	}

	keys := make(chan []byte)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				select {
				case keys <- bytes.Clone(buf[:n]):
				case <-stop:
					return
				}
			}
			if err != nil {
				select {
				case readErr <- err:
				case <-stop:
				}
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if d, ok := tty.(interface{ SetReadDeadline(time.Time) error }); ok {
			if d.SetReadDeadline(time.Now()) == nil {
				<-readerDone
				d.SetReadDeadline(time.Time{})
			}
		}
	}()

	var (
		ld          lineDisc
		pending     []string        // lines typed, not yet run
		script      strings.Builder // lines of an incomplete command
		running     bool
		interrupted bool
		done        = make(chan error, 1)
	)
	printPrompt := func(ps string) {
		if v, ok := runner.Vars[ps]; ok && v.Kind == expand.String {
			out.WriteString(s.prompt(v.Str, s.fs.virt(runner.Dir)))
		} else if ps == "PS1" {
			out.WriteString(s.prompt(s.cfg.Prompt, s.fs.virt(runner.Dir)))
		} else {
			out.WriteString("> ")
		}
	}
	s.mu.Lock()
	runInit := s.cfg.Init != "" && !s.initRan
	s.initRan = true
	s.mu.Unlock()
	if runInit {
		f, err := parse(s.cfg.Init)
		if err != nil {
			return fmt.Errorf("simshell: init: %w", err)
		}
		markJobs(f)
		runner.Run(ctx, f)
	}
	printPrompt("PS1")
	for {
		for !running && len(pending) > 0 {
			line := pending[0]
			pending = pending[1:]
			script.WriteString(line)
			script.WriteString("\n")
			f, err := parse(script.String())
			if syntax.IsIncomplete(err) {
				printPrompt("PS2")
				continue
			}
			script.Reset()
			if err != nil {
				fmt.Fprintf(out, "sh: %s\n", syntaxMessage(err))
				printPrompt("PS1")
				continue
			}
			markJobs(f)
			if len(f.Stmts) == 0 {
				printPrompt("PS1")
				continue
			}
			runCtx, runCancel := context.WithCancel(ctx)
			bg := hasBackground(f)
			s.mu.Lock()
			s.fgCancel = runCancel
			s.mu.Unlock()
			running, interrupted = true, false
			go func() {
				err := runner.Run(runCtx, f)
				if !bg {
					// Background jobs keep runCtx until Serve ends.
					runCancel()
				}
				done <- err
			}()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.halted:
			if running {
				select {
				case <-done:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			out.drain()
			return s.halt
		case err := <-readErr:
			return fmt.Errorf("simshell: console read: %w", err)
		case b := <-keys:
			for _, c := range b {
				ev := ld.feed(c, s.echoing(), out)
				switch ev.kind {
				case evLine:
					pending = append(pending, ev.line)
				case evInterrupt:
					script.Reset()
					pending = nil
					if running {
						interrupted = true
						s.interrupt()
					} else {
						out.WriteString("\n")
						printPrompt("PS1")
					}
				}
			}
		case err := <-done:
			running = false
			s.mu.Lock()
			s.fgCancel = nil
			s.mu.Unlock()
			if interrupted {
				out.WriteString("\n")
			} else if err != nil && runner.Exited() {
				var es interp.ExitStatus
				if !errors.As(err, &es) && !errors.Is(err, context.Canceled) {
					s.log.Warn("shell stopped", "error", err)
				}
			}
			if runner.Exited() && !interrupted {
				// `exit` logs out; a fresh login shell takes over.
				if runner, err = s.newRunner(stdin, out, out, "/root"); err != nil {
					return err
				}
			}
			if s.halting() {
				continue // the halted case returns
			}
			printPrompt("PS1")
		}
	}
}

func (s *Shell) echoing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.echo
}

func (s *Shell) halting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.halt != nil
}

func (s *Shell) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fgCancel != nil {
		s.fgCancel()
	}
}

// syntaxMessage shortens a parser error to what ash prints.
func syntaxMessage(err error) string {
	var pe syntax.ParseError
	if errors.As(err, &pe) {
		return "syntax error: " + pe.Text
	}
	return err.Error()
}

// lineDisc is the canonical-mode line discipline of the console.
type lineDisc struct {
	line   []byte
	lastCR bool
	esc    int // 0 none, 1 after ESC, 2 inside a CSI sequence
}

type evKind int

const (
	evNone evKind = iota
	evLine
	evInterrupt
)

type event struct {
	kind evKind
	line string
}

// feed processes one input byte, echoing to out when echo is on.
func (l *lineDisc) feed(c byte, echo bool, out *ttyWriter) event {
	put := func(s string) {
		if echo {
			out.WriteRaw(s)
		}
	}
	cr := l.lastCR
	l.lastCR = c == '\r'
	switch l.esc {
	case 1:
		l.esc = 0
		if c == '[' || c == 'O' {
			l.esc = 2
		}
		return event{}
	case 2:
		if c >= 0x40 && c <= 0x7e {
			l.esc = 0
		}
		return event{}
	}
	switch {
	case c == '\n' && cr:
		return event{} // "\r\n" ends one line, not two
	case c == '\r' || c == '\n':
		put("\r\n")
		line := string(l.line)
		l.line = l.line[:0]
		return event{kind: evLine, line: line}
	case c == 0x7f || c == 0x08:
		if len(l.line) > 0 {
			_, n := utf8.DecodeLastRune(l.line)
			l.line = l.line[:len(l.line)-n]
			put("\b \b")
		}
	case c == 0x15: // ^U kills the line
		for range utf8.RuneCount(l.line) {
			put("\b \b")
		}
		l.line = l.line[:0]
	case c == 0x03: // ^C
		put("^C")
		l.line = l.line[:0]
		return event{kind: evInterrupt}
	case c == 0x1b:
		l.esc = 1
	case c < 0x20 && c != '\t':
		// other control characters are ignored
	default:
		if len(l.line) >= MaxLine {
			return event{}
		}
		l.line = append(l.line, c)
		if echo {
			out.WriteRaw(string(c))
		}
	}
	return event{}
}

// ttyWriter is the console output: it turns "\n" into "\r\n" (onlcr) and
// queues writes so a slow console blocks the writing command, not the
// shell's input loop, and no write outlives ctx.
type ttyWriter struct {
	ctx   context.Context
	w     io.Writer
	q     chan []byte
	flush chan chan struct{}
	done  chan struct{}
}

func newTTYWriter(ctx context.Context, w io.Writer) *ttyWriter {
	t := &ttyWriter{ctx: ctx, w: w, q: make(chan []byte, 256), flush: make(chan chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

func (t *ttyWriter) loop() {
	for {
		select {
		case p := <-t.q:
			if _, err := t.w.Write(p); err != nil {
				// The console is gone; drop output until Serve ends.
				continue
			}
		case ack := <-t.flush:
			for len(t.q) > 0 {
				t.w.Write(<-t.q)
			}
			close(ack)
		case <-t.done:
			return
		case <-t.ctx.Done():
			return
		}
	}
}

// Write queues p with onlcr applied. It fails once the shell has stopped.
func (t *ttyWriter) Write(p []byte) (int, error) {
	if err := t.enqueue(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteString writes s with onlcr applied.
func (t *ttyWriter) WriteString(s string) { t.Write([]byte(s)) }

// WriteRaw writes s as it is (echo).
func (t *ttyWriter) WriteRaw(s string) { t.enqueue([]byte(s)) }

func (t *ttyWriter) enqueue(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	select {
	case t.q <- p:
		return nil
	case <-t.done:
	case <-t.ctx.Done():
	}
	return errConsoleClosed
}

var errConsoleClosed = errors.New("console closed")

// drain waits until everything queued so far has been written, or ctx ends.
func (t *ttyWriter) drain() {
	ack := make(chan struct{})
	select {
	case t.flush <- ack:
	case <-t.done:
		return
	case <-t.ctx.Done():
		return
	}
	select {
	case <-ack:
	case <-t.ctx.Done():
	}
}

func (t *ttyWriter) close() {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
}
