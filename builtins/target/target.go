package target

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

// Console is what the target needs of the serial console; *sol.Console
// implements it. Besides typing and matching, a console tells what it
// lost, which decides whether a line may be typed again:
//
//   - Losses is how many times the connection was lost (and made again)
//     so far; the console loses no output across a reconnect, but
//     keystrokes typed meanwhile may never reach the shell;
//   - Gaps is how much output was lost inside a connection so far (a SOL
//     BMC that gave a packet up, IPMI v2.0 §15.9); 0 for a transport that
//     cannot lose output.
//
// Both only grow. A console that never loses anything returns 0 from both.
type Console interface {
	Expect(ctx context.Context, patterns ...expect.Pattern) (expect.Match, error)
	Send(ctx context.Context, text string, o sol.SendOptions) error
	SendLine(ctx context.Context, text string, o sol.SendOptions) error
	SetMode(m sol.Mode)
	Losses() uint64
	Gaps() uint64
}

var _ Console = (*sol.Console)(nil)

// Publisher serves dispatcher files to the target over HTTP.
// *pxe.Server implements it.
//
// Publish serves the file at path (a dispatcher path) under name and returns
// its URL; it must answer Range requests. Unpublish stops serving name.
type Publisher interface {
	Publish(name, path string) (string, error)
	Unpublish(name string)
}

// Config configures a Target. Console is required; the other fields have
// the defaults stated beside them.
type Config struct {
	Console Console
	// Publisher serves files for push, deploy_image and kexec; without one
	// those fail with an infrastructure error.
	Publisher Publisher
	// Prompt is a regular expression matching the shell prompt. Run waits
	// for it after each command so the shell is ready for the next one;
	// "" skips the wait. A target that runs both the master image and the
	// deployed system needs both prompts: JoinPrompts(dt.MasterPrompt,
	// dt.ShellPrompt); a prompt that does not match costs PromptWait per
	// command.
	Prompt string
	// IP is the target's address; "" takes the device fact "ip", else
	// asks the target (`ip -4 addr show`, then ifconfig).
	IP string
	// HTTPClient is the dispatcher's client for fetch; default a client
	// with no proxy (go-cleanhttp's defaults).
	HTTPClient *http.Client
	// HTTPRetries is go-retryablehttp's RetryMax for each request of a
	// fetch; default 4. Resumes after a dropped body are counted apart:
	// a fetch gives up after 5 resumes in a row that brought no byte.
	HTTPRetries int
	// CacheDir is the artifact cache (package artifact) for push, deploy
	// and kexec sources given as URLs, shared with pxe; without it, URL
	// sources are an infrastructure error. HTTPClient and HTTPRetries serve
	// those downloads too.
	CacheDir string
	// KernelMessage is a regular expression; whole console lines it
	// matches between a command's markers are kernel messages and left out
	// of the command's output (they stay in Raw). Default
	// DefaultKernelMessage; "-" keeps every line.
	KernelMessage string
	// PromptWait bounds the wait for the prompt after a command's end
	// marker (default 10s); a prompt that never comes (the command changed
	// PS1) is logged, not an error.
	PromptWait time.Duration
	// Token names this target's command markers (BASALT-TOKEN-N-S) and
	// seeds the nonces and ports target.fetch picks; default random. A
	// replay (basalt replay) gives the recorded run's, which every
	// target_run event holds, so that the replayed job types what the
	// recorded one typed.
	Token string
	// Emit records machine events (target_ip, target_run, target_fetch,
	// target_push, deploy_progress, target_kexec, and package artifact's
	// artifact_download, artifact_cached, artifact_resume); nil discards them.
	Emit func(typ string, fields map[string]any)
	Log  *slog.Logger // nil discards
}

// Target drives the shell of the booted system through its console. Its
// methods are safe for concurrent use; commands run one at a time.
type Target struct {
	cfg    Config
	log    *slog.Logger
	prompt *expect.Pattern
	kernel *regexp.Regexp
	token  string
	rng    *mrand.Rand // fetch's nonces and ports, seeded from token; held by mu
	cfgErr error

	mu     sync.Mutex // one command on the console at a time
	seq    uint64
	ip     string // discovered from the console; reset by Kexec
	factIP string // the device fact "ip"

	cacheMu sync.Mutex
	byStat  map[string]string  // "path|size|mtime|compression" -> digest key
	digests map[string]*digest // "sha256|compression" of the source -> digest
}

