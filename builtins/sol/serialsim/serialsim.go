// Package serialsim simulates a serial line between a device and its
// console server or BMC, in process.
//
// The device end ([Line.Device]) writes the device's output and reads the
// keystrokes it receives; the host end ([Line.Host]) reads the output and
// types. Like a BMC, the line holds output produced while nobody reads, up
// to a limit, dropping the oldest bytes beyond it (never reordering). Like
// Highbank's bootloader and iPXE over SOL, it can drop keystrokes typed
// faster than an interval ([Line.SetDropFast]).
//
// [Transport] gives a console transport over a line, one connection at a
// time, with [Port.DropNow] to force a connection loss.
package serialsim

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// DefaultBuffer is the output a line holds when Config.Buffer is 0.
const DefaultBuffer = 1 << 20

// Config is what a Line is built from. The zero value never drops keystrokes and
// holds DefaultBuffer bytes of output.
type Config struct {
	// TypeInterval: while drop-fast is on, a keystroke arriving less than
	// this after the previous accepted one is dropped. 0 = never drop.
	TypeInterval time.Duration
	// Buffer is how much unread device output is held; older output is
	// dropped beyond it, as a UART without flow control overruns. Default
	// DefaultBuffer.
	Buffer int
	// OnOverflow, when set, is told of every such drop (the bytes dropped
	// and the total so far), so that the loss is reported, never silent.
	// It is called without the line's lock held.
	OnOverflow func(dropped, total int64)
}

// Line is a simulated serial line. Its methods are safe for concurrent use.
type Line struct {
	opts Config

	mu          sync.Mutex
	cond        *sync.Cond
	out         []byte // device output not yet read by the host
	in          []byte // keystrokes not yet read by the device
	dropFast    bool
	lastKey     time.Time
	overflow    int64
	keysDropped int64
	closed      bool
}

// ErrClosed is returned by operations on a closed line or connection.
var ErrClosed = errors.New("serialsim: closed")

// New returns a line.
func New(o Config) *Line {
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	l := &Line{opts: o}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// SetDropFast switches the bootloader input mode on or off: while on,
// keystrokes closer together than Config.TypeInterval are dropped.
func (l *Line) SetDropFast(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropFast = on
	l.lastKey = time.Time{}
}

// KeysDropped returns how many keystrokes were dropped for coming too fast.
func (l *Line) KeysDropped() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keysDropped
}

// Overflow returns how many bytes of output were dropped because nobody
// read them in time.
func (l *Line) Overflow() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.overflow
}

// Close closes the line: reads return io.EOF once drained, writes fail.
func (l *Line) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.cond.Broadcast()
	return nil
}

// Device returns the device end: Write is device output, Read returns the
// keystrokes received.
func (l *Line) Device() io.ReadWriter { return deviceEnd{l} }

// Host returns the host end: Read returns device output, Write types.
func (l *Line) Host() io.ReadWriter { return hostEnd{l} }

type deviceEnd struct{ l *Line }

func (d deviceEnd) Write(p []byte) (int, error) {
	l := d.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	l.out = append(l.out, p...)
	over := len(l.out) - l.opts.Buffer
	if over > 0 {
		l.out = append(l.out[:0], l.out[over:]...)
		l.overflow += int64(over)
	}
	total := l.overflow
	l.cond.Broadcast()
	if over > 0 && l.opts.OnOverflow != nil {
		l.mu.Unlock()
		l.opts.OnOverflow(int64(over), total)
		l.mu.Lock()
	}
	return len(p), nil
}

func (d deviceEnd) Read(p []byte) (int, error) {
	l := d.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.in) == 0 && !l.closed {
		l.cond.Wait()
	}
	if len(l.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.in)
	l.in = append(l.in[:0], l.in[n:]...)
	return n, nil
}

type hostEnd struct{ l *Line }

func (h hostEnd) Read(p []byte) (int, error) { return h.l.readOutput(p, nil) }

func (h hostEnd) Write(p []byte) (int, error) { return h.l.type_(p, nil) }

// readOutput reads device output; it returns ErrClosed without consuming
// anything once c is closed, so no byte is lost with a dropped connection.
func (l *Line) readOutput(p []byte, c *conn) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.out) == 0 && !l.closed && (c == nil || !c.closed) {
		l.cond.Wait()
	}
	if c != nil && c.closed {
		return 0, ErrClosed
	}
	if len(l.out) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.out)
	l.out = append(l.out[:0], l.out[n:]...)
	return n, nil
}

func (l *Line) type_(p []byte, c *conn) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || c != nil && c.closed {
		return 0, ErrClosed
	}
	now := time.Now()
	for _, b := range p {
		if l.dropFast && l.opts.TypeInterval > 0 && !l.lastKey.IsZero() && now.Sub(l.lastKey) < l.opts.TypeInterval {
			l.keysDropped++
			continue
		}
		l.lastKey = now
		l.in = append(l.in, b)
	}
	l.cond.Broadcast()
	return len(p), nil
}

// Port is a console transport over a line (it implements sol.Transport).
// Like SOL, one connection is active at a time: opening a new one closes
// the previous one.
type Port struct {
	l *Line

	mu    sync.Mutex
	cur   *conn
	opens int
	fail  int
}

// Transport returns a console transport over l.
func Transport(l *Line) *Port { return &Port{l: l} }

// Open connects to the line, closing any previous connection.
func (p *Port) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return nil, errors.New("serialsim: connection refused")
	}
	if p.cur != nil {
		p.cur.Close()
	}
	p.cur = &conn{l: p.l}
	p.opens++
	return p.cur, nil
}

// String names the transport.
func (p *Port) String() string { return "sim serial" }

// DropNow closes the current connection, as a BMC closing a SOL session
// does; its pending Read returns an error and the console must reconnect.
func (p *Port) DropNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		p.cur.Close()
	}
}

// FailOpens makes the next n calls of Open fail.
func (p *Port) FailOpens(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = n
}

// Opens returns how many connections were opened.
func (p *Port) Opens() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opens
}

type conn struct {
	l      *Line
	closed bool // guarded by l.mu
}

func (c *conn) Read(p []byte) (int, error)  { return c.l.readOutput(p, c) }
func (c *conn) Write(p []byte) (int, error) { return c.l.type_(p, c) }

func (c *conn) Close() error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.closed = true
	c.l.cond.Broadcast()
	return nil
}
