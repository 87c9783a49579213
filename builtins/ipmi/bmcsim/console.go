package bmcsim

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/bougou/go-ipmi/pkg/hal"
)

// serialConsole is the BMC's end of the node's serial port, handed to
// go-ipmi's SOL engine as a hal.ConsoleHAL. One goroutine reads the port for
// the BMC's whole life. Output is buffered whether or not a SOL session is
// attached, as many BMCs do: what the node prints while the console
// reconnects reaches the next session, and what a dropped session had not
// yet sent is kept for the next. A full buffer (serialBuffer) stops reading
// the port until the console drains it, as OpenIPMI's ipmi_sim stops
// reading its serial device when its output buffer is full (lanserv/sol.c,
// set_read_enable, with RTS/CTS flow control on by default): output then
// waits on the line instead of being dropped unseen.
type serialConsole struct {
	port io.ReadWriter

	start sync.Once

	mu       sync.Mutex
	room     *sync.Cond // signalled when buffered output shrinks
	pending  []byte     // output while no session is attached
	attached *consoleConn
	err      error // the port's read error, once it failed
	closed   bool
}

func newSerialConsole(port io.ReadWriter) *serialConsole {
	s := &serialConsole{port: port}
	s.room = sync.NewCond(&s.mu)
	return s
}

// buffered returns the output held for the console; s.mu held.
func (s *serialConsole) buffered() int {
	n := len(s.pending)
	if s.attached != nil {
		n += len(s.attached.rx)
	}
	return n
}

// run reads the port until it fails. The port belongs to the node; when the
// node closes its line, Read fails and run returns.
func (s *serialConsole) run() {
	buf := make([]byte, 4096)
	for {
		s.mu.Lock()
		for s.buffered() >= serialBuffer && !s.closed {
			s.room.Wait()
		}
		done := s.closed
		s.mu.Unlock()
		if done {
			return
		}
		n, err := s.port.Read(buf)
		s.mu.Lock()
		if n > 0 && s.attached != nil {
			c := s.attached
			c.rx = append(c.rx, buf[:n]...)
		} else if n > 0 {
			s.pending = append(s.pending, buf[:n]...)
		}
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		done = s.closed
		s.mu.Unlock()
		if done {
			return
		}
	}
}

// Open attaches a SOL session to the port. A shared serial port serves one
// activation at a time (IPMI v2.0 §15.3).
func (s *serialConsole) Open(context.Context) (hal.ConsoleConn, error) {
	s.start.Do(func() { go s.run() })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("bmcsim: BMC closed")
	}
	if s.attached != nil {
		return nil, errors.New("bmcsim: serial port already attached")
	}
	c := &consoleConn{s: s, rx: s.pending}
	s.pending = nil
	s.attached = c
	return c, nil
}

func (s *serialConsole) close() {
	s.mu.Lock()
	s.closed = true
	s.attached = nil
	s.room.Broadcast()
	s.mu.Unlock()
}

// consoleConn is one SOL attachment.
type consoleConn struct {
	s      *serialConsole
	rx     []byte // guarded by s.mu
	closed bool   // guarded by s.mu
}

func (c *consoleConn) ReadAvailable(p []byte) (int, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.closed {
		return 0, io.ErrClosedPipe
	}
	if len(c.rx) == 0 && c.s.err != nil {
		return 0, c.s.err
	}
	n := copy(p, c.rx)
	c.rx = c.rx[n:]
	if n > 0 {
		c.s.room.Broadcast()
	}
	return n, nil
}

func (c *consoleConn) Write(p []byte) (int, error) {
	c.s.mu.Lock()
	closed := c.closed
	c.s.mu.Unlock()
	if closed {
		return 0, io.ErrClosedPipe
	}
	return c.s.port.Write(p)
}

func (c *consoleConn) SendBreak(context.Context) error { return hal.ErrNotSupported }

func (c *consoleConn) Close() error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.attached == c {
		c.s.attached = nil
		if !c.closed {
			c.s.pending = append(c.rx, c.s.pending...)
		}
	}
	c.closed = true
	c.rx = nil
	c.s.room.Broadcast()
	return nil
}
