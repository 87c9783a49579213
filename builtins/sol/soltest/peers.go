package soltest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
)

// LinePeer returns the device end of a simulated serial line as a Peer:
// what a transport over the line (serialsim's Port, or a BMC whose serial
// port is the line's host end) reaches. drop ends the transport's current
// connection from the device's side; secrets are as Peer.Secrets. The
// peer reads the device end until t ends; the caller closes the line.
func LinePeer(t testing.TB, line *serialsim.Line, drop func(), secrets ...string) Peer {
	p := &linePeer{dev: line.Device(), drop: drop, secrets: secrets}
	go func() {
		// The device reads keystrokes until the line is closed.
		io.Copy(&p.recv, p.dev)
	}()
	return p
}

type linePeer struct {
	dev     io.ReadWriter
	recv    builtinstest.SyncBuffer
	drop    func()
	secrets []string
}

func (p *linePeer) Send(b []byte) error {
	_, err := p.dev.Write(b)
	return err
}
func (p *linePeer) Received() []byte  { return []byte(p.recv.String()) }
func (p *linePeer) Drop()             { p.drop() }
func (p *linePeer) Secrets() []string { return p.secrets }

// TCPPeer listens on a loopback port, as a console server in raw mode
// (ser2net, a terminal server) does, and returns its address and the Peer
// behind it. Each accepted connection replaces the one before.
func TCPPeer(t testing.TB, secrets ...string) (addr string, _ Peer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	p := &tcpPeer{secrets: secrets}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.closed = true
		if p.cur != nil {
			p.cur.Close()
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cur != nil {
				p.cur.Close()
			}
			p.cur = c
			p.cond.Broadcast()
			p.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					p.mu.Lock()
					p.recv = append(p.recv, buf[:n]...)
					p.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), p
}

type tcpPeer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	cur     net.Conn // nil until accepted, and after Drop
	recv    []byte
	closed  bool
	secrets []string
}

// Send waits for a connection, then writes to it.
func (p *tcpPeer) Send(b []byte) error {
	deadline := time.AfterFunc(builtinstest.Patience, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer deadline.Stop()
	start := time.Now()
	p.mu.Lock()
	for p.cur == nil && !p.closed && time.Since(start) < builtinstest.Patience {
		p.cond.Wait()
	}
	c := p.cur
	p.mu.Unlock()
	if c == nil {
		return errors.New("tcp peer: no connection")
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("tcp peer: write: %w", err)
	}
	return nil
}

func (p *tcpPeer) Received() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.recv...)
}

// Drop closes the current connection, as a console server does when its
// port is taken or restarted.
func (p *tcpPeer) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		p.cur.Close()
		p.cur = nil
	}
}

func (p *tcpPeer) Secrets() []string { return p.secrets }
