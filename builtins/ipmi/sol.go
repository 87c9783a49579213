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
	"sync/atomic"
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

	skipAcks atomic.Int32 // tests: BMC packets left unacknowledged on purpose
	// lastSeq is the sequence number of the last keystroke packet of our
	// latest console. OpenIPMI's ipmi_sim keeps the last sequence number it
	// acknowledged across activations (lanserv/sol.c: ipmi_sol_activate
	// resets neither it nor its own) and takes a new console's first packet
	// bearing that number for a retransmission: acknowledged, its data
	// dropped. Each console of ours therefore goes on from where the one
	// before stopped.
	lastSeq atomic.Uint32
}

// NewSOL returns the SOL transport of device name's BMC.
func NewSOL(name string, cfg lab.IPMI, opts SOLOptions) *SOL {
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
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
	mux := &udpMux{}
	c.udp = mux
	if err := c.openLocked(ctx); err != nil {
		s.event(map[string]any{"command": "activate SOL", "outcome": "error", "error": err.Error(),
			"duration_ms": time.Since(start).Milliseconds()})
		return nil, fmt.Errorf("sol: %w", err)
	}
	ic := c.conn
	t0 := time.Now()
	res, err := activateSOL(ctx, ic)
	rtt := time.Since(t0)
	if err != nil {
		closeQuietly(ic, s.cfg.Timeout)
		e := c.newError("activate SOL", err)
		s.event(map[string]any{"command": "activate SOL", "outcome": "error", "error": e.Error(),
			"duration_ms": time.Since(start).Milliseconds()})
		return nil, fmt.Errorf("sol: %w", e)
	}
	s.event(map[string]any{"command": "activate SOL", "outcome": "ok",
		"duration_ms": time.Since(start).Milliseconds()})
	// Inbound payload size (Table 24-2) bounds the packets we send; the
	// 4-byte SOL header is part of it. ipmi_sim announces 32.
	maxChars := int(res.InboundPayloadSize) - 4
	if maxChars <= 0 || maxChars > 251 {
		maxChars = min(max(int(res.InboundPayloadSize), 28), 251)
	}
	return s.start(ic, mux, payloadOwner(ctx, ic), maxChars, rtt), nil
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

func activateSOL(ctx context.Context, ic *client.Client) (*transport.ActivatePayloadResponse, error) {
	req := solRequest()
	res, err := ic.ActivatePayload(ctx, req)
	if re, ok := types.IsResponseError(err); ok {
		switch re.CompletionCode() {
		case types.CodeActivatePayloadAlreadyActive:
			// Force the stale activation off (IPMI v2.0 §24.2: a session
			// with enough privilege may deactivate another's payload).
			_, _ = ic.DeactivatePayload(ctx, &transport.DeactivatePayloadRequest{
				PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
			res, err = ic.ActivatePayload(ctx, req)
		case types.CodeActivatePayloadCannotActivateWithEncryption:
			req.EnableEncryption = false
			res, err = ic.ActivatePayload(ctx, req)
		}
	}
	if err == nil && res == nil {
		res = &transport.ActivatePayloadResponse{}
	}
	return res, err
}

// start runs the SOL stream of an activated session.
func (s *SOL) start(ic *client.Client, mux *udpMux, owner uint32, maxChars int, rtt time.Duration) *solConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &solConn{
		sol:      s,
		ic:       ic,
		mux:      mux,
		cancel:   cancel,
		done:     make(chan struct{}),
		pkts:     make(chan *types.SOLPayloadPacket, 256),
		kick:     make(chan struct{}, 1),
		maxChars: maxChars,
		rto:      clampRTO(4 * rtt),
		owner:    owner,
	}
	c.lastRecv.Store(time.Now().UnixNano())
	c.cond = sync.NewCond(&c.mu)
	mux.setSOL(func(b []byte) {
		var res types.SOLPayloadResponse
		// go-ipmi decrypts the payload with the session's keys.
		if err := ic.ParseRmcpResponse(ctx, b, types.CommandSOLPayload, &res); err != nil {
			s.log.Debug("sol: undecodable SOL packet dropped", "device", s.name, "err", err)
			return
		}
		select {
		case c.pkts <- &res.SOLPayloadPacket:
		default: // the engine is hopelessly behind; the BMC retransmits
		}
	})
	go func() {
		err := c.engine(ctx)
		if err != nil && ctx.Err() == nil && !isDeactivation(err) && s.deactivated(ctx, ic, owner) {
			err = errDeactivated
		}
		mux.setSOL(nil)
		c.finish(ctx, err)
		cancel() // stops keepAlive
	}()
	go c.keepAlive(ctx)
	return c
}

// Timing of the console side of SOL. IPMI v2.0 §15.11 leaves the remote
// console's retry policy to the console; the BMC's own (SOL configuration
// parameter 4, Table 26-5) defaults to a few retries a few hundred
// milliseconds apart. basalt retransmits an unacknowledged keystroke packet
// after a few round-trip times, and gives up only after many retries: a
// console on a lossy network should slow down, not fail.
const (
	minRTO         = 20 * time.Millisecond
	maxRTO         = time.Second
	maxRetransmits = 30
	// pollFast and pollIdle pace the polls sent to BMCs that answer them
	// (a SOL packet from the console is answered with any output pending;
	// go-ipmi's BMC, basalt's own, does). Polls recover output whose pushed
	// packet was lost long before the BMC's retry timer would; right after
	// traffic they go every pollFast (the BMC's 10 ms pump tick would add
	// 10-20 ms to each burst of output), later every pollIdle.
	pollFast   = 5 * time.Millisecond
	pollIdle   = 100 * time.Millisecond
	activeSpan = time.Second
	// A BMC that has answered none of the first pollProbe polls does not
	// answer polls (OpenIPMI's ipmi_sim ignores SOL packets that carry no
	// data and acknowledge nothing new); polling stops and output relies
	// on the BMC's pushes and retransmissions.
	pollProbe = 10
	// deadAfter is how long a BMC may stay silent on SOL before the console
	// asks whether the payload is still ours: a polled BMC's "deactivating"
	// packet may have been lost, and ipmi_sim sends none (see keepAlive).
	deadAfter = 2 * time.Second
)

func clampRTO(d time.Duration) time.Duration { return min(max(d, minRTO), maxRTO) }

// nextSeq advances a SOL packet sequence number: 1 to 15, 0 is reserved
// for packets that carry no data (IPMI v2.0 Table 15-2).
func nextSeq(s uint8) uint8 { return s%15 + 1 }

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
	gone, err := s.payloadGone(ctx, ic, owner)
	return err == nil && gone
}

// payloadGone asks the BMC whether SOL instance 1 is no longer ours: owned
// by another session (Get Payload Instance Info, IPMI v2.0 §24.5; 0 once
// deactivated) or, when the owner is unknown, inactive (Get Payload
// Activation Status, §24.4). err is the request's failure.
func (s *SOL) payloadGone(ctx context.Context, ic *client.Client, owner uint32) (bool, error) {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout*time.Duration(s.cfg.Retries+1))
	defer cancel()
	if owner != 0 {
		info, err := ic.GetPayloadInstanceInfo(pctx, types.PayloadTypeSOL, 1)
		if err != nil {
			return false, err
		}
		return info.SessionID != owner, nil
	}
	st, err := ic.GetPayloadActivationStatus(pctx, types.PayloadTypeSOL)
	if err != nil {
		return false, err
	}
	return !st.Instance01Activated, nil
}

