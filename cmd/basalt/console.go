package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/power"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/basalt-lab/basalt/runtime/sim"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// The escape that ends a console session, typed at the start of a line:
// "~." as in ssh(1) and ipmitool's SOL. "~~" sends one "~"; anything else
// after "~" is sent as typed.
const escapeChar = '~'

// backlogSize is how much of the console a watcher that attaches late is
// shown first: the last 64 KiB, so that it sees the prompt it lands at.
const backlogSize = 64 << 10

func (a *app) consoleCmd() *cobra.Command {
	var labFlag string
	c := &cobra.Command{
		Use:   "console DEVICE",
		Short: "Attach the terminal to a device's console (~. detaches)",
		Long: `console attaches the terminal read-write to a lab device's console, whatever its
transport (IPMI SOL, a connection command, a TCP console server, the sim), and holds
the device's lock for the session, as a job does. Type ~. at the start of a line to
detach (~~ types one ~); Ctrl-C and everything else go to the device.

On a device a running job holds, console attaches read-only to that job's console
stream, served by the running basalt: it never takes the console from a job. A job
held after a failure (run --hold-on-failure) lends its console read-write.

Without a terminal (stdin a pipe) it works the same, for scripts; the session ends
at ~. or at the end of stdin.`,
		Example: `  basalt console highbank01
  printf 'uname -a\n~.' | basalt console sim01 --lab ./lab`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return a.console(labFlag, args[0])
		},
	}
	c.Flags().StringVar(&labFlag, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")
	return c
}

func (a *app) releaseCmd() *cobra.Command {
	var labFlag string
	c := &cobra.Command{
		Use:     "release DEVICE",
		Short:   "End the hold of a device a failed job kept (run --hold-on-failure)",
		Example: "  basalt release highbank01",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			lb, dev, err := resolveDevice(labFlag, args[0])
			if err != nil {
				return &exitError{code: exitCodeOf(err), err: err}
			}
			conn, err := dialConsole(lb, dev)
			if err != nil {
				return usagef("release %s: no basalt holds it: %v", dev.Name, err)
			}
			defer conn.Close()
			reply, err := request(conn, "release")
			if err != nil {
				return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("release %s: %w", dev.Name, err)}
			}
			if reply != "released" {
				return usagef("release %s: %s", dev.Name, reply)
			}
			fmt.Fprintf(a.stdout, "released %s: its cleanup runs now\n", dev.Name)
			return nil
		},
	}
	c.Flags().StringVar(&labFlag, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")
	return c
}

func (a *app) console(labFlag, name string) error {
	lb, dev, err := resolveDevice(labFlag, name)
	if err != nil {
		return &exitError{code: exitCodeOf(err), err: err}
	}
	fail := func(err error) error { return &exitError{code: exitCodeOf(err), err: err} }
	a.learnSecrets(lb, dev)
	if dev.File == "" {
		return usagef("console: the built-in sim device has no console outside a job; use basalt shell sim, or a lab device of type sim")
	}
	held, err := lockDevice(a.ctx, lb, dev, "basalt console", 0)
	var busy *lab.BusyError
	if errors.As(err, &busy) {
		return a.watch(lb, dev, busy.Holder)
	}
	if err != nil {
		return fail(err)
	}
	defer held.Release()

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	if dev.Type.Is("sim") && dev.IPMI.Host == "" {
		// A lab device of type sim is a node in this process: a fresh,
		// powered-off one (no PXE server: it cannot network-boot here).
		node, err := sim.Start(a.ctx, sim.Config{Device: dev})
		if err != nil {
			return fail(builtins.Infra(err))
		}
		closers = append(closers, func() { node.Close() })
		d := *dev
		d.IPMI = node.IPMI()
		dev = &d
		a.redact.Add(dev.IPMI.Password.Value())
	}
	if dev.Console.Transport == "" || dev.Console.Transport == "sol" {
		if dev.IPMI.Host == "" {
			return fail(builtins.Infra(fmt.Errorf("device %s: no console: SOL needs ipmi_host, and the device file sets no other console transport", dev.Name)))
		}
	}
	tr, err := consoleTransport(dev, nil, nil)
	if err != nil {
		return fail(err)
	}
	// The person's terminal answers the device's terminal requests.
	con := sol.New(tr, sol.Options{Secrets: dev.Secrets(), Capture: a.stdout, NoTermAnswers: true})
	ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
	err = con.Start(ctx)
	cancel()
	if err != nil {
		return fail(builtins.Infra(fmt.Errorf("console %s: %w", tr, err)))
	}
	closers = append(closers, func() { con.Close() })
	fmt.Fprintf(a.stderr, "basalt: attached to %s (%s); ~. detaches\r\n", dev.Name, tr)
	err = a.attach(a.ctx, con)
	fmt.Fprintf(a.stderr, "\r\nbasalt: detached from %s\r\n", dev.Name)
	return err
}

