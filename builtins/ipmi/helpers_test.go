package ipmi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// node records what the BMC asks of the simulated machine; with refuseOn
// set it refuses every power on with that error.
type node struct {
	mu       sync.Mutex
	events   []string
	refuseOn error
}

func (n *node) PowerOn(_ context.Context, boot bmcsim.BootDevice) error {
	n.add("on:" + boot.String())
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.refuseOn
}
func (n *node) PowerOff(context.Context) error { n.add("off"); return nil }
func (n *node) Reset(_ context.Context, boot bmcsim.BootDevice) error {
	n.add("reset:" + boot.String())
	return nil
}

func (n *node) add(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, s)
}

func (n *node) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.events
	n.events = nil
	return e
}

// startBMC starts a simulated BMC on loopback, closed at the end of the test.
func startBMC(t testing.TB, cfg bmcsim.Config) *bmcsim.BMC {
	t.Helper()
	b := bmcsim.New(cfg)
	if err := b.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// events collects the events a Client emits; emit is its Options.Emit.
type events struct{ builtinstest.Recorder }

func (e *events) emit(typ string, f map[string]any) {
	if typ != "ipmi" {
		panic("unexpected event type " + typ)
	}
	e.Emit(typ, f)
}

// commands lists the calls as "command=outcome".
func (e *events) commands() []string {
	var out []string
	for _, f := range e.Events("ipmi") {
		out = append(out, f["command"].(string)+"="+f["outcome"].(string))
	}
	return out
}

func newClient(t testing.TB, cfg lab.IPMI, ev *events) *ipmi.Client {
	t.Helper()
	var opts ipmi.Options
	if ev != nil {
		opts.Emit = ev.emit
	}
	c := ipmi.NewClient("sim", cfg, opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// serial is a simulated serial line: the node side writes output with
// Print and reads keystrokes with Typed; the BMC side is the io.ReadWriter.
type serial struct {
	outR *io.PipeReader // BMC reads node output here
	outW *io.PipeWriter

	mu    sync.Mutex
	typed bytes.Buffer
}

func newSerial(t testing.TB) *serial {
	r, w := io.Pipe()
	s := &serial{outR: r, outW: w}
	t.Cleanup(func() { w.Close() })
	return s
}

func (s *serial) Read(p []byte) (int, error) { return s.outR.Read(p) }

func (s *serial) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.typed.Write(p)
}

// Print writes node output to the line.
func (s *serial) Print(str string) {
	go s.outW.Write([]byte(str)) // a UART does not wait for a listener
}

func (s *serial) Typed() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.typed.String()
}

// waitFor polls cond until it holds or the test's patience ends.
var waitFor = builtinstest.WaitFor

// readUntil reads r until the bytes read contain want.
func readUntil(t testing.TB, r io.Reader, want string) string {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, 512)
	for !strings.Contains(got.String(), want) {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("read %q so far, want %q: %v", got.String(), want, err)
		}
	}
	return got.String()
}

// relay forwards UDP datagrams between a client and a BMC on loopback and
// counts the client's datagrams per session (client port and RMCP+ session
// ID: ipmi_sim hands out the same IDs again after a restart), so that a
// test can tell how many datagrams a client spent on a session the BMC
// ignores.
type relay struct {
	in *net.UDPConn // the client's side
	up *net.UDPConn // connected to the BMC

	mu     sync.Mutex
	client *net.UDPAddr
	sent   map[session]int
	muted  bool
}

// mute drops, uncounted, what the client sends until unmuted: a client
// with no keepalive at all (go-ipmi's own, every 30 s, cannot be turned
// off).
func (r *relay) mute(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.muted = on
}

// session names a session as the relay sees it.
type session struct {
	port int    // the client's UDP port: go-ipmi uses a socket per session
	id   uint32 // the BMC's session ID; 0 during session setup
}

func (s session) String() string { return fmt.Sprintf("%d/%#x", s.port, s.id) }

// newRelay starts a relay to the BMC at bmc; the client sends to Addr.
func newRelay(t testing.TB, bmc string) *relay {
	t.Helper()
	in, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ua, err := net.ResolveUDPAddr("udp", bmc)
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{in: in, up: up, sent: map[session]int{}}
	t.Cleanup(func() { in.Close(); up.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := in.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			if r.muted {
				r.mu.Unlock()
				continue
			}
			r.client = from
			// RMCP header (4 bytes), then the IPMI v2.0 session header
			// (§13.6): auth type 06h, payload type, session ID (LSB first).
			if n >= 10 && buf[4] == 0x06 {
				r.sent[session{from.Port, binary.LittleEndian.Uint32(buf[6:10])}]++
			}
			r.mu.Unlock()
			up.Write(buf[:n])
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ECONNREFUSED while the BMC restarts
			}
			r.mu.Lock()
			to := r.client
			r.mu.Unlock()
			if to != nil {
				in.WriteToUDP(buf[:n], to)
			}
		}
	}()
	return r
}

// Port is the relay's port, where the client sends.
func (r *relay) Port() int { return r.in.LocalAddr().(*net.UDPAddr).Port }

// snapshot returns the datagrams counted so far, per session ID.
func (r *relay) snapshot() map[session]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[session]int, len(r.sent))
	for k, v := range r.sent {
		m[k] = v
	}
	return m
}

// since returns, per session ID other than 0 (session setup), how many
// datagrams were sent after the snapshot before.
func (r *relay) since(before map[session]int) map[session]int {
	d := map[session]int{}
	for k, v := range r.snapshot() {
		if k.id != 0 && v > before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}
