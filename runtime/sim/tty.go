package sim

import (
	"context"
	"io"
	"sync"
)

// ttyMux owns the node's end of the serial line. One goroutine reads
// keystrokes for the node's whole life and hands them to the system that is
// running now; keystrokes that arrive while the node is off are lost, as on
// real hardware. Without it, a reader of a powered-off boot could eat the
// first keystrokes meant for the next one.
type ttyMux struct {
	port io.ReadWriter

	mu   sync.Mutex
	cur  *tty
	once sync.Once
}

func newTTYMux(port io.ReadWriter) *ttyMux { return &ttyMux{port: port} }

func (m *ttyMux) pump() {
	buf := make([]byte, 4096)
	for {
		k, err := m.port.Read(buf)
		if k > 0 {
			m.mu.Lock()
			if t := m.cur; t != nil {
				t.mu.Lock()
				t.in = append(t.in, buf[:k]...)
				t.mu.Unlock()
				select {
				case t.ready <- struct{}{}:
				default:
				}
			}
			m.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (m *ttyMux) writer() io.Writer { return m.port }

func (m *ttyMux) attach(ctx context.Context) *tty {
	m.once.Do(func() { go m.pump() })
	t := &tty{ctx: ctx, ready: make(chan struct{}, 1), out: m.port}
	m.mu.Lock()
	m.cur = t
	m.mu.Unlock()
	return t
}

func (m *ttyMux) detach(t *tty) {
	m.mu.Lock()
	if m.cur == t {
		m.cur = nil
	}
	m.mu.Unlock()
}

// tty is the console as one boot sees it; Read ends when the boot does.
type tty struct {
	ctx   context.Context
	out   io.Writer
	mu    sync.Mutex
	in    []byte
	ready chan struct{}
}

func (t *tty) Read(p []byte) (int, error) {
	for {
		t.mu.Lock()
		if len(t.in) > 0 {
			k := copy(p, t.in)
			t.in = t.in[k:]
			t.mu.Unlock()
			return k, nil
		}
		t.mu.Unlock()
		select {
		case <-t.ready:
		case <-t.ctx.Done():
			return 0, t.ctx.Err()
		}
	}
}

func (t *tty) Write(p []byte) (int, error) { return t.out.Write(p) }
