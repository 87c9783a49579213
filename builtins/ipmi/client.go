package ipmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Defaults for the zero fields of lab.IPMI.
const (
	DefaultPort    = 623
	DefaultTimeout = 2 * time.Second
	DefaultRetries = 4
	// DefaultKeepalive: see lab.DefaultIPMIKeepalive.
	DefaultKeepalive = lab.DefaultIPMIKeepalive
)

// DefaultCipherSuites are tried in order when the device names none: 17
// (HMAC-SHA256, AES-CBC-128), then 3 (HMAC-SHA1, AES-CBC-128). basalt never
// asks the BMC for its suites (Get Channel Cipher Suites), which costs
// seconds per connect on real BMCs.
var DefaultCipherSuites = []int{17, 3}

// Options are the hooks of a Client. The zero value is usable.
type Options struct {
	// Emit records machine events ("ipmi" events: command, duration_ms,
	// completion_code, attempts, outcome). nil drops them.
	Emit func(typ string, fields map[string]any)
	// Log receives debug records; nil discards them.
	Log *slog.Logger
}

// Client is the Controller of a real BMC, over RMCP+ (IPMI v2.0 §13,
// "lanplus") with go-ipmi.
//
// It connects on first use and keeps its session for later calls. Each
// datagram waits at most lab.IPMI.Timeout (less when ctx ends sooner) and
// is sent again up to lab.IPMI.Retries times when no answer comes, which
// rides out UDP loss.
//
// BMCs end sessions that stay silent (IPMI v2.0 §6.12.15; OpenIPMI's
// ipmi_sim after 30 s, most BMCs after 60 s) and forget every session when
// they restart, and both then ignore the session's packets without a word.
// So the Client:
//   - keeps an idle session alive with Get Device ID every
//     lab.IPMI.Keepalive (go-ipmi's own keepalive, every 30 s, comes too
//     late for ipmi_sim); a keepalive left unanswered drops the session,
//     and the next call opens a new one at once;
//   - sends the first command on a session that has been silent for
//     longer than one datagram timeout once, and when no answer comes
//     within a few times the BMC's slowest recent exchange (the first sign
//     of a forgotten session) opens a new session beside it: the call goes on
//     on whichever answers first, so a forgotten session costs one session
//     open and one exchange, not a datagram timeout (see suspectLocked).
//
// go-ipmi's client is not reused after a failure: a new one is made for
// each session.
type Client struct {
	name string
	cfg  lab.IPMI
	emit func(string, map[string]any)
	log  *slog.Logger

	mu     sync.Mutex // serialises calls and keepalives; guards the fields below
	conn   *client.Client
	gate   *gate // conn's socket
	closed bool
	// answered is when the BMC last answered on conn.
	answered time.Time
	// slowest is about the longest exchange the BMC took lately (it
	// follows a longer one at once and decays by 1/16 per shorter one):
	// how long a live session may take to answer. ipmi_sim runs a script
	// for chassis commands; real BMCs take tens of milliseconds for some.
	slowest time.Duration
	// stopKeepalive ends the keepalive goroutine; nil while none runs.
	stopKeepalive chan struct{}

	udp *udpMux // the SOL transport's socket mux; nil: go-ipmi's own socket
}

var _ Controller = (*Client)(nil)

// NewClient returns a Client for the BMC of device name. It does not
// connect until the first call.
func NewClient(name string, cfg lab.IPMI, opts Options) *Client {
	cfg = withDefaults(cfg)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{name: name, cfg: cfg, emit: opts.Emit, log: log}
}