// New returns a target over cfg.Console. An invalid Prompt or
// KernelMessage makes every method fail with a job error.
func New(cfg Config) *Target {
	t := &Target{cfg: cfg, log: cfg.Log, byStat: map[string]string{}, digests: map[string]*digest{}}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if cfg.PromptWait <= 0 {
		t.cfg.PromptWait = 10 * time.Second
	}
	if cfg.Prompt != "" {
		p, err := expect.Regexp(cfg.Prompt)
		if err != nil {
			t.cfgErr = fmt.Errorf("prompt: %w", err)
		} else {
			t.prompt = &p
		}
	}
	switch k := cfg.KernelMessage; k {
	case "-":
	case "":
		t.kernel = regexp.MustCompile(DefaultKernelMessage)
	default:
		re, err := regexp.Compile(k)
		if err != nil {
			t.cfgErr = errors.Join(t.cfgErr, fmt.Errorf("kernel message pattern: %w", err))
		}
		t.kernel = re
	}
	t.token = cfg.Token
	if t.token == "" {
		var b [4]byte
		rand.Read(b[:])
		t.token = hex.EncodeToString(b[:])
	}
	t.rng = mrand.New(mrand.NewChaCha8(sha256.Sum256([]byte("basalt target " + t.token))))
	return t
}

func (t *Target) emit(typ string, fields map[string]any) {
	if t.cfg.Emit != nil {
		t.cfg.Emit(typ, fields)
	}
}

// SetFacts gives the target the device's facts: "ip" is used when
// Config.IP is not set. (fetch picks its httpd's port on the target.)
func (t *Target) SetFacts(facts map[string]any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := facts["ip"]; ok && t.cfg.IP == "" {
		if s, ok := v.(string); ok && net.ParseIP(s) != nil {
			t.factIP = s
			// The address the target knows without asking its console
			// (basalt replay gives it back).
			t.emit("target_ip", map[string]any{"ip": s, "from": "fact"})
		}
	}
}

// JoinPrompts returns a regular expression matching any of the non-empty
// prompt expressions given.
func JoinPrompts(prompts ...string) string {
	var alts []string
	for _, p := range prompts {
		if p != "" {
			alts = append(alts, "(?:"+p+")")
		}
	}
	return strings.Join(alts, "|")
}

// Result is what a command did.
type Result struct {
	// Output is what the command printed (standard output and error as
	// the console showed them), "\r\n" turned into "\n", without the
	// kernel messages printed meanwhile.
	Output string
	// Raw is Output with the kernel messages left in.
	Raw      string
	ExitCode int
}

// RunError is a command that exited with a non-zero status when it had
// to succeed.
type RunError struct {
	Cmd      string
	ExitCode int
	Output   string
}

func (e *RunError) Error() string {
	msg := fmt.Sprintf("command %q exited with status %d", e.Cmd, e.ExitCode)
	if tl := tail(e.Output, 512); tl != "" {
		msg += "; output ends: " + tl
	}
	return msg
}

// TimeoutError is a command that ran out of time. Its message names the
// command and the time it had, not the console's framing markers; the
// console's last bytes are in the wrapped *sol.TimeoutError (and in
// console.log).
type TimeoutError struct {
	Cmd string
	// Timeout is the timeout= the command was given, when that was what
	// ran out (target.run sets it); else Left is the time the command had
	// until the stage's or job's deadline.
	Timeout time.Duration
	Left    time.Duration
	Started bool // the command's start marker was seen: it ran
	// Output is what the command printed before it was given up (as
	// Result.Output), when it started: its whole lines, as a line cut
	// short may read as something else.
	Output string
	Err    error // the console's *sol.TimeoutError
}

func (e *TimeoutError) Error() string {
	what := "did not finish"
	if !e.Started {
		what = "did not start"
	}
	if e.Timeout > 0 {
		return fmt.Sprintf("command %q %s within its timeout=%s", e.Cmd, what, e.Timeout)
	}
	return fmt.Sprintf("command %q %s in the %s the stage had left (no timeout= given)", e.Cmd, what, e.Left.Round(time.Millisecond))
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// timedOut returns the *TimeoutError of a command whose console expect
// ran out of time, or nil for any other error.
func (t *Target) timedOut(ctx context.Context, cmd string, start time.Time, started bool, err error) error {
	var te *sol.TimeoutError
	if !errors.As(err, &te) {
		return nil
	}
	var left time.Duration
	if dl, ok := ctx.Deadline(); ok {
		left = dl.Sub(start)
	}
	e := &TimeoutError{Cmd: cmd, Left: left, Started: started, Err: err}
	if started {
		p := string(te.Pending)
		i := strings.LastIndexByte(p, '\n')
		e.Output = output(p[:i+1], t.kernel)
	}
	return e
}

// maxLine bounds each typed line: a tty in canonical mode drops what is
// typed past 4095 characters.
const maxLine = 4000

// Run runs cmd in the target's shell and returns its output and exit
// status. With check, a non-zero status is a *RunError (class device).
// When ctx ends first the command is interrupted with ^C and Run fails
// with the console's *sol.TimeoutError (class device).
func (t *Target) Run(ctx context.Context, cmd string, check bool) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.run(ctx, cmd, check)
}

