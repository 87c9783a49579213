package sol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/basalt-lab/basalt/builtins"
)

// SendOptions tune one Send or SendLine.
type SendOptions struct {
	// Delay, when DelaySet, overrides the mode's per-character delay for
	// this call (0 types the whole text in one write).
	Delay    time.Duration
	DelaySet bool
	// Secret keeps the text out of events, logs and errors, and hands it
	// to Options.AddSecret so that its echo is redacted from the capture.
	Secret bool
	// VerifyEcho (SendLine only) waits for the device to echo the line
	// before typing the line ending, and retypes a line whose echo
	// differs (after typing Options.EraseLine).
	VerifyEcho bool
}

// Send types text on the console, one character at a time with the
// current delay between them. If the transport is lost, it waits for the
// reconnection within ctx and types the rest.
func (c *Console) Send(ctx context.Context, text string, o SendOptions) error {
	if o.Secret {
		c.addSecret(text)
	}
	return c.send(ctx, text, o)
}

func (c *Console) send(ctx context.Context, text string, o SendOptions) error {
	delay := c.delay(o)
	if err := c.typeText(ctx, text, delay); err != nil {
		return err
	}
	c.emit("send", map[string]any{"length": len(text), "delay_ms": delay.Milliseconds(), "secret": o.Secret})
	return nil
}

// SendLine types text and the line ending, verifying the echo first if
// o.VerifyEcho is set. A line whose echo still differs after
// Options.EchoRetries retypes is a device error.
func (c *Console) SendLine(ctx context.Context, text string, o SendOptions) error {
	if o.Secret {
		c.addSecret(text)
	}
	if !o.VerifyEcho {
		return c.send(ctx, text+c.o.LineEnding, o)
	}
	delay := c.delay(o)
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		off := c.m.End()
		c.mu.Unlock()
		if err := c.typeText(ctx, text, delay); err != nil {
			return err
		}
		ok, err := c.waitEcho(ctx, off, text)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if attempt == c.o.EchoRetries {
			what := fmt.Sprintf("%q", text)
			if o.Secret {
				what = "secret line"
			}
			return builtins.Device(fmt.Errorf("echo of %s still differs after %d retypes", what, attempt))
		}
		c.emit("send_retry", map[string]any{"length": len(text), "attempt": attempt + 1, "secret": o.Secret})
		c.log.Warn("console echo differs; retyping line", "attempt", attempt+1)
		if err := c.typeText(ctx, c.o.EraseLine, delay); err != nil {
			return err
		}
	}
	if err := c.typeText(ctx, c.o.LineEnding, delay); err != nil {
		return err
	}
	c.emit("send", map[string]any{"length": len(text) + len(c.o.LineEnding), "delay_ms": delay.Milliseconds(), "secret": o.Secret, "verified": true})
	return nil
}

func (c *Console) delay(o SendOptions) time.Duration {
	if o.DelaySet {
		return max(o.Delay, 0)
	}
	if c.Mode() == ModeShell {
		return c.o.TestShellDelay
	}
	return c.o.BootloaderDelay
}

func (c *Console) addSecret(s string) {
	if s == "" {
		return
	}
	c.mu.Lock()
	c.secrets = append(c.secrets, s)
	c.mu.Unlock()
	if c.o.AddSecret != nil {
		c.o.AddSecret(s)
	}
}

// waitEcho waits up to EchoTimeout for text to appear in the output
// received since stream offset off.
func (c *Console) waitEcho(ctx context.Context, off int64, text string) (bool, error) {
	t := time.NewTimer(c.o.EchoTimeout)
	defer t.Stop()
	for {
		c.mu.Lock()
		ok := bytes.Contains(c.m.Since(off), []byte(text))
		ch := c.notify
		c.mu.Unlock()
		if ok {
			return true, nil
		}
		select {
		case <-ch:
		case <-t.C:
			return false, nil
		case <-ctx.Done():
			return false, c.sendFailed(ctx)
		}
	}
}

// typeText writes text, a character at a time if delay > 0.
func (c *Console) typeText(ctx context.Context, text string, delay time.Duration) error {
	c.typeMu.Lock()
	defer c.typeMu.Unlock()
	if delay <= 0 {
		return c.write(ctx, []byte(text))
	}
	for i, w := 0, 0; i < len(text); i += w {
		_, w = utf8.DecodeRuneInString(text[i:])
		// The delay holds between any two keys, across calls too: the
		// first key of a line typed right after the key that interrupted a
		// bootloader is dropped like any other key that comes too soon.
		if wait := delay; i > 0 || time.Since(c.lastKey) < delay {
			if i == 0 {
				wait = delay - time.Since(c.lastKey)
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return c.sendFailed(ctx)
			}
		}
		if err := c.write(ctx, []byte(text[i:i+w])); err != nil {
			return err
		}
		c.lastKey = time.Now()
	}
	return nil
}

// write delivers p over the current connection, waiting for a reconnection
// when the transport is down.
func (c *Console) write(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		c.mu.Lock()
		if !c.started || c.closed {
			c.mu.Unlock()
			return builtins.Infra(fmt.Errorf("console %s: not started or closed", c.t))
		}
		conn, up, done := c.conn, c.connected, c.done
		c.mu.Unlock()
		if conn != nil {
			c.wmu.Lock()
			c.typed.Add(1)
			n, err := conn.Write(p)
			c.wmu.Unlock()
			p = p[n:]
			if err == nil {
				continue
			}
			c.log.Warn("console write failed; waiting for the reconnection", "transport", c.t.String(), "error", err)
			// The reader sees the loss too and reconnects; wait until
			// the connection is a new one.
			for {
				c.mu.Lock()
				cur := c.conn
				c.mu.Unlock()
				if cur != conn {
					break
				}
				t := time.NewTimer(c.o.Backoff.Initial)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return c.sendFailed(ctx)
				}
			}
			continue
		}
		select {
		case <-up:
		case <-ctx.Done():
			return c.sendFailed(ctx)
		case <-done: // the reader gave up reconnecting
			c.mu.Lock()
			fatal := c.fatal
			c.mu.Unlock()
			if fatal == nil {
				fatal = errClosed
			}
			return builtins.Infra(fmt.Errorf("send on console %s: %w", c.t, fatal))
		}
	}
	return nil
}

func (c *Console) sendFailed(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("send: %w", ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil && !c.lostAt.IsZero() {
		return builtins.Infra(&LostError{Transport: c.t.String(), For: time.Since(c.lostAt), Err: c.lostErr})
	}
	return builtins.Infra(fmt.Errorf("send on console %s: %w", c.t, ctx.Err()))
}
