package ipmi

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/types"
)

// udpMux is the UDP socket of one RMCP+ session, shared by go-ipmi's
// client and basalt's SOL engine. go-ipmi reads its socket only while it
// waits for the answer to a request of its own, so a SOL packet the BMC
// pushes (IPMI v2.0 §15.3: the BMC sends console data unrequested) would sit
// in the socket until the next poll. The mux reads the socket all the time:
// SOL payloads (RMCP+ payload type 01h, §13.27.3) go to the SOL engine as
// they arrive, everything else to go-ipmi through Read. It is handed to
// go-ipmi as a "proxy" dialer (client.WithUDPProxy), so go-ipmi keeps the
// session (keys, sequence numbers) and basalt only builds and parses SOL
// payloads through go-ipmi's own BuildRmcpRequest and ParseRmcpResponse.
type udpMux struct {
	mu   sync.Mutex
	conn *net.UDPConn
	sol  func([]byte) // receives SOL datagrams; nil drops them
}

// Dial implements golang.org/x/net/proxy.Dialer for go-ipmi.
func (m *udpMux) Dial(network, addr string) (net.Conn, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	uc, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.conn = uc
	m.mu.Unlock()
	c := &muxConn{UDPConn: uc, m: m, in: make(chan []byte, 64), done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// setSOL routes SOL datagrams to f from now on.
func (m *udpMux) setSOL(f func([]byte)) {
	m.mu.Lock()
	m.sol = f
	m.mu.Unlock()
}

// write sends a datagram built outside go-ipmi's exchange (a SOL packet).
func (m *udpMux) write(b []byte) error {
	m.mu.Lock()
	c := m.conn
	m.mu.Unlock()
	if c == nil {
		return net.ErrClosed
	}
	_, err := c.Write(b)
	return err
}

// isSOLDatagram reports whether b is an RMCP+ session packet carrying a SOL
// payload: RMCP header (4 bytes, class 07h IPMI), auth type 06h (RMCP+),
// then the payload type byte whose low 6 bits are 01h (IPMI v2.0 §13.6,
// Table 13-8).
func isSOLDatagram(b []byte) bool {
	return len(b) > 5 && b[3]&0x1f == 0x07 && b[4] == 0x06 && types.PayloadType(b[5]&0x3f) == types.PayloadTypeSOL
}

// muxConn is the net.Conn go-ipmi's UDP client sees.
type muxConn struct {
	*net.UDPConn
	m    *udpMux
	in   chan []byte // non-SOL datagrams for go-ipmi
	done chan struct{}
	err  error // the socket's read error, set before done is closed

	dmu      sync.Mutex
	deadline time.Time
}

func (c *muxConn) readLoop() {
	defer close(c.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := c.UDPConn.Read(buf)
		if err != nil {
			c.err = err
			return
		}
		b := append([]byte(nil), buf[:n]...)
		if isSOLDatagram(b) {
			c.m.mu.Lock()
			f := c.m.sol
			c.m.mu.Unlock()
			if f != nil {
				f(b)
			}
			continue
		}
		select {
		case c.in <- b:
		default: // nobody waits for it: a late answer to a request given up on
		}
	}
}

// Read returns the next non-SOL datagram, honouring the read deadline as
// a UDP socket would (go-ipmi retries on a *net.OpError that times out).
func (c *muxConn) Read(p []byte) (int, error) {
	c.dmu.Lock()
	d := c.deadline
	c.dmu.Unlock()
	var timeout <-chan time.Time
	if !d.IsZero() {
		t := time.NewTimer(time.Until(d))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case b := <-c.in:
		return copy(p, b), nil
	case <-timeout:
		return 0, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
	case <-c.done:
		return 0, c.err
	}
}

func (c *muxConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.deadline = t
	c.dmu.Unlock()
	return nil
}

func (c *muxConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.UDPConn.SetWriteDeadline(t)
}

func (c *muxConn) Close() error {
	c.m.mu.Lock()
	c.m.conn = nil
	c.m.mu.Unlock()
	return c.UDPConn.Close()
}