// attach sends the terminal's keys to con until ~. or the end of stdin;
// con's Capture already shows its output. A lost connection is said on
// stderr; the console reconnects by itself and the keys typed meanwhile
// wait for it.
func (a *app) attach(ctx context.Context, con *sol.Console) error {
	restore := rawTerminal(a.stdin)
	defer restore()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		losses := con.Losses()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if n := con.Losses(); n != losses {
				losses = n
				fmt.Fprintf(a.stderr, "\r\nbasalt: console %s lost; reconnecting (keys typed now wait for it)\r\n", con)
			}
		}
	}()
	keys := make(chan []byte)
	go func() {
		defer close(keys)
		e := &escaper{atLineStart: true}
		buf := make([]byte, 256)
		for {
			n, err := a.stdin.Read(buf)
			if n > 0 {
				out, detach := e.feed(buf[:n])
				if len(out) > 0 {
					select {
					case keys <- out:
					case <-ctx.Done():
						return
					}
				}
				if detach {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case k, ok := <-keys:
			if !ok {
				// Let the device answer the last line before detaching,
				// for scripts that pipe a command and ~.
				time.Sleep(300 * time.Millisecond)
				return nil
			}
			// The device's typing delay, as for jobs: a pasted line must
			// not outrun a bootloader that drops fast keys.
			if err := con.Send(ctx, string(k), sol.SendOptions{}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return &exitError{code: exitCodeOf(err), err: fmt.Errorf("send to console %s: %w", con, err)}
			}
		}
	}
}

// escaper finds the detach escape in typed bytes (see escapeChar).
type escaper struct {
	atLineStart bool
	pending     bool // a ~ at the start of a line, not yet sent
}

func (e *escaper) feed(p []byte) (out []byte, detach bool) {
	for _, b := range p {
		if e.pending {
			e.pending = false
			switch b {
			case '.':
				return out, true
			case escapeChar:
				out = append(out, escapeChar)
				e.atLineStart = false
				continue
			default:
				out = append(out, escapeChar)
			}
		} else if e.atLineStart && b == escapeChar {
			e.pending = true
			continue
		}
		out = append(out, b)
		e.atLineStart = b == '\r' || b == '\n'
	}
	return out, false
}

// rawTerminal puts stdin in raw mode when it is a terminal, so that Ctrl-C
// and every other key reach the device; it returns the function that
// restores the terminal.
func rawTerminal(stdin io.Reader) func() {
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	st, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return func() {}
	}
	return func() { term.Restore(int(f.Fd()), st) }
}

// consoleSocket is the unix socket beside the device's lock on which the
// basalt that holds it serves its console.
func consoleSocket(lb *lab.Lab, dev *lab.Device) string {
	dir := lab.DefaultLockDir()
	if lb != nil && lb.LockDir != "" {
		dir = lb.LockDir
	}
	return filepath.Join(dir, dev.Name+".console.sock")
}

func dialConsole(lb *lab.Lab, dev *lab.Device) (net.Conn, error) {
	return net.DialTimeout("unix", consoleSocket(lb, dev), 5*time.Second)
}

// request sends one request line and reads the one-line reply.
func request(conn net.Conn, req string) (string, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(conn, "%s\n", req); err != nil {
		return "", fmt.Errorf("send request: %w", err)
	}
	line, err := readLine(conn)
	if err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	return line, nil
}