// withDefaults fills the zero fields of cfg. Retries 0 means the default;
// a negative value means no retries.
func withDefaults(cfg lab.IPMI) lab.IPMI {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if len(cfg.CipherSuites) == 0 {
		cfg.CipherSuites = DefaultCipherSuites
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	return cfg
}

// String names the BMC for messages, without secrets.
func (c *Client) String() string {
	return fmt.Sprintf("BMC of %q at %s", c.name, c.addr())
}

func (c *Client) addr() string {
	return net.JoinHostPort(c.cfg.Host, strconv.Itoa(c.cfg.Port))
}

// Power performs a chassis power action.
func (c *Client) Power(ctx context.Context, a Action) error {
	var ctl chassis.ChassisControl
	switch a {
	case On:
		ctl = chassis.ChassisControlPowerUp
	case Off:
		ctl = chassis.ChassisControlPowerDown
	case Reset:
		ctl = chassis.ChassisControlHardReset
	case Cycle:
		ctl = chassis.ChassisControlPowerCycle
	case Soft:
		ctl = chassis.ChassisControlSoftShutdown
	default:
		_, err := ParseAction(string(a))
		return builtins.Job(err)
	}
	command := "chassis control (power " + string(a) + ")"
	// A reset or cycle done twice is not done once: on a silent session it
	// is only sent once the session has proved alive (suspectLocked).
	once := a == Reset || a == Cycle
	return c.doOnce(ctx, command, once, func(ctx context.Context, ic *client.Client) error {
		if a == Reset || a == Cycle {
			// A reset or cycle of an off chassis is refused by some BMCs
			// and silently ignored by others (IPMI v2.0 Table 28-4 only
			// recommends powering up); either way the node would stay off.
			st, err := ic.GetChassisStatus(ctx)
			if err != nil {
				return err
			}
			if !st.PowerIsOn {
				ctl = chassis.ChassisControlPowerUp
			}
		}
		_, err := ic.ChassisControl(ctx, ctl)
		if err == nil || (a != On && a != Off && a != Soft) {
			return err
		}
		if _, ok := types.IsResponseError(err); !ok {
			return err
		}
		// Some BMCs refuse to power on what is on or off what is off.
		st, serr := ic.GetChassisStatus(ctx)
		if serr == nil && st.PowerIsOn == (a == On) {
			return nil
		}
		return err
	})
}

// PowerStatus reports whether the chassis power is on.
func (c *Client) PowerStatus(ctx context.Context) (bool, error) {
	var on bool
	err := c.do(ctx, "get chassis status", func(ctx context.Context, ic *client.Client) error {
		st, err := ic.GetChassisStatus(ctx)
		if err != nil {
			return err
		}
		on = st.PowerIsOn
		return nil
	})
	return on, err
}

// SetBootDevice sets the boot flags (Set System Boot Options, parameter 5,
// IPMI v2.0 §28.12 and Table 28-14) with the valid bit set.
func (c *Client) SetBootDevice(ctx context.Context, d Device, o BootOptions) error {
	var sel types.BootDeviceSelector
	switch d {
	case PXE:
		sel = types.BootDeviceSelectorForcePXE
	case Disk:
		sel = types.BootDeviceSelectorForceHardDrive
	case BIOS:
		sel = types.BootDeviceSelectorForceBIOSSetup
	case CDROM:
		sel = types.BootDeviceSelectorForceCDROM
	default:
		_, err := ParseDevice(string(d))
		return builtins.Job(err)
	}
	bootType := types.BIOSBootTypeLegacy
	if o.EFI {
		bootType = types.BIOSBootTypeEFI
	}
	command := "set boot device " + string(d)
	if o.Persistent {
		command += " (persistent)"
	}
	return c.do(ctx, command, func(ctx context.Context, ic *client.Client) error {
		return ic.SetBootDevice(ctx, sel, bootType, o.Persistent)
	})
}

// Close ends the session. Later calls fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.stopKeepalive != nil {
		close(c.stopKeepalive)
		c.stopKeepalive = nil
	}
	c.dropLocked(false)
	return nil
}

// keepalive runs while the Client is open: whenever the session has been
// silent for cfg.Keepalive it sends Get Device ID (IPMI v2.0 §20.1, which
// every BMC implements and ipmitool uses for the same purpose), which
// restarts the BMC's inactivity timer (§6.12.15).
func (c *Client) keepalive(stop <-chan struct{}) {
	t := time.NewTimer(c.cfg.Keepalive)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		if c.conn != nil && time.Since(c.answered) >= c.cfg.Keepalive {
			c.keepaliveLocked()
		}
		next := c.cfg.Keepalive
		if c.conn != nil {
			next = max(c.cfg.Keepalive-time.Since(c.answered), time.Millisecond)
		}
		c.mu.Unlock()
		t.Reset(next)
	}
}

