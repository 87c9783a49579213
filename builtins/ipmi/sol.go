package ipmi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/transport"
	"github.com/bougou/go-ipmi/pkg/types"
)

// ErrSOLClosedByBMC is what a SOL connection's Read returns once the BMC
// has deactivated the payload (IPMI v2.0 Table 15-2, status bit 4): another
// console took it over, or the BMC dropped it.
var ErrSOLClosedByBMC = errors.New("SOL session closed by BMC")

// SOLOptions tune a SOL transport. The zero value is usable.
type SOLOptions struct {
	// KeepAlive is how often an idle session is kept alive with Get Device
	// ID, as ipmitool does; some BMCs (OpenIPMI's ipmi_sim among them)
	// drop SOL sessions that carry nothing else. Default 15s.
	KeepAlive time.Duration
	// Poll is how often the console asks the BMC for output it has not
	// pushed. Default 100ms.
	Poll time.Duration
	// Emit records "ipmi" events for activations and session ends.
	Emit func(typ string, fields map[string]any)
	// Log receives debug records; nil discards them.
	Log *slog.Logger
}

// SOL is the Serial-over-LAN console of a device (IPMI v2.0 §15, §24). It
// implements the sol.Transport interface of package builtins/sol: each Open
// starts an RMCP+ session of its own, activates the SOL payload and returns
// the console's byte stream.
type SOL struct {
	name string
	cfg  lab.IPMI
	opts SOLOptions
	log  *slog.Logger
}

// NewSOL returns the SOL transport of device name's BMC.
func NewSOL(name string, cfg lab.IPMI, opts SOLOptions) *SOL {
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SOL{name: name, cfg: withDefaults(cfg), opts: opts, log: log}
}

// String names the transport without secrets: "sol 127.0.0.1:623".
func (s *SOL) String() string {
	return "sol " + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

func (s *SOL) event(fields map[string]any) {
	if s.opts.Emit != nil {
		fields["device"] = s.name
		s.opts.Emit("ipmi", fields)
	}
}

// Open starts a session and activates SOL on it. A payload left active by
// an earlier console of ours (one that crashed or lost its network) is
// deactivated first, as `ipmitool sol deactivate` would.
func (s *SOL) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	start := time.Now()
	// Reuse the Client's session setup and error words, not its keepalive:
	// the SOL session has its own (SOLOptions.KeepAlive) and the session
	// leaves with the returned connection.
	cfg := s.cfg
	cfg.Keepalive = -1
	c := NewClient(s.name, cfg, Options{Log: s.log})
	if err := c.openLocked(ctx); err != nil {
		s.event(map[string]any{"command": "activate SOL", "outcome": "error", "error": err.Error(),
			"duration_ms": time.Since(start).Milliseconds()})
		return nil, fmt.Errorf("sol: %w", err)
	}
	ic := c.conn
	if err := activateSOL(ctx, ic); err != nil {
		closeQuietly(ic, s.cfg.Timeout)
		e := c.newError("activate SOL", err)
		s.event(map[string]any{"command": "activate SOL", "outcome": "error", "error": e.Error(),
			"duration_ms": time.Since(start).Milliseconds()})
		return nil, fmt.Errorf("sol: %w", e)
	}
	s.event(map[string]any{"command": "activate SOL", "outcome": "ok",
		"duration_ms": time.Since(start).Milliseconds()})
	return s.start(ic, payloadOwner(ctx, ic)), nil
}

// payloadOwner returns the BMC session ID owning SOL instance 1 (Get Payload
// Instance Info, IPMI v2.0 §24.5), or 0 when the BMC does not say.
func payloadOwner(ctx context.Context, ic *client.Client) uint32 {
	info, err := ic.GetPayloadInstanceInfo(ctx, types.PayloadTypeSOL, 1)
	if err != nil {
		return 0
	}
	return info.SessionID
}

func solRequest() *transport.ActivatePayloadRequest {
	return &transport.ActivatePayloadRequest{
		PayloadType:          types.PayloadTypeSOL,
		PayloadInstance:      1,
		EnableEncryption:     true,
		EnableAuthentication: true,
	}
}

