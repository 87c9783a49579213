// Package soltest checks that a [sol.Transport] keeps the rules written on
// the interface, in the style of testing/fstest.TestFS and
// golang.org/x/net/nettest.TestConn: [TestTransport] runs the same checks
// over any transport and the device end it reaches.
//
// package sol runs it over TCP, Command (a connection command under a
// pty) and the sim's serial line (serialsim); package ipmi runs it over
// IPMI SOL against the sim BMC.
package soltest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/sol"
)

// Peer is the device's end of the console a Transport reaches: a serial
// line behind a BMC, a console server's socket, a connection command's
// far side.
type Peer interface {
	// Send writes p as the device's output, to the current connection.
	// It may wait, within the test's patience, for a connection to exist.
	Send(p []byte) error
	// Received returns every byte the device has received so far, over
	// every connection, in order.
	Received() []byte
	// Drop ends the current connection from the device's side, as a BMC
	// deactivating SOL, a console server closing its socket, or a
	// connection command exiting does. The device's end stays available
	// for a new connection.
	Drop()
	// Secrets lists what the transport holds that String must not show
	// (passwords, keys); nil when there is none.
	Secrets() []string
}

// Silencer is a Peer whose device end can stop answering without closing
// anything, as a BMC that drops every datagram or a hung console server
// does. [TestTransport] then checks that Open against it keeps ctx's
// deadline.
type Silencer interface {
	Silence()
}

// NewTransport returns a fresh transport and its peer, both cleaned up
// at the end of t.
type NewTransport func(t *testing.T) (sol.Transport, Peer)

// grace bounds how long past its context's end a call may take before the
// suite calls it a hang; not a speed check.
const grace = 5 * time.Second

// TestTransport checks every rule of [sol.Transport] over transports made
// by newTransport, one per subtest.
func TestTransport(t *testing.T, newTransport NewTransport) {
	t.Run("String", func(t *testing.T) { testString(t, newTransport) })
	t.Run("DeviceToHost", func(t *testing.T) { testDeviceToHost(t, newTransport) })
	t.Run("HostToDevice", func(t *testing.T) { testHostToDevice(t, newTransport) })
	t.Run("CloseEndsRead", func(t *testing.T) { testCloseEndsRead(t, newTransport) })
	t.Run("ReopenAfterDrop", func(t *testing.T) { testReopen(t, newTransport) })
	t.Run("CanceledOpen", func(t *testing.T) { testCanceledOpen(t, newTransport) })
	t.Run("SilentOpen", func(t *testing.T) { testSilentOpen(t, newTransport) })
}

// pattern returns n bytes cycling through every byte value, so that a
// transport that changes, drops, reorders or repeats any byte is seen.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i) + seed
	}
	return p
}

func open(t *testing.T, tr sol.Transport) io.ReadWriteCloser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tr.Open(ctx)
	if err != nil {
		t.Fatalf("%s: Open() = %v", tr, err)
	}
	if c == nil {
		t.Fatalf("%s: Open() = nil, nil; want a connection", tr)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFull reads len(want) bytes from c and compares them with want; a
// read that does not return within the test's patience fails the test.
func readFull(t *testing.T, c io.ReadWriteCloser, want []byte, what string) {
	t.Helper()
	got := make([]byte, len(want))
	done := make(chan error, 1)
	var n int
	go func() {
		var err error
		n, err = io.ReadFull(c, got)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: read %d of %d bytes: %v", what, n, len(want), err)
		}
	case <-time.After(builtinstest.Patience):
		c.Close()
		<-done
		t.Fatalf("%s: read %d of %d bytes, then nothing for %v", what, n, len(want), builtinstest.Patience)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: the bytes read differ from those sent from offset %d: got %q..., want %q...",
			what, i, clip(got[i:]), clip(want[i:]))
	}
}

