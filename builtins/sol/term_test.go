package sol

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
)

func TestTermAnswers(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"busybox prompt", "\r\nbasalt-master# \x1b[6n", "\x1b[2;16R"},
		{"after output without a newline", "abc" + "bb# \x1b[6n", "\x1b[1;8R"},
		{"U-Boot EFI size probe", "\x1b7\x1b[r\x1b[999;999H\x1b[6n\x1b8", "\x1b[24;80R"},
		{"scrolls at the last row", strings.Repeat("x\r\n", 100) + "\x1b[6n", "\x1b[24;1R"},
		{"autowrap is deferred", strings.Repeat("y", 80) + "\x1b[6n" + "z\x1b[6n", "\x1b[1;80R\x1b[2;2R"},
		{"UTF-8 counts once", "é€😀\x1b[6n", "\x1b[1;4R"},
		{"tab and backspace", "\tab\b\x1b[6n", "\x1b[1;10R"},
		{"cursor moves", "\x1b[5;10H\x1b[2A\x1b[3C\x1b[6n\x1b[20G\x1b[6n", "\x1b[3;13R\x1b[3;20R"},
		{"colours move nothing", "\x1b[1;31mred\x1b[0m\x1b[6n", "\x1b[1;4R"},
		{"OSC title moves nothing", "\x1b]0;title\x07ok\x1b[6n", "\x1b[1;3R"},
		{"private and other DSRs unanswered", "\x1b[?6n\x1b[5n\x1b[6;1n", ""},
		{"save and restore", "ab\x1b7cdef\x1b8\x1b[6n", "\x1b[1;3R"},
		{"garbage parameters", "\x1b[" + strings.Repeat("9", 100) + "n\x1b[6n", "\x1b[1;1R"},
	}
	for _, tt := range tests {
		var tm term
		if got, _ := tm.write([]byte(tt.out)); string(got) != tt.want {
			t.Errorf("%s: term.write(%q) = %q, want %q", tt.name, tt.out, got, tt.want)
		}
	}
}

// FuzzTerm: any output, in any chunks, gives the answers it gives whole,
// and the cursor never leaves the screen.
func FuzzTerm(f *testing.F) {
	f.Add([]byte("\r\nbasalt-master# \x1b[6n"), uint8(3))
	f.Add([]byte("\x1b7\x1b[r\x1b[999;999H\x1b[6n\x1b8"), uint8(1))
	f.Add([]byte("é€😀\x1b]0;t\x1b\\\x1b[6n"), uint8(2))
	f.Add([]byte(strings.Repeat("y", 170)+"\x1b[6n"+strings.Repeat("z\r\n", 30)+"\x1b[6n"), uint8(7))
	f.Fuzz(func(t *testing.T, out []byte, step uint8) {
		var whole, chunked term
		w, _ := whole.write(out)
		want := string(w)
		n := int(step%16) + 1
		var got []byte
		for i := 0; i < len(out); i += n {
			a, _ := chunked.write(out[i:min(i+n, len(out))])
			got = append(got, a...)
		}
		if string(got) != want {
			t.Fatalf("chunks of %d: answers %q, whole: %q", n, got, want)
		}
		if whole.row != chunked.row || whole.col != chunked.col {
			t.Fatalf("chunks of %d end at %d,%d, whole at %d,%d", n, chunked.row, chunked.col, whole.row, whole.col)
		}
		var slow term
		if a, _ := slow.feed(out, false); string(a) != want || slow.row != whole.row || slow.col != whole.col {
			t.Fatalf("a byte at a time: answers %q, ends at %d,%d; in runs: %q, %d,%d", a, slow.row, slow.col, want, whole.row, whole.col)
		}
		if whole.row < 0 || whole.row >= termRows || whole.col < 0 || whole.col > termCols {
			t.Fatalf("cursor off the screen: %d,%d", whole.row, whole.col)
		}
	})
}

// typedLog records what a transport is given to type.
type typedLog struct {
	Transport
	typed chan []byte
}

func (l *typedLog) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	c, err := l.Transport.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &typedConn{ReadWriteCloser: c, typed: l.typed}, nil
}

