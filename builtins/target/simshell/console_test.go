package simshell

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitLimit bounds how long a test waits for console output before it
// fails instead of hanging; it is not a speed assertion.
const waitLimit = 60 * time.Second

const testPrompt = "root@sim:~# "

// console drives a Shell over an in-memory pipe pair, like a serial line.
type console struct {
	t      *testing.T
	sh     *Shell
	keys   *io.PipeWriter
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	cond   *sync.Cond
	buf    bytes.Buffer
	mark   int // start of the output not yet consumed by expect
	closed bool
}

// startShell runs a shell with cfg (Root defaults to a temp dir) on a new
// console; the test's cleanup stops it.
func startShell(t *testing.T, cfg Config) *console {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = filepath.Join(t.TempDir(), "root")
	}
	if cfg.Prompt == "" {
		cfg.Prompt = testPrompt
	}
	sh, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	c := &console{t: t, sh: sh, keys: inW, cancel: cancel, done: make(chan error, 1)}
	c.cond = sync.NewCond(&c.mu)
	go func() {
		c.done <- sh.Serve(ctx, struct {
			io.Reader
			io.Writer
		}{inR, outW})
	}()
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := outR.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			if err != nil {
				c.closed = true
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
		inW.Close()
		outW.Close()
		inR.Close()
		sh.Close()
	})
	c.expect(cfg.Prompt)
	return c
}

// send types s on the console.
func (c *console) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.keys, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// expect waits for want in the unread output and returns what came before
// it, consuming both.
func (c *console) expect(want string) string {
	c.t.Helper()
	timer := time.AfterFunc(waitLimit, func() {
		c.mu.Lock()
		c.closed = true
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		rest := c.buf.Bytes()[c.mark:]
		if i := bytes.Index(rest, []byte(want)); i >= 0 {
			c.mark += i + len(want)
			return string(rest[:i])
		}
		if c.closed {
			c.t.Fatalf("console output never showed %q; unread output:\n%q", want, rest)
		}
		c.cond.Wait()
	}
}

// run types cmd and returns its output up to the next prompt, with the
// console's "\r\n" turned back into "\n".
func (c *console) run(cmd string) string {
	c.t.Helper()
	c.send(cmd + "\r")
	c.expect(cmd + "\r\n")
	return strings.ReplaceAll(c.expect(testPrompt), "\r\n", "\n")
}

// serveResult waits for Serve to return.
func (c *console) serveResult() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		c.done <- err // for the cleanup
		return err
	case <-time.After(waitLimit):
		c.t.Fatal("Serve did not return")
		return nil
	}
}
