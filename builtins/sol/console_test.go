package sol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
)

var _ Transport = (*serialsim.Port)(nil)

var fastBackoff = Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start starts a console and closes it when the test ends.
func start(t *testing.T, tr Transport, o Options) *Console {
	t.Helper()
	c := New(tr, o)
	if err := c.Start(testContext(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func simConsole(t *testing.T, lo serialsim.Config, o Options) (*serialsim.Line, *serialsim.Port, *Console) {
	line := serialsim.New(lo)
	t.Cleanup(func() { line.Close() })
	port := serialsim.Transport(line)
	if o.Backoff == (Backoff{}) {
		o.Backoff = fastBackoff
	}
	return line, port, start(t, port, o)
}

func TestReconnectTenDropsLosesNothing(t *testing.T) {
	const lines, every, drops = 6000, 40, 10
	var capture builtinstest.SyncBuffer
	rec := &builtinstest.Recorder{}
	line, port, c := simConsole(t, serialsim.Config{}, Options{Capture: &capture, Emit: rec.Emit, Window: 64 << 10})
	ctx := testContext(t)

	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "line %06d\n", i)
	}

	seen := make(chan string, 1)
	go func() {
		var s strings.Builder
		defer func() { seen <- s.String() }()
		for i := every; i <= lines; i += every {
			m, err := c.Expect(ctx, expect.Literal(fmt.Sprintf("line %06d\n", i)))
			if err != nil {
				s.WriteString("\nERROR: " + err.Error())
				return
			}
			s.WriteString(m.Before + m.Text)
		}
	}()

	dev := line.Device()
	batch := lines / (drops + 1)
	for k := 0; k <= drops; k++ {
		var b bytes.Buffer
		for i := k*batch + 1; i <= (k+1)*batch || k == drops && i <= lines; i++ {
			fmt.Fprintf(&b, "line %06d\n", i)
		}
		// Written in small pieces so that drops fall mid-stream.
		for p := b.Bytes(); len(p) > 0; {
			n := min(len(p), 1000)
			if _, err := dev.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if k < drops {
			port.DropNow()
			for port.Opens() < k+2 {
				if ctx.Err() != nil {
					t.Fatalf("console did not reconnect after drop %d", k+1)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}

	got := <-seen
	if got != want.String() {
		t.Errorf("expect saw %d bytes, want %d; first difference at %d", len(got), want.Len(), firstDiff(got, want.String()))
	}
	if c := capture.String(); c != want.String() {
		t.Errorf("capture holds %d bytes, want %d; first difference at %d", len(c), want.Len(), firstDiff(c, want.String()))
	}
	if got := len(rec.Events("console_gap")); got != drops {
		t.Errorf("console_gap events = %d, want %d", got, drops)
	}
	if got := len(rec.Events("console_connect")); got != drops+1 {
		t.Errorf("console_connect events = %d, want %d", got, drops+1)
	}
	if line.Overflow() != 0 {
		t.Errorf("line overflow = %d, want 0", line.Overflow())
	}
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// drain returns the keystrokes the device received so far. Typing on a
// serialsim line is synchronous, so after Send they are all there.
func drain(t *testing.T, l *serialsim.Line) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := l.Device().Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestTypingDelayKeepsCharacters(t *testing.T) {
	const interval = 4 * time.Millisecond
	const cmd = "setenv bootargs console=ttyAMA0,115200\n"
	line, _, c := simConsole(t, serialsim.Config{TypeInterval: interval}, Options{BootloaderDelay: interval})
	ctx := testContext(t)
	line.SetDropFast(true)

	tests := []struct {
		name    string
		mode    Mode
		o       SendOptions
		intact  bool
		dropped bool
	}{
		{"no delay", ModeBootloader, SendOptions{DelaySet: true}, false, true},
		{"bootloader delay", ModeBootloader, SendOptions{}, true, false},
		{"shell mode has no delay", ModeShell, SendOptions{}, false, true},
		{"per-call delay in shell mode", ModeShell, SendOptions{DelaySet: true, Delay: interval}, true, false},
	}
	for _, tt := range tests {
		c.SetMode(tt.mode)
		line.SetDropFast(true) // forget the last keystroke's time
		before := line.KeysDropped()
		if err := c.Send(ctx, cmd, tt.o); err != nil {
			t.Fatal(err)
		}
		got := drain(t, line)
		if (got == cmd) != tt.intact || (line.KeysDropped() > before) != tt.dropped {
			t.Errorf("%s: device received %q (%d keys dropped), want intact = %v", tt.name, got, line.KeysDropped()-before, tt.intact)
		}
	}
}

// editor is a device reading keystrokes into a line, with Ctrl-U erasing
// it, echoing what it accepts. It drops the character at dropAt of the
// first line typed, as a too-fast bootloader would.
func editor(t *testing.T, l *serialsim.Line, dropAt int, lines chan<- string) {
	dev := l.Device()
	go func() {
		var cur []byte
		first := true
		buf := make([]byte, 256)
		for {
			n, err := dev.Read(buf)
			if err != nil {
				return
			}
			for _, b := range buf[:n] {
				switch {
				case b == '\n':
					dev.Write([]byte("\r\n"))
					lines <- string(cur)
					cur = cur[:0]
				case b == 0x15:
					cur = cur[:0]
					dev.Write([]byte("^U\r\n"))
					first = false
				case first && len(cur) == dropAt && dropAt >= 0:
					dropAt = -1 // lost once
				default:
					cur = append(cur, b)
					dev.Write([]byte{b})
				}
			}
		}
	}()
}

func TestVerifyEchoRetypes(t *testing.T) {
	rec := &builtinstest.Recorder{}
	line, _, c := simConsole(t, serialsim.Config{}, Options{Emit: rec.Emit, EchoTimeout: 100 * time.Millisecond})
	lines := make(chan string, 10)
	editor(t, line, 3, lines)
	ctx := testContext(t)
	const cmd = "dhcp net0"
	if err := c.SendLine(ctx, cmd, SendOptions{VerifyEcho: true}); err != nil {
		t.Fatal(err)
	}
	if got := <-lines; got != cmd {
		t.Errorf("device got line %q, want %q", got, cmd)
	}
	if got := len(rec.Events("send_retry")); got != 1 {
		t.Errorf("send_retry events = %d, want 1", got)
	}
	// The echo stays for the next expect.
	if _, err := c.Expect(ctx, expect.Literal(cmd+"\r\n")); err != nil {
		t.Errorf("Expect(echo) = %v", err)
	}
}

func TestVerifyEchoGivesUp(t *testing.T) {
	line, _, c := simConsole(t, serialsim.Config{}, Options{EchoTimeout: 20 * time.Millisecond, EchoRetries: 2})
	// A device that echoes nothing.
	go io.Copy(io.Discard, line.Device())
	err := c.SendLine(testContext(t), "boot", SendOptions{VerifyEcho: true})
	if builtins.ClassOf(err) != builtins.ClassDevice || !strings.Contains(err.Error(), "after 2 retypes") {
		t.Errorf("SendLine = %v (class %s), want a device error after 2 retypes", err, builtins.ClassOf(err))
	}
}

var lavaErrors = []string{
	`Kernel panic - not syncing`, `end Kernel panic`, `Oops`, `Unable to handle kernel`, `BUG:`,
	`Internal error:`, `general protection fault`, `Unhandled fault`, `Call trace:`, `---\[ end trace`,
}

func TestDeviceErrorWatch(t *testing.T) {
	rec := &builtinstest.Recorder{}
	line, _, c := simConsole(t, serialsim.Config{}, Options{ErrorPatterns: lavaErrors, Emit: rec.Emit})
	ctx := testContext(t)
	const panicLine = "[    2.000000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
	fmt.Fprintf(line.Device(), "[    1.000000] Booting Linux\n%s\r\n[    2.1] ---[ end Kernel panic ]---\nlogin: ", panicLine)

	_, err := c.Expect(ctx, expect.Literal("login: "))
	var de *DeviceErrorMatch
	if !errors.As(err, &de) || builtins.ClassOf(err) != builtins.ClassDevice {
		t.Fatalf("Expect = %v, want a *DeviceErrorMatch of class device", err)
	}
	if de.Line != panicLine {
		t.Errorf("error line = %q, want %q", de.Line, panicLine)
	}
	// The next expect goes on after the matched error.
	_, err = c.Expect(ctx, expect.Literal("login: "))
	if !errors.As(err, &de) || !strings.Contains(de.Line, "end Kernel panic") {
		t.Errorf("second Expect = %v, want the end Kernel panic line", err)
	}
	if _, err := c.Expect(ctx, expect.Literal("login: ")); err != nil {
		t.Errorf("third Expect = %v, want the prompt", err)
	}
	if got := len(rec.Events("expect")); got != 3 {
		t.Errorf("expect events = %d, want 3", got)
	}
}

func TestTimeoutCarriesRedactedTail(t *testing.T) {
	const secret = "hunter2-very-secret"
	var added []string
	line, _, c := simConsole(t, serialsim.Config{}, Options{
		TailSize:  64,
		AddSecret: func(s string) { added = append(added, s) },
	})
	lines := make(chan string, 10)
	editor(t, line, -1, lines)
	ctx := testContext(t)
	if err := c.SendLine(ctx, secret, SendOptions{Secret: true}); err != nil {
		t.Fatal(err)
	}
	<-lines
	fmt.Fprintf(line.Device(), "\r\nPassword accepted\r\n=> ")
	if _, err := c.Expect(ctx, expect.Literal("=> ")); err != nil {
		t.Fatal(err)
	}

	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := c.Expect(tctx, expect.Literal("never"), expect.MustRegexp(`nor\d+`))
	var te *TimeoutError
	if !errors.As(err, &te) || builtins.ClassOf(err) != builtins.ClassDevice || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Expect = %v, want a *TimeoutError of class device", err)
	}
	if want := []string{`"never"`, `re"nor\\d+"`}; fmt.Sprint(te.Patterns) != fmt.Sprint(want) {
		t.Errorf("timeout patterns = %q, want %q", te.Patterns, want)
	}
	tail := string(te.Tail)
	if !strings.HasSuffix(tail, "Password accepted\r\n=> ") || strings.Contains(tail, "hunter") || strings.Contains(err.Error(), "secret") {
		t.Errorf("timeout tail = %q, want the last output with the secret redacted", tail)
	}
	// the message names the last line, not an escaped dump of the tail
	if want := `; the console's last line: "=>"`; !strings.HasSuffix(err.Error(), want) || strings.Contains(err.Error(), `\r\n`) {
		t.Errorf("timeout message = %q, want it to end %s", err, want)
	}
	if len(added) != 1 || added[0] != secret {
		t.Errorf("AddSecret got %q, want the secret once", added)
	}
}

func TestCancelEndsExpect(t *testing.T) {
	_, _, c := simConsole(t, serialsim.Config{}, Options{})
	ctx, cancel := context.WithCancel(testContext(t))
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	_, err := c.Expect(ctx, expect.Literal("never"))
	if !errors.Is(err, context.Canceled) || builtins.ClassOf(err) != builtins.ClassCanceled {
		t.Errorf("Expect after cancel = %v (class %s), want canceled", err, builtins.ClassOf(err))
	}
}

func TestLostPastDeadlineIsInfra(t *testing.T) {
	line, port, c := simConsole(t, serialsim.Config{}, Options{})
	ctx := testContext(t)
	port.FailOpens(1 << 30)
	port.DropNow()
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := c.Expect(tctx, expect.Literal("ready"))
	var le *LostError
	if !errors.As(err, &le) || builtins.ClassOf(err) != builtins.ClassInfra {
		t.Fatalf("Expect while the transport is down = %v (class %s), want a *LostError of class infra", err, builtins.ClassOf(err))
	}
	err = c.Send(tctx, "x", SendOptions{})
	if !errors.As(err, &le) {
		t.Errorf("Send while the transport is down = %v, want a *LostError", err)
	}
	port.FailOpens(0)
	fmt.Fprint(line.Device(), "ready")
	if _, err := c.Expect(ctx, expect.Literal("ready")); err != nil {
		t.Errorf("Expect after the transport is back = %v", err)
	}
}

func TestTCPReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reset := make(chan struct{})
	typed := make(chan string, 1)
	// The second connection stays open until the test has looked: its
	// close would be a loss, and its reconnection a second gap.
	checked := make(chan struct{})
	defer close(checked)
	go func() {
		c1, err := ln.Accept()
		if err != nil {
			return
		}
		c1.Write([]byte("first\n"))
		<-reset
		c1.(*net.TCPConn).SetLinger(0) // close with RST
		c1.Close()
		c2, err := ln.Accept()
		if err != nil {
			return
		}
		defer c2.Close()
		c2.Write([]byte("second\n"))
		b := make([]byte, 64)
		n, _ := io.ReadAtLeast(c2, b, len("hello\n"))
		typed <- string(b[:n])
		<-checked
	}()

	rec := &builtinstest.Recorder{}
	var capture builtinstest.SyncBuffer
	c := start(t, TCP{Addr: ln.Addr().String()}, Options{Emit: rec.Emit, Capture: &capture, Backoff: fastBackoff})
	ctx := testContext(t)
	if _, err := c.Expect(ctx, expect.Literal("first\n")); err != nil {
		t.Fatal(err)
	}
	close(reset)
	if _, err := c.Expect(ctx, expect.Literal("second\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendLine(ctx, "hello", SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := <-typed; got != "hello\n" {
		t.Errorf("server got %q, want %q", got, "hello\n")
	}
	gaps := rec.Events("console_gap")
	if len(gaps) != 1 || !strings.Contains(fmt.Sprint(gaps[0]["error"]), "reset") {
		t.Errorf("console_gap events = %v, want one naming the reset", gaps)
	}
	if got := capture.String(); got != "first\nsecond\n" {
		t.Errorf("capture = %q, want %q", got, "first\nsecond\n")
	}
}

// A secret the console knows from the start (the device's password, never
// typed) is masked in a timeout's tail even when the tail begins inside it,
// where only its last bytes show.
func TestTimeoutTailCutsKnownSecret(t *testing.T) {
	const secret = `p"a\ss<w>&'rd-of-the-bmc`
	line, _, c := simConsole(t, serialsim.Config{}, Options{TailSize: 32, Secrets: []string{secret}})
	ctx := testContext(t)
	// 20 bytes follow the secret: the 32-byte tail starts 12 bytes before
	// its end.
	fmt.Fprintf(line.Device(), "login: %s\r\nwelcome, admin\r\n=> ", secret)
	if _, err := c.Expect(ctx, expect.Literal("=> ")); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := c.Expect(tctx, expect.Literal("never"))
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Expect = %v, want a *TimeoutError", err)
	}
	tail := string(te.Tail)
	if !strings.HasPrefix(tail, redacted) || !strings.HasSuffix(tail, "welcome, admin\r\n=> ") {
		t.Errorf("timeout tail = %q, want it to start with %s, the rest of the secret masked", tail, redacted)
	}
	for k := 3; k <= len(secret); k++ {
		if part := secret[len(secret)-k:]; strings.Contains(err.Error(), part) || strings.Contains(err.Error(), strconv.Quote(part)[1:len(strconv.Quote(part))-1]) {
			t.Fatalf("Expect error %q holds the last %d bytes of the secret", err, k)
		}
	}
}

// refusing is a transport whose opens fail with err once the first ok
// opens have succeeded (over net.Pipe).
type refusing struct {
	ok  int
	err error

	mu    sync.Mutex
	opens int
	conns []net.Conn
}

func (r *refusing) String() string { return "refusing" }

func (r *refusing) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opens++
	if r.opens > r.ok {
		return nil, r.err
	}
	a, b := net.Pipe()
	r.conns = append(r.conns, b)
	return a, nil
}

func (r *refusing) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opens
}

// drop closes the far end of every connection handed out.
func (r *refusing) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

// authError is what ipmi.Error is to the console: a refusal that says it
// is permanent.
type authError struct{}

func (authError) Error() string   { return `device "d": open session: wrong user or password` }
func (authError) Permanent() bool { return true }

// TestStartStopsOnPermanentError: a BMC that refuses the password is not
// asked again.
func TestStartStopsOnPermanentError(t *testing.T) {
	tr := &refusing{err: fmt.Errorf("sol: %w", authError{})}
	c := New(tr, Options{Backoff: fastBackoff})
	defer c.Close()
	err := c.Start(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "wrong user or password") || builtins.ClassOf(err) != builtins.ClassInfra {
		t.Fatalf("Start = %v (class %s), want the infra error naming the refusal", err, builtins.ClassOf(err))
	}
	if n := tr.count(); n != 1 {
		t.Errorf("Start opened %d times, want 1", n)
	}
}

// TestStartRetryBudget: a transport that keeps failing is tried
// OpenAttempts times, however far away ctx's deadline is.
func TestStartRetryBudget(t *testing.T) {
	tr := &refusing{err: errors.New("connection refused")}
	c := New(tr, Options{Backoff: fastBackoff, OpenAttempts: 3})
	defer c.Close()
	if err := c.Start(testContext(t)); err == nil || !strings.Contains(err.Error(), "after 3 attempts: connection refused") {
		t.Fatalf("Start = %v, want the error after 3 attempts", err)
	}
	if n := tr.count(); n != 3 {
		t.Errorf("Start opened %d times, want 3", n)
	}
}

// TestReconnectStopsOnPermanentError: once the password is refused on a
// reconnection, a waiting Expect and Send fail at once with that reason.
func TestReconnectStopsOnPermanentError(t *testing.T) {
	tr := &refusing{ok: 1, err: fmt.Errorf("sol: %w", authError{})}
	c := start(t, tr, Options{Backoff: fastBackoff})
	ctx := testContext(t) // far away: the failure must not wait for it
	tr.drop()
	_, err := c.Expect(ctx, expect.Literal("never"))
	if err == nil || !strings.Contains(err.Error(), "wrong user or password") || builtins.ClassOf(err) != builtins.ClassInfra {
		t.Fatalf("Expect = %v (class %s), want the infra error naming the refusal", err, builtins.ClassOf(err))
	}
	if err := c.Send(ctx, "x", SendOptions{}); err == nil || !strings.Contains(err.Error(), "wrong user or password") {
		t.Errorf("Send = %v, want the refusal", err)
	}
	if n := tr.count(); n != 2 {
		t.Errorf("opened %d times, want 2", n)
	}
}
