package qemu

import (
	"context"
	"io"
	"net"
	"sync"
)

// serialSwitch shares one serial line between two consumers, of which one
// at a time holds it: what the line says goes to the holder only, and
// both may write. The SOL benchmarks hand side 0 to the BMC and type on
// side 1 directly (the guest's own time), alternating samples on the same
// boot. Bytes read while nobody reads side's pipe wait in the pipe: the
// copy blocks, as a serial line with flow control would.
type serialSwitch struct {
	line io.ReadWriter
	mu   sync.Mutex
	cond *sync.Cond
	hold int
	side [2]*switchSide
}

type switchSide struct {
	s  *serialSwitch
	pr *io.PipeReader
	pw *io.PipeWriter
}

func newSerialSwitch(line io.ReadWriter) *serialSwitch {
	s := &serialSwitch{line: line}
	s.cond = sync.NewCond(&s.mu)
	for i := range s.side {
		pr, pw := io.Pipe()
		s.side[i] = &switchSide{s: s, pr: pr, pw: pw}
	}
	go s.copy()
	return s
}

func (s *serialSwitch) copy() {
	buf := make([]byte, 4096)
	for {
		n, err := s.line.Read(buf)
		if n > 0 {
			s.mu.Lock()
			h := s.side[s.hold]
			s.mu.Unlock()
			// A side that was closed drops what it is given.
			_, _ = h.pw.Write(buf[:n])
		}
		if err != nil {
			for _, sd := range s.side {
				sd.pw.CloseWithError(err)
			}
			return
		}
	}
}

// give hands the line's output to side i.
func (s *serialSwitch) give(i int) {
	s.mu.Lock()
	s.hold = i
	s.mu.Unlock()
}

func (d *switchSide) Read(p []byte) (int, error)  { return d.pr.Read(p) }
func (d *switchSide) Write(p []byte) (int, error) { return d.s.line.Write(p) }

// directSerial is a sol.Transport straight onto a switch side: the
// guest's serial line with no BMC in between.
type directSerial struct{ side *switchSide }

func (t directSerial) String() string { return "direct serial" }

func (t directSerial) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &directConn{side: t.side, done: make(chan struct{})}, nil
}

type directConn struct {
	side *switchSide
	once sync.Once
	done chan struct{}
}

func (c *directConn) Read(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	return c.side.Read(p)
}

func (c *directConn) Write(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	return c.side.Write(p)
}

// Close ends the side for good (it unblocks a pending Read).
func (c *directConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.side.pr.CloseWithError(net.ErrClosed)
	})
	return nil
}