// keepaliveLocked sends one keepalive and waits one datagram timeout for
// the answer: a live session answers at once, and a lost keepalive is
// cheap (the next call opens a session), whereas retrying here would hold
// up the job's next call. c.mu held.
func (c *Client) keepaliveLocked() {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.cfg.Timeout)
	defer cancel()
	c.gate.probe()
	_, err := c.conn.GetDeviceID(ctx)
	c.gate.end()
	if err == nil {
		c.answered = time.Now()
		c.log.Debug("ipmi keepalive", "device", c.name)
		return
	}
	if _, ok := types.IsResponseError(err); ok {
		c.answered = time.Now() // an answer all the same: the session lives
		return
	}
	// Only failures are events: a keepalive every few seconds of a long
	// deploy would drown the call events.
	e := c.newError("keepalive (get device ID)", err)
	c.event(map[string]any{
		"device":      c.name,
		"command":     "keepalive",
		"duration_ms": time.Since(start).Milliseconds(),
		"attempts":    1,
		"outcome":     "error",
		"error":       e.Error(),
	})
	c.log.Debug("ipmi keepalive failed; dropping the session", "device", c.name, "err", e)
	c.dropLocked(true)
}

// do runs fn on a session, opening one when needed, and records the call.
// fn may run twice (on a silent session and on a new one, when the first
// answer is not back in time): it must be safe to repeat, as a Get or a
// Set of the same value is.
func (c *Client) do(ctx context.Context, command string, fn func(context.Context, *client.Client) error) error {
	return c.doOnce(ctx, command, false, fn)
}

// doOnce is do; with once, fn is not safe to repeat, and a silent session
// is first probed with Get Device ID.
func (c *Client) doOnce(ctx context.Context, command string, once bool, fn func(context.Context, *client.Client) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	attempts, err := c.run(ctx, command, once, fn)
	fields := map[string]any{
		"device":      c.name,
		"command":     command,
		"duration_ms": time.Since(start).Milliseconds(),
		"attempts":    attempts,
	}
	if err == nil {
		fields["outcome"] = "ok"
		fields["completion_code"] = 0
	} else {
		fields["outcome"] = "error"
		fields["error"] = err.Error()
		var e *Error
		if errors.As(err, &e) && e.Answered {
			fields["completion_code"] = int(e.Code)
		}
	}
	c.event(fields)
	c.log.Debug("ipmi call", "device", c.name, "command", command, "attempts", attempts,
		"duration", time.Since(start), "err", err)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			// The job is being canceled; that is not the BMC's fault.
			return fmt.Errorf("device %q: %s: %w", c.name, command, context.Canceled)
		}
		return builtins.Infra(err)
	}
	return nil
}

// maxSessionAttempts bounds the sessions one call may open: a BMC that
// answers but keeps failing the handshake (a lost RAKP 4 makes the BMC
// refuse the repeated RAKP 3) gets a few fresh starts; one that does not
// answer at all gets none beyond its datagram retries.
const maxSessionAttempts = 4

func (c *Client) run(ctx context.Context, command string, once bool, fn func(context.Context, *client.Client) error) (attempts int, err error) {
	if c.closed {
		return 0, c.newError(command, errors.New("controller is closed"))
	}
	sessions := 0
	for {
		if cerr := ctx.Err(); cerr != nil {
			if err == nil {
				err = cerr
			}
			return attempts, c.newError(command, err)
		}
		attempts++
		fresh := false
		if c.conn == nil {
			sessions++
			fresh = true
			if oerr := c.openLocked(ctx); oerr != nil {
				err = oerr
				var e *Error
				if errors.As(oerr, &e) && (e.Auth || e.NoAnswer) || sessions >= maxSessionAttempts || ctx.Err() != nil {
					return attempts, oerr
				}
				continue
			}
		}
		// A session silent for longer than one datagram timeout may be
		// one the BMC has forgotten: the call gets one datagram's wait on
		// it. A session that answered within the last timeout is trusted
		// and a datagram lost on it is sent again on it: a new session
		// per lost datagram would leave the BMC's few session slots (IPMI
		// v2.0 §6.12.1 asks for only four) full of orphans.
		if !fresh && time.Since(c.answered) > c.cfg.Timeout {
			probe := fn
			if once {
				probe = getDeviceID
			}
			replaced, perr := c.suspectLocked(ctx, command, probe)
			if replaced {
				// A new session took over: fn runs there, counted as
				// the call's next attempt.
				continue
			}
			if _, answered := types.IsResponseError(perr); once && (perr == nil || answered) {
				// The probe proved the session alive: fn runs on it.
			} else if err = perr; err == nil {
				return attempts, nil
			} else {
				goto failed
			}
		}
		{
			t0 := time.Now()
			err = fn(ctx, c.conn)
			if err == nil {
				c.answeredAfter(time.Since(t0))
				return attempts, nil
			}
		}
	failed:
		if re, ok := types.IsResponseError(err); ok {
			c.answered = time.Now()
			cc := CompletionCode(re.CompletionCode())
			if cc.transient() && attempts <= c.cfg.Retries && sleepCtx(ctx, c.cfg.Timeout/4) == nil {
				continue
			}
			return attempts, c.newError(command, err)
		}
		// No answer, or an answer that makes no sense on this session: the
		// BMC may have dropped it. Start over on a new session, once.
		c.dropLocked(isNoAnswer(err))
		if fresh || sessions >= maxSessionAttempts {
			return attempts, c.newError(command, err)
		}
	}
}