// readLine reads up to a newline one byte at a time, so that nothing of
// the stream after it is read ahead.
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 4096 {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", errors.New("line too long")
}

// watch attaches to the console of the basalt that holds dev: read-only
// while its job runs, read-write while it holds a failed job.
func (a *app) watch(lb *lab.Lab, dev *lab.Device, holder lab.Holder) error {
	conn, err := dialConsole(lb, dev)
	if err != nil {
		return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("console %s: held by %s, which serves no console: %w", dev.Name, holder, err)}
	}
	defer conn.Close()
	reply, err := request(conn, "attach")
	if err != nil {
		return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("console %s: %w", dev.Name, err)}
	}
	rw := reply == "ok read-write"
	switch {
	case rw:
		fmt.Fprintf(a.stderr, "basalt: attached to %s, held by %s after its failure; ~. detaches\r\n", dev.Name, holder)
	case reply == "ok read-only":
		fmt.Fprintf(a.stderr, "basalt: %s is held by %s: watching its console read-only; ~. detaches\r\n", dev.Name, holder)
	default:
		return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("console %s: %s", dev.Name, reply)}
	}
	done := make(chan struct{})
	go func() {
		io.Copy(a.stdout, conn)
		close(done)
	}()
	restore := rawTerminal(a.stdin)
	defer restore()
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		e := &escaper{atLineStart: true}
		buf := make([]byte, 256)
		for {
			n, err := a.stdin.Read(buf)
			out, detach := e.feed(buf[:max(n, 0)])
			if rw && len(out) > 0 {
				if _, err := conn.Write(out); err != nil {
					return
				}
			}
			if detach || err != nil {
				return
			}
		}
	}()
	select {
	case <-stdinDone:
		if rw {
			time.Sleep(300 * time.Millisecond) // the device's answer to the last line
		}
	case <-done:
		// The job ended (its cleanup is done), or this watcher fell so
		// far behind that the job's basalt dropped it rather than wait.
		fmt.Fprintf(a.stderr, "\r\nbasalt: the console stream of %s ended: the job holding it ended, or this terminal fell behind\r\n", dev.Name)
		return nil
	case <-a.ctx.Done():
	}
	// Say we are done writing and wait (briefly) for the job's basalt to
	// close its end: it frees the read-write seat before it closes, so a
	// console attached right after this one returns gets the seat.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	fmt.Fprintf(a.stderr, "\r\nbasalt: detached from %s\r\n", dev.Name)
	return nil
}

// hub fans the console stream of a job out to watchers on the device's
// console socket. It is the bundle's Follow writer, so watchers get the
// bytes of console.log, secrets already masked. It never blocks the
// console: a watcher that does not keep up is dropped.
type hub struct {
	mu       sync.Mutex
	backlog  []byte
	watchers map[chan []byte]struct{}
	con      *sol.Console  // set once the console exists
	power    power.Backend // likewise, for `basalt power` during a hold
	held     chan struct{} // non-nil while a failed job is held
	release  chan struct{}
	writer   bool // a read-write session is attached
	ln       net.Listener
	path     string
}

func newHub() *hub {
	return &hub{watchers: map[chan []byte]struct{}{}, release: make(chan struct{}, 1)}
}

func (h *hub) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.backlog = append(h.backlog, p...)
	if over := len(h.backlog) - backlogSize; over > 0 {
		h.backlog = append(h.backlog[:0], h.backlog[over:]...)
	}
	for w := range h.watchers {
		select {
		case w <- append([]byte(nil), p...):
		default:
			delete(h.watchers, w)
			close(w)
		}
	}
	return len(p), nil
}

// serve listens on path (removing a stale socket: whoever calls serve
// holds the device lock, so no live basalt serves it).
func (h *hub) serve(path string) error {
	if len(path) > 104 {
		return fmt.Errorf("serve console: socket path %s is longer than a unix socket allows", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("serve console: %w", err)
	}
	// Whoever may use the lab's devices (the lock directory's group) may
	// watch, and type during a hold; nobody else.
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("serve console: %w", err)
	}
	h.ln, h.path = ln, path
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h.handle(c)
		}
	}()
	return nil
}

