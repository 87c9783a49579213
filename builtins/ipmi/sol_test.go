package ipmi_test

import (
	"errors"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/sol"
)

var _ sol.Transport = (*ipmi.SOL)(nil)

func TestSOLBothWaysAndDrop(t *testing.T) {
	line := newSerial(t)
	b := startBMC(t, bmcsim.Config{Serial: line})
	ev := &events{}
	tr := ipmi.NewSOL("sim", b.IPMI(), ipmi.SOLOptions{KeepAlive: 50 * time.Millisecond, Emit: ev.emit})
	ctx := ctxT(t, 30*time.Second)

	conn, err := tr.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, "SOL active", b.SOLActive)

	line.Print("U-Boot 2013.01 (highbank)\r\nHit any key to stop autoboot:  3")
	readUntil(t, conn, "autoboot:  3")
	if _, err := conn.Write([]byte("setenv bootargs console=ttyAMA0\r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "keystrokes on the serial line", func() bool {
		return line.Typed() == "setenv bootargs console=ttyAMA0\r"
	})
	// Several keepalives pass; the session stays up and carries data.
	time.Sleep(200 * time.Millisecond)
	line.Print("highbank # ")
	readUntil(t, conn, "highbank # ")

	b.DropSOL()
	buf := make([]byte, 64)
	for {
		_, err = conn.Read(buf)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ipmi.ErrSOLClosedByBMC) {
		t.Errorf("Read after DropSOL = %v, want %v", err, ipmi.ErrSOLClosedByBMC)
	}
	if _, err := conn.Write([]byte("x")); err == nil {
		t.Errorf("Write after DropSOL succeeded, want an error")
	}
	conn.Close()

	// The console reconnects: a new Open works and carries data again.
	conn2, err := tr.Open(ctx)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer conn2.Close()
	waitFor(t, "SOL active again", b.SOLActive)
	line.Print("login: ")
	readUntil(t, conn2, "login: ")
	conn2.Write([]byte("root\r"))
	waitFor(t, "second keystrokes", func() bool {
		return line.Typed() == "setenv bootargs console=ttyAMA0\rroot\r"
	})

	// Close unblocks a pending Read.
	done := make(chan error, 1)
	go func() {
		_, err := conn2.Read(buf)
		done <- err
	}()
	conn2.Close()
	if err := <-done; err == nil {
		t.Errorf("Read after Close = %v, want an error", err)
	}
	waitFor(t, "SOL deactivated by Close", func() bool { return !b.SOLActive() })
	t.Log(ev.commands())
}

// TestSOLTakesOverStaleActivation: a console whose earlier connection was
// lost without deactivating (crash, network) can open again; the stale
// activation is forced off and its reader learns it.
func TestSOLTakesOverStaleActivation(t *testing.T) {
	line := newSerial(t)
	b := startBMC(t, bmcsim.Config{Serial: line})
	cfg := b.IPMI()
	cfg.Timeout, cfg.Retries = 100*time.Millisecond, 2
	ctx := ctxT(t, 30*time.Second)
	old, err := ipmi.NewSOL("sim", cfg, ipmi.SOLOptions{}).Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	waitFor(t, "SOL active", b.SOLActive)

	conn, err := ipmi.NewSOL("sim", cfg, ipmi.SOLOptions{}).Open(ctx)
	if err != nil {
		t.Fatalf("Open over a stale activation = %v", err)
	}
	defer conn.Close()
	line.Print("still here\r\n")
	readUntil(t, conn, "still here")
	buf := make([]byte, 64)
	for {
		if _, err = old.Read(buf); err != nil {
			break
		}
	}
	if !errors.Is(err, ipmi.ErrSOLClosedByBMC) {
		t.Errorf("old connection Read = %v, want %v", err, ipmi.ErrSOLClosedByBMC)
	}
}