// openLocked opens a session, trying the configured cipher suites in
// order, and makes it the Client's.
func (c *Client) openLocked(ctx context.Context) error {
	start := time.Now()
	ic, g, err := c.dial(ctx)
	if err != nil {
		return err
	}
	c.installLocked(ic, g, time.Since(start))
	return nil
}

// dial opens a session and records the attempt; it changes nothing of c
// (suspectLocked runs it beside a call on the current session).
func (c *Client) dial(ctx context.Context) (*client.Client, *gate, error) {
	start := time.Now()
	ic, err := client.NewClient(c.cfg.Host, c.cfg.Port, c.cfg.User, c.cfg.Password.Value())
	if err != nil {
		return nil, nil, c.newError("open session", err)
	}
	suites := make([]types.CipherSuiteID, len(c.cfg.CipherSuites))
	for i, s := range c.cfg.CipherSuites {
		suites[i] = types.CipherSuiteID(s)
	}
	// The socket: a gate (which can hold go-ipmi's resends back while a
	// silent session is probed), or the SOL transport's mux, which reads
	// the socket itself and has no probes.
	var g *gate
	ic.WithInterface(client.InterfaceLanplus).
		WithTimeout(c.cfg.Timeout).
		WithRetry(c.cfg.Retries).
		WithCipherSuiteID(suites...).
		WithMaxPrivilegeLevel(types.PrivilegeLevelAdministrator)
	if c.udp != nil {
		ic.WithUDPProxy(c.udp)
	} else {
		g = &gate{}
		ic.WithUDPProxy(g)
	}
	err = ic.Connect(ctx)
	fields := map[string]any{
		"device":        c.name,
		"command":       "open session",
		"duration_ms":   time.Since(start).Milliseconds(),
		"attempts":      1,
		"cipher_suites": c.cfg.CipherSuites,
	}
	if err != nil {
		closeQuietly(ic, c.cfg.Timeout)
		e := c.newError("open session", err)
		fields["outcome"] = "error"
		fields["error"] = e.Error()
		c.event(fields)
		return nil, nil, e
	}
	fields["outcome"] = "ok"
	c.event(fields)
	return ic, g, nil
}

// installLocked makes ic (over socket g) the session, opened in took (four
// exchanges: Open Session and RAKP 1-4, IPMI v2.0 §13.15-13.20).
func (c *Client) installLocked(ic *client.Client, g *gate, took time.Duration) {
	c.conn, c.gate = ic, g
	c.answered = time.Now()
	c.slowest = max(c.slowest, took/4)
	if c.cfg.Keepalive > 0 && c.stopKeepalive == nil && !c.closed {
		c.stopKeepalive = make(chan struct{})
		go c.keepalive(c.stopKeepalive)
	}
}

// getDeviceID is the probe of a silent session (IPMI v2.0 §20.1): every
// BMC implements it and it changes nothing.
func getDeviceID(ctx context.Context, ic *client.Client) error {
	_, err := ic.GetDeviceID(ctx)
	return err
}

// answeredAfter records an answer on the session that took d.
func (c *Client) answeredAfter(d time.Duration) {
	c.answered = time.Now()
	c.slowest = max(d, c.slowest-c.slowest/16)
}

// The wait for an answer on a silent session before a new one is opened
// beside it: suspectTimes the slowest recent exchange, never less than
// minSuspectWait (a loaded BMC's or dispatcher's scheduling jitter) nor
// more than a datagram timeout. A live session's answer then nearly always
// comes first, and the call runs once.
const (
	minSuspectWait = 100 * time.Millisecond
	suspectTimes   = 4
)