type typedConn struct {
	io.ReadWriteCloser
	typed chan []byte
}

func (c *typedConn) Write(p []byte) (int, error) {
	c.typed <- append([]byte(nil), p...)
	return c.ReadWriteCloser.Write(p)
}

// typedRig is a console on a sim serial line whose typing is recorded.
func typedRig(t *testing.T) (*serialsim.Line, *typedLog, *Console, context.Context) {
	line := serialsim.New(serialsim.Config{})
	t.Cleanup(func() { line.Close() })
	tr := &typedLog{Transport: serialsim.Transport(line), typed: make(chan []byte, 16)}
	return line, tr, start(t, tr, Options{Backoff: fastBackoff}), testContext(t)
}

// typeAtPrompt has the device print a prompt, waits for it and types a
// line at it.
func typeAtPrompt(t *testing.T, ctx context.Context, line *serialsim.Line, c *Console) {
	t.Helper()
	io.WriteString(line.Device(), "# ")
	if _, err := c.Expect(ctx, expect.Literal("# ")); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, "cmd\r", SendOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The answer to a cursor request goes out before the prompt that carries
// the request is matched: a line typed by the caller who waited for the
// prompt comes after it, never before.
func TestTermAnswerPrecedesWhatIsTypedAfterThePrompt(t *testing.T) {
	line, tr, c, ctx := typedRig(t)
	for i := range 3 {
		if i > 0 {
			// The device echoes the line typed, then runs it.
			io.WriteString(line.Device(), "cmd\r\n")
			if _, err := c.Expect(ctx, expect.Literal("cmd\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(line.Device(), "out %d\r\n# \x1b[6n", i)
		if _, err := c.Expect(ctx, expect.Literal("# ")); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(ctx, "cmd\r", SendOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{fmt.Sprintf("\x1b[%d;3R", 2*i+2), "cmd\r"} {
			if got := string(<-tr.typed); got != want {
				t.Fatalf("round %d: typed %q, want %q", i, got, want)
			}
		}
	}
}

// Real busybox (busybox-static) sh -i on a pty, whose line editing asks
// for the cursor after every prompt: a request gets at most one answer,
// with the column busybox's own output puts the cursor at; busybox takes
// it as a cursor report (nothing of it is echoed or reaches a command),
// and the commands' output is what it is without the answers.
func TestTermAnswersRealBusybox(t *testing.T) {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("no busybox (apt-get install busybox-static)")
	}
	// The pty of a Command console is raw; a serial console's getty makes
	// its line sane (onlcr, echo, icanon) first.
	typed := make(chan []byte, 64)
	var capture strings.Builder
	pr, pw := io.Pipe()
	captured := make(chan struct{})
	go func() {
		defer close(captured)
		sc := bufio.NewReader(pr)
		b := make([]byte, 4096)
		for {
			n, err := sc.Read(b)
			capture.Write(b[:n])
			if err != nil {
				return
			}
		}
	}()
	tr := &typedLog{Transport: Command{Argv: []string{bb, "sh", "-c", bb + " stty sane && exec " + bb + " sh -i"}, Env: []string{"PS1=bb# ", "HOME=/", "ENV=/dev/null"}}, typed: typed}
	c := start(t, tr, Options{Backoff: fastBackoff, Capture: pw})
	ctx := testContext(t)
	prompt := expect.MustRegexp(`bb# \x1b\[6n`)
	if _, err := c.Expect(ctx, prompt); err != nil {
		t.Fatal(err)
	}
	// The prompt after "abc" printed without a newline: busybox's cursor
	// is at column 8.
	cmds := []struct{ line, out, answer string }{
		{"echo one", "one\r\n", ";5R"},
		{"printf abc", "abc", ";8R"},
		{"echo two", "two\r\n", ";5R"},
		{"echo three", "three\r\n", ";5R"},
	}
	answers := []string{}
	drainTyped := func() {
		for {
			select {
			case p := <-typed:
				if s := string(p); strings.HasPrefix(s, "\x1b[") {
					answers = append(answers, s)
				}
			default:
				return
			}
		}
	}
	drainTyped()
	if len(answers) != 1 || !strings.HasSuffix(answers[0], ";5R") {
		t.Fatalf("answers to the first prompt = %q, want one at column 5; console %q", answers, capture.String())
	}
	for _, cmd := range cmds {
		if err := c.Send(ctx, cmd.line+"\r", SendOptions{}); err != nil {
			t.Fatal(err)
		}
		m, err := c.Expect(ctx, prompt)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimPrefix(m.Before, cmd.line+"\r\n")
		if got != cmd.out {
			t.Errorf("%s: output %q, want %q", cmd.line, got, cmd.out)
		}
		// A request in the read that also brings the line's echo is
		// left alone (see TestTermRequestAfterTypingUnanswered).
		n := len(answers)
		drainTyped()
		if len(answers) > n+1 {
			t.Errorf("%s: %d answers to one prompt", cmd.line, len(answers)-n)
		}
		if len(answers) > n && !strings.HasSuffix(answers[n], cmd.answer) {
			t.Errorf("%s: answered %q, want column %s", cmd.line, answers[n], cmd.answer)
		}
	}
	c.Close()
	pw.Close()
	<-captured
	if m := regexp.MustCompile(`\^\[|[0-9];[0-9]+R`).FindString(capture.String()); m != "" {
		t.Errorf("an answer shows on the console (%q):\n%q", m, capture.String())
	}
}

// A request that comes after something was typed past the output before
// it is not answered: the device may have asked before the typed text
// reached it, and the answer would come after that text's Enter — busybox
// would echo it into the command's output. The next quiet request is.
func TestTermRequestAfterTypingUnanswered(t *testing.T) {
	line, tr, c, ctx := typedRig(t)
	typeAtPrompt(t, ctx, line, c)
	if got := string(<-tr.typed); got != "cmd\r" {
		t.Fatalf("typed %q, want the line", got)
	}
	io.WriteString(line.Device(), "\x1b[6n"+"out\r\n")
	if _, err := c.Expect(ctx, expect.Literal("out\r\n")); err != nil {
		t.Fatal(err)
	}
	io.WriteString(line.Device(), "# \x1b[6n")
	if _, err := c.Expect(ctx, expect.Literal("# \x1b[6n")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-tr.typed); got != "\x1b[2;3R" {
		t.Fatalf("typed %q, want only the answer to the quiet request", got)
	}
	select {
	case p := <-tr.typed:
		t.Fatalf("typed %q as well", p)
	default:
	}
}

// A read that brings the typed line's echo, its output, the next prompt
// and its request together (a BMC that packs them in one SOL packet): the
// device asked after a line feed that came after the typing, so the
// request is answered.
func TestTermRequestAfterEchoInOneReadAnswered(t *testing.T) {
	line, tr, c, ctx := typedRig(t)
	typeAtPrompt(t, ctx, line, c)
	<-tr.typed
	io.WriteString(line.Device(), "cmd\r\nout\r\n# \x1b[6n")
	if _, err := c.Expect(ctx, expect.Literal("# \x1b[6n")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-tr.typed); got != "\x1b[3;3R" {
		t.Fatalf("typed %q, want the answer", got)
	}
}

// While a person's terminal is attached (basalt console, read-write) it
// answers for itself: the console does not answer too, and does again
// once the person detaches.
func TestTermNoAnswerWhilePersonAttached(t *testing.T) {
	line, tr, c, ctx := typedRig(t)
	detach := c.PersonAttached()
	io.WriteString(line.Device(), "# \x1b[6n")
	if _, err := c.Expect(ctx, expect.Literal("# \x1b[6n")); err != nil {
		t.Fatal(err)
	}
	detach()
	detach() // twice is once
	io.WriteString(line.Device(), "\r\n# \x1b[6n")
	if _, err := c.Expect(ctx, expect.Literal("# \x1b[6n")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-tr.typed); got != "\x1b[2;3R" {
		t.Fatalf("typed %q, want only the answer after the person left", got)
	}
}