// solConn is one activated SOL session. Its engine goroutine owns the
// §15.9 packet state; Read and Write meet it through mu.
type solConn struct {
	sol    *SOL
	ic     *client.Client
	mux    *udpMux
	cancel context.CancelFunc
	done   chan struct{} // closed when the stream has ended
	pkts   chan *types.SOLPayloadPacket
	kick   chan struct{} // keystrokes queued

	maxChars int           // characters per packet the BMC accepts
	rto      time.Duration // retransmission timeout (engine only)
	lastRecv atomic.Int64  // when the last SOL packet came, UnixNano
	owner    uint32        // BMC session owning the payload (0: unknown)
	answers  atomic.Bool   // the BMC answers polls (the engine then checks the payload)

	mu     sync.Mutex
	cond   *sync.Cond // signalled when rx grows or the stream ends
	rx     []byte     // console output not yet read
	tx     []byte     // keystrokes not yet sent
	err    error      // why the stream ended
	ended  bool
	closed bool
	gaps   uint64
	resent uint64 // BMC packets received again (their acknowledgement was lost)
	once   sync.Once
}

// Gaps returns how many times console output was lost inside this
// session: the BMC gave up retransmitting a packet (a sequence number
// skipped) or said it dropped characters (Table 15-2, status bit 3).
func (c *solConn) Gaps() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gaps
}