// suspectLocked runs fn (safe to repeat) once on the current session,
// which has been silent for longer than a datagram timeout, and so may be
// one the BMC has forgotten: BMCs drop idle sessions (§6.12.15) and forget
// all of them when they restart, and ignore a forgotten session's packets
// without a word. The gate lets one datagram out. If no answer comes
// within a few times the BMC's slowest recent exchange, a new session is
// opened beside it; whichever is first wins: an answer on the old session
// keeps it (the new one is closed), a new session up first replaces the
// old one, whose exchange is given up (fn then runs again on the new
// session). So a forgotten session costs that wait, one session open and
// one exchange, not a datagram timeout. replaced reports that the new
// session took over; err is fn's result otherwise.
func (c *Client) suspectLocked(ctx context.Context, command string, fn func(context.Context, *client.Client) error) (replaced bool, err error) {
	old, g := c.conn, c.gate
	g.probe()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	res := make(chan error, 1)
	go func() { res <- fn(fctx, old) }()
	wait := time.NewTimer(min(max(suspectTimes*c.slowest, minSuspectWait), c.cfg.Timeout))
	defer wait.Stop()
	type session struct {
		ic  *client.Client
		g   *gate
		err error
	}
	var (
		opened   chan session // the new session, once one is being opened
		openedAt time.Time
	)
	for {
		select {
		case err = <-res:
			silent := g.end()
			if err == nil || !silent {
				if err == nil {
					c.answeredAfter(time.Since(start))
				} else if _, ok := types.IsResponseError(err); ok {
					c.answered = time.Now()
				}
				if opened != nil {
					// Not needed after all: closed in the background,
					// with Close Session so that it holds no BMC slot.
					go func() {
						if s := <-opened; s.err == nil {
							closeQuietly(s.ic, c.cfg.Timeout)
						}
					}()
				}
				return false, err
			}
			// No answer within the one datagram's wait: the session is
			// dead; take the new one (opening one now if none was).
			c.log.Debug("ipmi session silent; opening a new one", "device", c.name, "command", command, "err", err)
			c.dropLocked(true)
			if opened == nil {
				return true, nil // run opens one
			}
			s := <-opened
			if s.err != nil {
				return true, nil // run tries again
			}
			c.installLocked(s.ic, s.g, time.Since(openedAt))
			return true, nil
		case <-wait.C:
			c.log.Debug("ipmi session silent; opening a new one beside it", "device", c.name, "command", command,
				"waited", time.Since(start))
			opened, openedAt = make(chan session, 1), time.Now()
			go func() {
				ic, ng, err := c.dial(ctx)
				opened <- session{ic, ng, err}
			}()
		case s := <-opened:
			if s.err != nil {
				// Keep waiting on the old session; nothing else to try.
				opened = nil
				continue
			}
			// The new session is up before the old one answered: the
			// old one is taken for dead. It may only be slow, so it is
			// closed with Close Session, in the background: a live
			// session left open would hold one of the BMC's few slots
			// (§6.12.1) until its timeout.
			cancel()
			<-res
			g.end()
			go closeQuietly(old, c.cfg.Timeout)
			c.conn, c.gate = nil, nil
			c.installLocked(s.ic, s.g, time.Since(openedAt))
			return true, nil
		}
	}
}

// dropLocked closes the current session, if any, without waiting long for
// the BMC. dead skips Close Session: the BMC ignores that session.
func (c *Client) dropLocked(dead bool) {
	if c.conn == nil {
		return
	}
	if dead {
		closeDead(c.conn)
	} else {
		closeQuietly(c.conn, c.cfg.Timeout)
	}
	c.conn, c.gate = nil, nil
}

// closeQuietly ends a go-ipmi client: Close Session (best effort, bounded)
// and its socket and keepalive goroutine. Each go-ipmi client is closed
// exactly once: a second Close panics.
func closeQuietly(ic *client.Client, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), min(d, 500*time.Millisecond))
	defer cancel()
	_ = ic.Close(ctx)
}

// closeDead ends a go-ipmi client whose session the BMC no longer answers:
// its socket and goroutine only. go-ipmi's Close always tries Close
// Session first; an ended context makes that attempt return at once.
func closeDead(ic *client.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = ic.Close(ctx)
}

