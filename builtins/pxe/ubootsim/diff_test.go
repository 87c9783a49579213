package ubootsim_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe/ubootsim"
)

// realUBoot is Debian's U-Boot 2023.01 for qemu x86 (u-boot-qemu), the
// version the sim imitates.
const realUBoot = "/usr/lib/u-boot/qemu-x86/u-boot.rom"

// board is one end of a U-Boot console: typed keys in, output collected.
type board struct {
	in  io.Writer
	mu  sync.Mutex
	out strings.Builder
}

func (b *board) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}

func (b *board) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// waitFrom waits until s appears after offset from; it returns the offset
// just after it.
func (b *board) waitFrom(t *testing.T, from int, s string, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if i := strings.Index(b.text()[from:], s); i >= 0 {
			return from + i + len(s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q within %s; output since %d:\n%q", s, d, from, b.text()[from:])
	return 0
}

// session interrupts autoboot, types each command and returns, for each,
// what the board printed from the command's echo up to the next prompt.
func session(t *testing.T, b *board, cmds []string, boot time.Duration) []string {
	t.Helper()
	at := b.waitFrom(t, 0, "Hit any key to stop autoboot:", boot)
	io.WriteString(b.in, " ")
	at = b.waitFrom(t, at, "=> ", 10*time.Second)
	var outs []string
	for _, c := range cmds {
		io.WriteString(b.in, c+"\r")
		end := b.waitFrom(t, at, "\r\n=> ", 10*time.Second)
		outs = append(outs, b.text()[at:end-len("=> ")])
		at = end
	}
	return outs
}

// The sim's U-Boot against the real one: the same keys typed to both give
// the same bytes back (echo, line editing, messages). Only commands that
// need no network or board-specific memory are compared; netboot messages
// are checked against the source in TestShell.
func TestDifferentialRealUBoot(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	if _, err := os.Stat(realUBoot); err != nil {
		t.Skip("no real U-Boot to compare with (apt-get install u-boot-qemu)")
	}
	cmds := []string{
		"printenv nosuch",
		"frobnicate 1",
		"setenv greeting hello  world",
		"printenv greeting",
		"setenv greeting",
		"printenv greeting",
		"setenv v 1; echo ${v}$v",
		"echo 'a;b' \"x$v\"",
		"run nosuch",
		"bootm 0x1000000",
		"garbage\x15echo erased",
		"echo abcd\x08\x08ef",
		"printenv autoload",
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// No NIC: nothing leaves the VM.
	cmd := exec.CommandContext(ctx, qemu, "-bios", realUBoot, "-display", "none", "-serial", "stdio",
		"-monitor", "none", "-nic", "none", "-m", "256")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	real := &board{in: stdin}
	cmd.Stdout = real
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill() // by PID: the qemu this test started
		cmd.Wait()
	}()
	want := session(t, real, cmds, time.Minute)

	r, w := io.Pipe()
	defer w.Close()
	sim := &board{in: w}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	go ubootsim.Run(sctx, ubootsim.Config{Console: struct {
		io.Reader
		io.Writer
	}{r, sim}, Store: &ubootsim.Store{}, BootDelay: 2})
	got := session(t, sim, cmds, 10*time.Second)

	for i, c := range cmds {
		if got[i] != want[i] {
			t.Errorf("%q: sim printed %q, real U-Boot %q", c, got[i], want[i])
		}
	}
}