func activateSOL(ctx context.Context, ic *client.Client) error {
	req := solRequest()
	_, err := ic.ActivatePayload(ctx, req)
	if re, ok := types.IsResponseError(err); ok {
		switch re.CompletionCode() {
		case types.CodeActivatePayloadAlreadyActive:
			// Force the stale activation off (IPMI v2.0 §24.2: a session
			// with enough privilege may deactivate another's payload).
			_, _ = ic.DeactivatePayload(ctx, &transport.DeactivatePayloadRequest{
				PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
			_, err = ic.ActivatePayload(ctx, req)
		case types.CodeActivatePayloadCannotActivateWithEncryption:
			req.EnableEncryption = false
			_, err = ic.ActivatePayload(ctx, req)
		}
	}
	return err
}

// start runs the SOL stream of an activated session.
func (s *SOL) start(ic *client.Client, owner uint32) *solConn {
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	c := &solConn{
		sol:    s,
		ic:     ic,
		cancel: cancel,
		inW:    inW,
		out:    make(chan []byte, 64),
		done:   make(chan struct{}),
	}
	go func() {
		err := ic.SOLStream(ctx, inR, outWriter{c, ctx}, &client.SOLStreamOptions{PollInterval: s.opts.Poll})
		if err != nil && ctx.Err() == nil && !isDeactivation(err) && s.deactivated(ctx, ic, owner) {
			err = errDeactivated
		}
		c.finish(ctx, err)
		cancel() // stops keepAlive
		inR.CloseWithError(c.reason())
	}()
	go c.keepAlive(ctx)
	return c
}

// errDeactivated marks a stream that ended because the BMC deactivated the
// payload.
var errDeactivated = errors.New("SOL payload deactivated")

// isDeactivation reports whether err says the BMC deactivated the payload:
// go-ipmi saw the "deactivating" status bit, or we found the payload
// inactive afterwards.
func isDeactivation(err error) bool {
	return err != nil && (errors.Is(err, errDeactivated) || strings.Contains(err.Error(), "SOL deactivation"))
}

// deactivated asks the BMC whether the SOL payload is still active, after
// the stream failed. A BMC that deactivates the payload stops answering SOL
// packets, and its one "deactivating" packet is easily lost (go-ipmi drops
// it when it does not acknowledge the packet in flight), so silence on SOL
// with a live session means the BMC closed it. owner is the session that
// activated the payload (0 if unknown): a payload now owned by another
// session was taken over.
func (s *SOL) deactivated(ctx context.Context, ic *client.Client, owner uint32) bool {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout*time.Duration(s.cfg.Retries+1))
	defer cancel()
	if owner != 0 {
		info, err := ic.GetPayloadInstanceInfo(pctx, types.PayloadTypeSOL, 1)
		return err == nil && info.SessionID != owner
	}
	st, err := ic.GetPayloadActivationStatus(pctx, types.PayloadTypeSOL)
	return err == nil && !st.Instance01Activated
}

// solConn is one activated SOL session.
type solConn struct {
	sol    *SOL
	ic     *client.Client
	cancel context.CancelFunc
	inW    *io.PipeWriter
	out    chan []byte   // console output, closed when the stream ends
	done   chan struct{} // closed when the stream has ended
	rest   []byte        // output taken from out, not yet read

	mu     sync.Mutex
	err    error // why the stream ended
	closed bool
	once   sync.Once
}

// outWriter receives the console output of go-ipmi's SOL stream.
// It blocks while the reader lags (the BMC then holds and resends its
// output), until the connection is closed.
type outWriter struct {
	c   *solConn
	ctx context.Context // the stream's; canceled by Close
}

func (w outWriter) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	select {
	case w.c.out <- b:
		return len(p), nil
	case <-w.ctx.Done():
		return 0, io.ErrClosedPipe
	}
}

// finish records why the stream ended and wakes readers.
func (c *solConn) finish(ctx context.Context, err error) {
	c.mu.Lock()
	switch {
	case c.closed:
		c.err = io.ErrClosedPipe
	case isDeactivation(err):
		c.err = fmt.Errorf("sol: %s: %w", c.sol, ErrSOLClosedByBMC)
	case ctx.Err() != nil && c.err != nil:
		// keepAlive already said why.
	case err == nil:
		c.err = fmt.Errorf("sol: %s: SOL session ended", c.sol)
	default:
		c.err = fmt.Errorf("sol: %s: SOL session lost: %w", c.sol, err)
	}
	e := c.err
	closed := c.closed
	c.mu.Unlock()
	c.once.Do(func() { close(c.done) })
	if !closed {
		c.sol.event(map[string]any{"command": "SOL session", "outcome": "error", "error": e.Error()})
		c.sol.log.Debug("sol: stream ended", "device", c.sol.name, "err", e)
	}
}

// keepAlive sends Get Device ID while the stream runs, as ipmitool does
// (its SOL_KEEPALIVE_TIMEOUT, 15 s).
func (c *solConn) keepAlive(ctx context.Context) {
	t := time.NewTicker(c.sol.opts.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		kctx, cancel := context.WithTimeout(ctx, c.sol.cfg.Timeout*time.Duration(c.sol.cfg.Retries+1))
		_, err := c.ic.GetDeviceID(kctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.mu.Lock()
			if c.err == nil {
				c.err = fmt.Errorf("sol: %s: SOL session lost: keepalive: %w", c.sol, err)
			}
			c.mu.Unlock()
			c.cancel()
			return
		}
	}
}

// Read returns console output. Once the session is over it returns the
// reason: ErrSOLClosedByBMC (wrapped) when the BMC deactivated SOL.
func (c *solConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.rest) == 0 {
		select {
		case b := <-c.out:
			c.rest = b
		case <-c.done:
			select {
			case b := <-c.out: // output that arrived before the end
				c.rest = b
			default:
				return 0, c.reason()
			}
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *solConn) reason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return io.EOF
	}
	return c.err
}

// Write sends keystrokes to the console, in order.
func (c *solConn) Write(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, c.reason()
	default:
	}
	n, err := c.inW.Write(p)
	if err != nil {
		return n, c.reason()
	}
	return n, nil
}

// Close deactivates SOL and ends the session. It unblocks a pending Read.
func (c *solConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.inW.CloseWithError(io.ErrClosedPipe)
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), min(c.sol.cfg.Timeout, time.Second))
	_, _ = c.ic.DeactivatePayload(ctx, &transport.DeactivatePayloadRequest{
		PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
	cancel()
	closeQuietly(c.ic, c.sol.cfg.Timeout)
	return nil
}