func (c *Client) event(fields map[string]any) {
	if c.emit != nil {
		c.emit("ipmi", fields)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// gate is the UDP socket of one session (go-ipmi dials it through
// Dial). While a probe is on it lets one datagram out and refuses the
// datagrams after it until an answer arrives: go-ipmi's retries on a
// session the BMC may have forgotten never leave, and once the BMC has
// answered, the session is alive and retries flow again.
type gate struct {
	net.Conn

	mu       sync.Mutex
	probing  bool
	sent     int
	answered bool
}

// errProbe is the write a probe refuses.
var errProbe = errors.New("no answer on a silent session: not sending again")

// Dial makes gate a proxy.Dialer (golang.org/x/net/proxy) for go-ipmi.
func (g *gate) Dial(network, addr string) (net.Conn, error) {
	conn, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	g.Conn = conn
	return g, nil
}

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	if g.probing && !g.answered {
		if g.sent > 0 {
			g.mu.Unlock()
			return 0, errProbe
		}
		g.sent++
	}
	g.mu.Unlock()
	return g.Conn.Write(p)
}

func (g *gate) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n > 0 {
		g.mu.Lock()
		g.answered = true
		g.mu.Unlock()
	}
	return n, err
}

// probe starts letting one datagram out.
func (g *gate) probe() {
	if g == nil { // the SOL transport's mux owns the socket
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing, g.sent, g.answered = true, 0, false
}

// end ends a probe and reports whether a datagram went out and nothing
// came back.
func (g *gate) end() (silent bool) {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	silent = g.probing && g.sent > 0 && !g.answered
	g.probing = false
	return silent
}

// Error is a failed BMC command.
type Error struct {
	Device  string // device name
	Addr    string // BMC host:port
	Command string // "get chassis status", "open session", ...
	// Answered is true when the BMC answered with a completion code other
	// than success; Code holds it.
	Answered bool
	Code     CompletionCode
	// Auth is true when the session was refused for the user name or
	// password.
	Auth bool
	// NoAnswer is true when the BMC did not answer at all.
	NoAnswer bool
	Err      error

	secret string // redacted from the message, never shown
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "device %q: %s", e.Device, e.Command)
	switch {
	case e.Auth:
		b.WriteString(": authentication failed: wrong user or password, or the user lacks administrator privilege")
	case e.Answered:
		fmt.Fprintf(&b, ": BMC answered completion code %s", describe(e.Command, e.Code))
	case e.NoAnswer:
		fmt.Fprintf(&b, ": BMC at %s did not answer", e.Addr)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	s := b.String()
	if len(e.secret) >= 4 {
		s = strings.ReplaceAll(s, e.secret, "<redacted>")
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether trying again cannot help: the BMC refused the
// user name or password. Console reconnection stops on such an error.
func (e *Error) Permanent() bool { return e.Auth }

// newError classifies err, the failure of command.
func (c *Client) newError(command string, err error) *Error {
	e := &Error{Device: c.name, Addr: c.addr(), Command: command, Err: err, secret: c.cfg.Password.Value()}
	if re, ok := types.IsResponseError(err); ok {
		e.Answered = true
		e.Code = CompletionCode(re.CompletionCode())
		e.Err = nil // the code says it all; go-ipmi's text repeats it
	}
	e.Auth = isAuthFailure(err)
	if e.Auth {
		e.Err = fmt.Errorf("user %q", c.cfg.User)
	}
	if !e.Answered && !e.Auth && isNoAnswer(err) {
		e.NoAnswer = true
	}
	return e
}

// isAuthFailure reports whether err is a session refused for its user name
// or password. go-ipmi formats the errors of each cipher suite it tried
// with %v, so past the first layer only their text survives.
func isAuthFailure(err error) bool {
	if errors.Is(err, client.ErrRAKPAuthentication) {
		return true
	}
	var rs *types.RmcpStatusError
	if errors.As(err, &rs) {
		switch rs.StatusCode() {
		case types.RmcpStatusCodeUnauthorizedName, types.RmcpStatusCodeInvalidIntegrityCheckValue,
			types.RmcpStatusCodeUnauthorizedRoleOfPriLevel, types.RmcpStatusCodeInvalidRole:
			return true
		}
	}
	msg := err.Error()
	for _, s := range []string{
		client.ErrRAKPAuthentication.Error(),
		types.RmcpStatusCodeUnauthorizedName.String(),
		types.RmcpStatusCodeInvalidIntegrityCheckValue.String(),
		types.RmcpStatusCodeUnauthorizedRoleOfPriLevel.String(),
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isNoAnswer reports whether err means the BMC sent nothing back. An ICMP
// port unreachable (nothing listens at the BMC's address; a connected UDP
// socket reports it as ECONNREFUSED) counts: nothing answers there.
func isNoAnswer(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "no UDP datagram matched") ||
		strings.Contains(msg, "no matching IPMI response") ||
		strings.Contains(msg, "connection refused")
}
