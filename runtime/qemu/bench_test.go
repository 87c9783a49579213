package qemu

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/initrd"
)

// BenchmarkDirectBoot boots a Debian kernel and a runtime/initrd master
// image with bare qemu (TCG, no NIC, serial on stdio) and reads the serial
// output until the shell prompt: the floor any basalt-driven boot of the
// same image sits on. The image's /init waits up to 5 s for an eth0 that a
// VM without a NIC never gets; that wait is part of the number.
func BenchmarkDirectBoot(b *testing.B) {
	needQemu(b)
	k := debianKernel(b)
	img := buildInitrd(b, b.TempDir(), "bench", "")
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		bootBare(b, k.vmlinuz, img)
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/boot")
}

// bootBare runs qemu until the prompt shows on its serial output, then
// kills it.
func bootBare(b *testing.B, kernel, img string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.Command("qemu-system-x86_64", "-nodefaults", "-no-user-config", "-accel", "tcg", "-cpu", "max",
		"-m", "512", "-display", "none", "-serial", "stdio",
		"-kernel", kernel, "-initrd", img, "-append", "console=ttyS0 panic=-1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill() // by PID: the qemu this benchmark started
		cmd.Wait()
	}()
	con := newConsole()
	go con.copyFrom(out)
	if _, err := con.waitFrom(ctx, 0, initrd.DefaultPrompt); err != nil {
		b.Fatalf("%v; console:\n%s", err, con.tail(2048))
	}
}