func (h *hub) close() {
	if h.ln != nil {
		h.ln.Close()
		os.Remove(h.path)
	}
	h.mu.Lock()
	for w := range h.watchers {
		delete(h.watchers, w)
		close(w)
	}
	h.mu.Unlock()
}

func (h *hub) handle(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := readLine(c)
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	req = strings.TrimSpace(req)
	if what, ok := strings.CutPrefix(req, "power "); ok {
		c.Write([]byte(h.powerRequest(what) + "\n"))
		return
	}
	switch req {
	case "release":
		h.mu.Lock()
		held := h.held != nil
		h.mu.Unlock()
		if !held {
			fmt.Fprintf(c, "not held: its job is still running (a hold begins when a job run with --hold-on-failure fails)\n")
			return
		}
		select {
		case h.release <- struct{}{}:
		default:
		}
		fmt.Fprintf(c, "released\n")
	case "attach":
		h.mu.Lock()
		rw := h.held != nil && !h.writer && h.con != nil
		if rw {
			h.writer = true
		}
		w := make(chan []byte, 1024)
		backlog := append([]byte(nil), h.backlog...)
		h.watchers[w] = struct{}{}
		con, held := h.con, h.held
		if !rw {
			held = nil // a watcher stays until the job ends
		}
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			if _, ok := h.watchers[w]; ok {
				delete(h.watchers, w)
				close(w)
			}
			if rw {
				h.writer = false
			}
			h.mu.Unlock()
		}()
		mode := "read-only"
		if rw {
			mode = "read-write"
			defer con.PersonAttached()()
		}
		if _, err := fmt.Fprintf(c, "ok %s\n", mode); err != nil {
			return
		}
		if _, err := c.Write(backlog); err != nil {
			return
		}
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			buf := make([]byte, 256)
			for {
				n, err := c.Read(buf)
				if n > 0 && rw {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					con.Send(ctx, string(buf[:n]), sol.SendOptions{})
					cancel()
				}
				if err != nil {
					return
				}
			}
		}()
		for {
			select {
			case p, ok := <-w:
				if !ok {
					return
				}
				if _, err := c.Write(p); err != nil {
					return
				}
			case <-gone:
				return
			case <-held:
				return // the hold ended: the cleanup takes the console back
			}
		}
	default:
		fmt.Fprintf(c, "unknown request %q\n", req)
	}
}

// powerRequest serves `basalt power DEVICE ACTION` while a failed job is
// held: the person debugging it may reset the board, through the job's
// own power backend (which starts a console epoch as in the job). A
// running job's power is never touched.
func (h *hub) powerRequest(what string) string {
	h.mu.Lock()
	held, b := h.held != nil, h.power
	h.mu.Unlock()
	if !held || b == nil {
		return "not held"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if what == "status" {
		on, err := b.Status(ctx)
		if err != nil {
			return "error: power status: " + err.Error()
		}
		if on {
			return "ok on"
		}
		return "ok off"
	}
	act, err := power.ParseAction(what)
	if err != nil {
		return "error: " + err.Error()
	}
	if err := b.Power(ctx, act); err != nil {
		return fmt.Sprintf("error: power %s: %v", act, err)
	}
	return "ok"
}

// hold keeps a failed job's device as it is until d has passed, ctx is
// done or `basalt release` asks, lending its console read-write meanwhile.
// announce is called once the console is lent, to say how to attach.
func (h *hub) hold(ctx context.Context, d time.Duration, announce func()) string {
	h.mu.Lock()
	ch := make(chan struct{})
	h.held = ch
	h.mu.Unlock()
	announce()
	defer func() {
		h.mu.Lock()
		h.held = nil
		h.mu.Unlock()
		close(ch)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return "the hold's deadline passed"
	case <-ctx.Done():
		return "canceled"
	case <-h.release:
		return "basalt release"
	}
}