func (t *Target) run(ctx context.Context, cmd string, check bool) (Result, error) {
	if t.cfgErr != nil {
		return Result{}, builtins.Job(t.cfgErr)
	}
	if t.cfg.Console == nil {
		return Result{}, builtins.Infra(errors.New("no console to reach the target's shell"))
	}
	t.seq++
	f := newFrame(t.token, t.seq)
	line := f.line(cmd)
	for _, l := range strings.Split(line, "\n") {
		if len(l) > maxLine {
			return Result{}, builtins.Job(fmt.Errorf("command line of %d characters is longer than a console line (%d); push a script and run it", len(l), maxLine))
		}
	}
	start := time.Now()
	c := t.cfg.Console
	c.SetMode(sol.ModeShell)
	if err := t.typeAndStart(ctx, c, line, f); err != nil {
		t.interrupt(ctx)
		if te := t.timedOut(ctx, cmd, start, false, err); te != nil {
			return Result{}, te
		}
		return Result{}, fmt.Errorf("command %q did not start: %w", cmd, err)
	}
	m, err := t.expectEnd(ctx, c, f)
	if err != nil {
		t.interrupt(ctx)
		if te := t.timedOut(ctx, cmd, start, true, err); te != nil {
			return Result{}, te
		}
		return Result{}, fmt.Errorf("command %q did not finish: %w", cmd, err)
	}
	code, err := status(m.Groups)
	if err != nil {
		return Result{}, builtins.Device(fmt.Errorf("command %q: %w", cmd, err))
	}
	if m.Dropped > 0 {
		t.log.Warn("command output longer than the console window; its start is lost", "dropped_bytes", m.Dropped)
	}
	res := Result{Raw: output(m.Before, nil), ExitCode: code}
	res.Output = output(m.Before, t.kernel)
	t.waitPrompt(ctx)
	t.emit("target_run", map[string]any{"token": t.token, "exit_code": code, "output_bytes": len(res.Output), "duration_ms": time.Since(start).Milliseconds()})
	if check && code != 0 {
		return res, builtins.Device(&RunError{Cmd: cmd, ExitCode: code, Output: res.Output})
	}
	return res, nil
}

// restartWait is how long typeAndStart waits for the start marker before it
// checks whether the console lost its connection meanwhile; the command's
// end is watched for output gaps as often.
var restartWait = 3 * time.Second

// maxRetypes bounds how often a line is typed again after connection
// losses: a console that keeps losing what is typed is unusable, and
// waiting out the stage's deadline would only hide that.
const maxRetypes = 3

// consoleState is what a console has lost so far.
type consoleState struct{ losses, gaps uint64 }

func stateOf(c Console) consoleState { return consoleState{losses: c.Losses(), gaps: c.Gaps()} }

// typeAndStart types the framed command line and waits for its start
// marker. Keystrokes typed as the console loses its connection (a BMC
// closing the SOL session) may never reach the shell — often just the final
// newline. The start marker is the first thing the line prints, and the
// console loses no output across a reconnect, so while it has not appeared
// the line has not run: after a loss, erase what the shell may hold (Ctrl-U)
// and type the line again, at most maxRetypes times. Output lost inside a
// connection (a gap) breaks that reasoning — the marker may be what was
// lost — so a gap ends the attempt at once: typing again could run the
// command twice.
func (t *Target) typeAndStart(ctx context.Context, c Console, line string, f frame) error {
	first := stateOf(c)
	seen := first
	if err := c.SendLine(ctx, line, sol.SendOptions{}); err != nil {
		return fmt.Errorf("type: %w", err)
	}
	retypes := 0
	for {
		wait, cancel := context.WithTimeout(ctx, restartWait)
		_, err := c.Expect(wait, f.startPattern())
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		now := stateOf(c)
		if now.gaps != seen.gaps {
			return builtins.Infra(fmt.Errorf("console lost output (%d gaps, %d connection losses since the line was typed); not typing it again, it may have run",
				now.gaps-first.gaps, now.losses-first.losses))
		}
		if now.losses == seen.losses {
			continue
		}
		seen = now
		if retypes == maxRetypes {
			return builtins.Infra(fmt.Errorf("console unusable: its connection was lost %d times while the line was typed; gave up after %d retypes (%d output gaps)",
				now.losses-first.losses, retypes, now.gaps-first.gaps))
		}
		retypes++
		t.emit("target_retype", map[string]any{"reason": "console connection lost while typing", "retype": retypes})
		if err := c.Send(ctx, "\x15", sol.SendOptions{}); err != nil {
			return fmt.Errorf("erase line: %w", err)
		}
		if err := c.SendLine(ctx, line, sol.SendOptions{}); err != nil {
			return fmt.Errorf("retype: %w", err)
		}
	}
}