func clip(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

// waitReceived waits until the device has received exactly want.
func waitReceived(t *testing.T, p Peer, want []byte, what string) {
	t.Helper()
	deadline := time.Now().Add(builtinstest.Patience)
	for {
		got := p.Received()
		if bytes.Equal(got, want) {
			return
		}
		if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) || time.Now().After(deadline) {
			t.Fatalf("%s: the device received %d bytes (%q...), want the %d bytes written, in order",
				what, len(got), clip(got), len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// String names the transport and shows no secret.
func testString(t *testing.T, newTransport NewTransport) {
	tr, p := newTransport(t)
	s := tr.String()
	if strings.TrimSpace(s) == "" {
		t.Errorf("String() = %q, want a name for events and errors", s)
	}
	for _, secret := range p.Secrets() {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("String() = %q shows a secret", s)
		}
	}
}

// What the device sends arrives in order and complete, every byte value
// unchanged.
func testDeviceToHost(t *testing.T, newTransport NewTransport) {
	tr, p := newTransport(t)
	c := open(t, tr)
	want := pattern(16<<10, 0)
	go func() {
		for chunk := range slices.Chunk(want, 1000) {
			if err := p.Send(chunk); err != nil {
				t.Errorf("peer Send: %v", err)
				return
			}
		}
	}()
	readFull(t, c, want, fmt.Sprintf("%s: device output", tr))
}

// What is written reaches the device in order and complete.
func testHostToDevice(t *testing.T, newTransport NewTransport) {
	tr, p := newTransport(t)
	c := open(t, tr)
	want := pattern(4<<10, 7)
	for chunk := range slices.Chunk(want, 100) {
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("%s: Write() = %v", tr, err)
		}
	}
	waitReceived(t, p, want, fmt.Sprintf("%s: keystrokes", tr))
}

// Close ends a Read that is waiting for output.
func testCloseEndsRead(t *testing.T, newTransport NewTransport) {
	tr, _ := newTransport(t)
	c := open(t, tr)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 64))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the Read block; it passes either way
	if err := c.Close(); err != nil {
		t.Logf("%s: Close() = %v", tr, err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("%s: Read after Close = nil error, want an error", tr)
		}
	case <-time.After(builtinstest.Patience):
		t.Fatalf("%s: Read still blocked %v after Close", tr, builtinstest.Patience)
	}
}

// After the device drops the connection, Read on it fails, and a new Open
// gives a connection that carries data both ways.
func testReopen(t *testing.T, newTransport NewTransport) {
	tr, p := newTransport(t)
	c := open(t, tr)
	if _, err := c.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, p, []byte("one"), fmt.Sprintf("%s: before the drop", tr))
	p.Drop()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		for {
			if _, err := c.Read(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(builtinstest.Patience):
		t.Fatalf("%s: Read on a dropped connection still returns no error after %v", tr, builtinstest.Patience)
	}
	c.Close()

	c2 := open(t, tr)
	if _, err := c2.Write([]byte("two")); err != nil {
		t.Fatalf("%s: Write on the new connection = %v", tr, err)
	}
	waitReceived(t, p, []byte("onetwo"), fmt.Sprintf("%s: after reopening", tr))
	want := []byte("back again\r\n")
	go func() {
		if err := p.Send(want); err != nil {
			t.Errorf("peer Send: %v", err)
		}
	}()
	readFull(t, c2, want, fmt.Sprintf("%s: output after reopening", tr))
}

// Open on a canceled or expired context returns an error, promptly.
func testCanceledOpen(t *testing.T, newTransport NewTransport) {
	tr, _ := newTransport(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for name, ctx := range map[string]context.Context{"canceled": canceled, "expired": expired} {
		type result struct {
			c   io.ReadWriteCloser
			err error
		}
		done := make(chan result, 1)
		go func() {
			c, err := tr.Open(ctx)
			done <- result{c, err}
		}()
		select {
		case r := <-done:
			if r.err == nil {
				r.c.Close()
				t.Errorf("%s: Open on a %s context = a connection, want an error", tr, name)
			}
		case <-time.After(grace):
			t.Fatalf("%s: Open on a %s context still running after %v", tr, name, grace)
		}
	}
}

// Open against a device end that stops answering returns an error by
// ctx's deadline.
func testSilentOpen(t *testing.T, newTransport NewTransport) {
	tr, p := newTransport(t)
	s, ok := p.(Silencer)
	if !ok {
		t.Skip("this peer cannot fall silent")
	}
	s.Silence()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	type result struct {
		c   io.ReadWriteCloser
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := tr.Open(ctx)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		if r.err == nil {
			r.c.Close()
			t.Errorf("%s: Open against a silent device = a connection, want an error", tr)
		}
	case <-time.After(2*time.Second + grace):
		t.Fatalf("%s: Open against a silent device still running %v after its deadline", tr, grace)
	}
}