// send transmits one SOL packet on the session.
func (c *solConn) send(ctx context.Context, p types.SOLPayloadPacket) error {
	r, err := c.ic.BuildRmcpRequest(ctx, &types.SOLPayloadRequest{SOLPayloadPacket: p})
	if err != nil {
		return fmt.Errorf("build SOL packet: %w", err)
	}
	if err := c.mux.write(r.Pack()); err != nil {
		return fmt.Errorf("send SOL packet: %w", err)
	}
	return nil
}

// engine runs the console side of IPMI v2.0 §15.9-§15.11 until the session
// ends: output is delivered and acknowledged as each packet arrives (a
// retransmission of a packet already taken is acknowledged again, not
// delivered twice); keystrokes go out one packet at a time and are sent
// again, same sequence number and same data, until the BMC acknowledges
// them; output the BMC gave up on is counted as a gap.
func (c *solConn) engine(ctx context.Context) error {
	var (
		inSeq    uint8                         // last BMC packet taken (0: none yet)
		inCount  uint8                         // characters taken from it
		outSeq   = uint8(c.sol.lastSeq.Load()) // our last data packet's sequence number
		pending  []byte
		sentAt   time.Time
		firstAt  time.Time // first transmission of pending, for the RTT
		retries  int
		lastRecv = time.Now()
		lastAct  = time.Now()
		lastPoll time.Time
		ackedAt  time.Time // when inSeq was last acknowledged
		lastData time.Time // when the last data packet came
		polls    int       // polls sent before the BMC first answered one
		answers  bool      // the BMC answers polls
		polling  = true
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ack := func() types.SOLPayloadPacket {
		return types.SOLPayloadPacket{AckedSequenceNumber: inSeq, AcceptedCharacterCount: inCount}
	}
	transmit := func() error {
		p := ack()
		p.SequenceNumber = outSeq
		p.CharacterData = pending
		sentAt = time.Now()
		return c.send(ctx, p)
	}
	startNext := func() error {
		if pending != nil {
			return nil
		}
		c.mu.Lock()
		n := min(len(c.tx), c.maxChars)
		if n == 0 {
			c.mu.Unlock()
			return nil
		}
		pending = append([]byte(nil), c.tx[:n]...)
		c.tx = c.tx[n:]
		c.mu.Unlock()
		outSeq = nextSeq(outSeq)
		c.sol.lastSeq.Store(uint32(outSeq))
		retries = 0
		firstAt = time.Now()
		lastAct = firstAt
		return transmit()
	}
	for {
		now := time.Now()
		var wait time.Duration = time.Hour
		if pending != nil {
			wait = c.rto - now.Sub(sentAt)
		}
		if polling {
			// Polls keep their own cadence: other traffic does not
			// push them back.
			iv := pollIdle
			if now.Sub(lastAct) < activeSpan {
				iv = pollFast
			}
			wait = min(wait, lastPoll.Add(iv).Sub(now))
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.kick:
			if err := startNext(); err != nil {
				return err
			}
		case p := <-c.pkts:
			lastRecv = time.Now()
			c.lastRecv.Store(lastRecv.UnixNano())
			if p.SequenceNumber == 0 && pending == nil && polls > 0 {
				// An acknowledgement-only packet while we have sent no
				// data packet answers an acknowledgement-only packet of
				// ours: this BMC answers polls.
				answers = true
				c.answers.Store(true)
			}
			if p.ControlByte&0x10 != 0 {
				// Table 15-2 status bit 4: SOL deactivating.
				return errDeactivated
			}
			if pending != nil && p.AckedSequenceNumber == outSeq && p.AckedSequenceNumber != 0 {
				n := int(p.AcceptedCharacterCount)
				switch {
				case p.NACK && n == 0:
					// The BMC cannot take characters now (Table 15-3);
					// the retransmission timer tries again.
				case n >= len(pending):
					if retries == 0 {
						c.rto = clampRTO(4 * time.Since(firstAt))
					}
					pending = nil
					// Typed characters are echoed at once: ask for the
					// echo a millisecond from now rather than a poll
					// period.
					lastPoll = time.Now().Add(time.Millisecond - pollFast)
				default:
					// Partial acceptance: the rest goes as a new packet.
					rest := pending[n:]
					pending = nil
					c.mu.Lock()
					c.tx = append(append([]byte(nil), rest...), c.tx...)
					c.mu.Unlock()
				}
				if pending == nil {
					if err := startNext(); err != nil {
						return err
					}
				}
			}
			seq := p.SequenceNumber
			if seq == 0 {
				break // acknowledgement only
			}
			lastAct = lastRecv
			lastData = lastRecv
			if seq == inSeq {
				c.mu.Lock()
				c.resent++
				c.mu.Unlock()
				// A retransmission: our acknowledgement was lost. Taking
				// only what we took before keeps the count the BMC will
				// act on; any characters added to it come again in the
				// BMC's next packet. A copy arriving within about a round
				// trip of our acknowledgement crossed it on the way (a
				// BMC answering another packet of ours with the data it
				// holds): acknowledging it too would start a second
				// exchange beside the first, and each such copy one more,
				// until the BMC's queue overflows.
				if time.Since(ackedAt) < max(pollFast, c.rto/4) {
					break
				}
				ackedAt = time.Now()
				if err := c.send(ctx, ack()); err != nil {
					return err
				}
				break
			}
			if (inSeq != 0 && seq != nextSeq(inSeq)) || p.ControlByte&0x08 != 0 {
				c.gap(inSeq, seq, p.ControlByte&0x08 != 0)
			}
			data := p.CharacterData
			if len(data) > 255 {
				data = data[:255] // the accepted count is one byte
			}
			c.deliver(data)
			inSeq, inCount = seq, uint8(len(data))
			ackedAt = time.Now()
			if c.sol.skipAcks.Load() > 0 && c.sol.skipAcks.Add(-1) >= 0 {
				ackedAt = time.Time{}
				break // as if the acknowledgement were lost
			}
			if err := c.send(ctx, ack()); err != nil {
				return err
			}
		case <-timer.C:
			now := time.Now()
			if pending != nil && now.Sub(sentAt) >= c.rto {
				retries++
				if retries > maxRetransmits {
					return fmt.Errorf("keystrokes not acknowledged after %d retransmissions", maxRetransmits)
				}
				c.rto = clampRTO(2 * c.rto)
				if err := transmit(); err != nil {
					return err
				}
				continue
			}
			if !polling {
				continue
			}
			iv := pollIdle
			if now.Sub(lastAct) < activeSpan {
				iv = pollFast
			}
			if now.Sub(lastPoll) < iv || now.Sub(lastData) < time.Millisecond {
				// Not yet; or packets are flowing, and a poll would only
				// bring a copy of what is already on its way.
				continue
			}
			lastPoll = now
			if !answers {
				// Only a poll sent while the BMC had nothing to push can
				// tell: the answer is then an acknowledgement-only packet.
				if pending == nil && now.Sub(lastAct) > pollIdle {
					polls++
				}
				if polls > pollProbe {
					polling = false
					continue
				}
			} else if now.Sub(lastRecv) > deadAfter {
				if c.sol.deactivated(ctx, c.ic, 0) {
					return errDeactivated
				}
				lastRecv = now
			}
			// A poll: an acknowledgement-only packet repeating the last
			// acknowledgement, which is true whatever the BMC is sending.
			if err := c.send(ctx, ack()); err != nil {
				return err
			}
		}
	}
}

// gap records output lost inside the session.
func (c *solConn) gap(after, got uint8, overrun bool) {
	c.mu.Lock()
	c.gaps++
	c.mu.Unlock()
	why := fmt.Sprintf("BMC packet %d followed packet %d", got, after)
	if overrun {
		why = "BMC reported dropped characters (SOL status bit 3)"
	}
	c.sol.log.Warn("sol: console output lost", "device", c.sol.name, "reason", why)
	if c.sol.opts.Emit != nil {
		c.sol.opts.Emit("console_gap", map[string]any{"device": c.sol.name, "transport": c.sol.String(),
			"reason": why, "inside_session": true})
	}
}

func (c *solConn) deliver(b []byte) {
	if len(b) == 0 {
		return
	}
	c.mu.Lock()
	c.rx = append(c.rx, b...)
	c.cond.Broadcast()
	c.mu.Unlock()
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
	c.ended = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.once.Do(func() { close(c.done) })
	if !closed {
		c.sol.event(map[string]any{"command": "SOL session", "outcome": "error", "error": e.Error()})
		c.sol.log.Debug("sol: stream ended", "device", c.sol.name, "err", e)
	}
}

// keepAlive sends Get Device ID while the stream runs, as ipmitool does
// (its SOL_KEEPALIVE_TIMEOUT, 15 s). On a BMC that does not answer polls
// it also watches the payload: OpenIPMI's ipmi_sim, when another session
// deactivates SOL (lanserv/sol.c, ipmi_sol_deactivate), sends the old
// console no "deactivating" packet (Table 15-2, status bit 4) and keeps its
// session open: it only stops sending SOL packets and ignores ours. So
// after deadAfter without a SOL packet the console asks whether the
// payload is still its own, at most once per deadAfter; never while
// packets flow, when extra requests would only crowd the BMC's queue.
func (c *solConn) keepAlive(ctx context.Context) {
	t := time.NewTicker(min(c.sol.opts.KeepAlive, deadAfter/2))
	defer t.Stop()
	var lastCheck, lastKeep time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// SOL packets from the BMC prove the session alive, and ours keep
		// it so; a Get Device ID among hundreds of SOL packets may also
		// fall outside the BMC's session sequence window (IPMI v2.0
		// §6.12.13, 16 behind) when retried, so it is only sent when the
		// BMC has been quiet.
		now := time.Now()
		since := now.Sub(time.Unix(0, c.lastRecv.Load()))
		if since >= deadAfter && !c.answers.Load() && now.Sub(lastCheck) >= deadAfter {
			lastCheck = now
			gone, err := c.sol.payloadGone(ctx, c.ic, c.owner)
			if err == nil && gone {
				c.mu.Lock()
				if c.err == nil {
					c.err = fmt.Errorf("sol: %s: %w", c.sol, ErrSOLClosedByBMC)
				}
				c.mu.Unlock()
				c.cancel()
				return
			}
			if err == nil {
				lastKeep = now // an answered request in the session keeps it alive too
			}
		}
		if since < c.sol.opts.KeepAlive || now.Sub(lastKeep) < c.sol.opts.KeepAlive {
			continue
		}
		lastKeep = now
		start := time.Now()
		kctx, cancel := context.WithTimeout(ctx, c.sol.cfg.Timeout*time.Duration(c.sol.cfg.Retries+1))
		_, err := c.ic.GetDeviceID(kctx)
		cancel()
		if err != nil && ctx.Err() == nil && c.lastRecv.Load() < start.UnixNano() {
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

// Read returns console output as soon as a packet brings it. Once the
// session is over and its output read, it returns the reason:
// ErrSOLClosedByBMC (wrapped) when the BMC deactivated SOL.
func (c *solConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.rx) == 0 && !c.ended {
		c.cond.Wait()
	}
	if len(c.rx) == 0 {
		if c.err == nil {
			return 0, io.EOF
		}
		return 0, c.err
	}
	n := copy(p, c.rx)
	c.rx = c.rx[n:]
	if len(c.rx) == 0 {
		c.rx = nil
	}
	return n, nil
}

// reason says why the stream ended; c.mu held.
func (c *solConn) reason() error {
	if c.err == nil {
		return io.EOF
	}
	return c.err
}

// Write queues keystrokes; the engine sends them in order, one packet in
// flight at a time, retransmitted until acknowledged.
func (c *solConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.ended {
		err := c.reason()
		c.mu.Unlock()
		return 0, err
	}
	c.tx = append(c.tx, p...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(p), nil
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
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), min(c.sol.cfg.Timeout, time.Second))
	_, _ = c.ic.DeactivatePayload(ctx, &transport.DeactivatePayloadRequest{
		PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
	cancel()
	closeQuietly(c.ic, c.sol.cfg.Timeout)
	return nil
}