// expectEnd waits for the command's end marker. The console's output gaps
// are watched every restartWait: once output is lost the marker may never
// come, and the command's whole timeout would pass for nothing.
func (t *Target) expectEnd(ctx context.Context, c Console, f frame) (expect.Match, error) {
	gaps := c.Gaps()
	wctx, cancel := context.WithCancelCause(ctx)
	// The watcher ends before expectEnd returns: nothing of it outlives
	// the call (its ticker reads restartWait once, here).
	watched := make(chan struct{})
	defer func() { cancel(nil); <-watched }()
	every := restartWait
	go func() {
		defer close(watched)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
				if n := c.Gaps(); n != gaps {
					cancel(builtins.Infra(fmt.Errorf("console lost output while the command ran (%d gaps); its end cannot be seen", n-gaps)))
					return
				}
			}
		}
	}()
	m, err := c.Expect(wctx, f.endPattern())
	if err != nil && ctx.Err() == nil {
		if cause := context.Cause(wctx); cause != nil && cause != context.Canceled {
			return m, cause
		}
	}
	return m, err
}

// waitPrompt consumes the prompt printed after a command, so that a later
// sol.expect of the prompt does not match this one.
func (t *Target) waitPrompt(ctx context.Context) {
	if t.prompt == nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, t.cfg.PromptWait)
	defer cancel()
	if _, err := t.cfg.Console.Expect(pctx, *t.prompt); err != nil {
		t.log.Warn("no shell prompt after a command", "prompt", t.cfg.Prompt, "error", err)
	}
}

// interrupt types ^C so that a command that ran out of time does not hold
// the shell; it has a few seconds of its own since ctx is over.
func (t *Target) interrupt(ctx context.Context) {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := t.cfg.Console.Send(ictx, "\x03", sol.SendOptions{}); err != nil {
		t.log.Warn("could not interrupt the command", "error", err)
	}
}

// IP returns the target's IPv4 address: Config.IP, the device fact "ip",
// or what `ip -4 addr show` (else ifconfig) reports for the first
// interface other than lo.
func (t *Target) IP(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr(ctx)
}

func (t *Target) addr(ctx context.Context) (string, error) {
	if t.cfg.IP != "" {
		return t.cfg.IP, nil
	}
	if t.factIP != "" {
		return t.factIP, nil
	}
	if t.ip != "" {
		return t.ip, nil
	}
	res, err := t.run(ctx, "ip -4 addr show", false)
	if err != nil {
		return "", err
	}
	ip := parseIPAddr(res.Output)
	if ip == "" {
		if res, err = t.run(ctx, "ifconfig", false); err != nil {
			return "", err
		}
		ip = parseIfconfig(res.Output)
	}
	if ip == "" {
		return "", builtins.Device(fmt.Errorf("no IPv4 address on the target's interfaces; ip said: %s", tail(res.Output, 300)))
	}
	t.ip = ip
	return ip, nil
}

// parseIPAddr finds the first IPv4 address of `ip -4 addr show` output
// that is not on lo and not of host scope.
func parseIPAddr(out string) string {
	dev := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(line, " ") && strings.HasSuffix(f[0], ":") {
			dev = strings.TrimSuffix(f[1], ":")
			continue
		}
		if len(f) < 2 || f[0] != "inet" || dev == "lo" || strings.Contains(line, "scope host") {
			continue
		}
		ip, _, err := net.ParseCIDR(f[1])
		if err != nil {
			ip = net.ParseIP(f[1])
		}
		if ip = ip.To4(); ip != nil {
			return ip.String()
		}
	}
	return ""
}

// parseIfconfig finds the first IPv4 address of ifconfig output (busybox
// "inet addr:A.B.C.D" or net-tools "inet A.B.C.D") not on lo.
func parseIfconfig(out string) string {
	dev := ""
	for _, line := range strings.Split(out, "\n") {
		if line != "" && line[0] != ' ' && line[0] != '\t' {
			dev = strings.TrimSuffix(strings.Fields(line)[0], ":")
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" || dev == "lo" {
				continue
			}
			s := strings.TrimPrefix(f[i+1], "addr:")
			if i+1 < len(f) && s == "" && i+2 < len(f) {
				s = f[i+2]
			}
			if ip := net.ParseIP(s).To4(); ip != nil {
				return ip.String()
			}
		}
	}
	return ""
}
