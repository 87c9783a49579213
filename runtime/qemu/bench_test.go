package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/initrd"
)

// BenchmarkDirectBoot boots a Debian kernel and a runtime/initrd master
// image to its shell prompt, alternating ten times per b.N: bare qemu (TCG, no
// NIC, serial on stdio) reading the serial output, and `basalt run` of a job
// that powers a qemu device on through its BMC and expects the prompt over
// SOL. It reports both, basalt's overhead and basalt's own peak RSS (from
// result.json). Goal: ≤ 2 % overhead; for scale, LAVA's lava-run took 8.99 s
// for a 6.18 s boot (+45 %) and peaked at 112 MB. basalt.netwait=0 keeps
// /init from waiting for an eth0 that a VM without a NIC never gets.
//
// It takes 2-3 minutes (ten alternated samples of each, ~6 s a boot under
// TCG), so it runs only with BASALT_E2E=1: `BASALT_E2E=1 make bench`.
func BenchmarkDirectBoot(b *testing.B) {
	needE2E(b)
	needQemu(b)
	k := debianKernel(b)
	dir := b.TempDir()
	img := buildInitrd(b, dir, "bench", k)
	bin := filepath.Join(dir, "basalt")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/basalt")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build basalt: %v\n%s", err, out)
	}
	labDir := filepath.Join(dir, "lab")
	os.MkdirAll(filepath.Join(labDir, "devices"), 0o755)
	os.WriteFile(filepath.Join(labDir, "lab.star"), []byte(fmt.Sprintf("lab(name = \"bench\", lock_dir = %q, cache_dir = %q)\n",
		filepath.Join(dir, "locks"), filepath.Join(dir, "cache"))), 0o644)
	os.WriteFile(filepath.Join(labDir, "devices", "vm.star"), []byte(fmt.Sprintf(
		"device(name = \"vm\", type = \"qemu\", mac = \"52:54:00:be:0b:01\", vm_kernel = %q, vm_initrd = %q, vm_append = \"console=ttyS0 panic=-1 basalt.netwait=0\")\n",
		k.Vmlinuz, img)), 0o644)
	job := filepath.Join(dir, "boot.star")
	os.WriteFile(job, []byte(fmt.Sprintf(`job(name = "boot", timeout = "5m")
def boot(ctx):
    ipmi.power("on")
    sol.expect(%q, timeout = "3m")
stage("boot", boot)
`, initrd.DefaultPrompt)), 0o644)

	// One sample per side swings by tens of percent under TCG on a shared
	// machine: take rounds alternated samples per b.N and report medians
	// and the spread.
	const rounds = 10
	var bare, basalt, overhead []float64
	var peakKB int64
	for i := 0; b.Loop(); i++ {
		for r := range rounds {
			start := time.Now()
			bootBare(b, k.Vmlinuz, img)
			tb := time.Since(start).Seconds()

			out := filepath.Join(dir, "out", fmt.Sprintf("%d-%d", i, r))
			start = time.Now()
			run := exec.Command(bin, "run", job, "--lab", labDir, "--device", "vm", "--out", out)
			if msg, err := run.CombinedOutput(); err != nil {
				b.Fatalf("basalt run: %v\n%s", err, msg)
			}
			tr := time.Since(start).Seconds()
			bare, basalt = append(bare, tb), append(basalt, tr)
			overhead = append(overhead, 100*(tr-tb)/tb)
			var res struct {
				Runner struct {
					PeakRSSKB int64 `json:"peak_rss_kb"`
				}
			}
			data, _ := os.ReadFile(filepath.Join(out, "result.json"))
			json.Unmarshal(data, &res)
			peakKB = max(peakKB, res.Runner.PeakRSSKB)
		}
	}
	median := func(xs []float64) float64 {
		s := slices.Sorted(slices.Values(xs))
		if n := len(s); n%2 == 0 {
			return (s[n/2-1] + s[n/2]) / 2
		}
		return s[len(s)/2]
	}
	b.ReportMetric(median(bare), "bare-s/boot")
	b.ReportMetric(slices.Min(bare), "bare-min-s/boot")
	b.ReportMetric(slices.Max(bare), "bare-max-s/boot")
	b.ReportMetric(median(basalt), "basalt-s/boot")
	b.ReportMetric(slices.Min(basalt), "basalt-min-s/boot")
	b.ReportMetric(slices.Max(basalt), "basalt-max-s/boot")
	// The overhead of the medians, and the spread of the paired samples'.
	b.ReportMetric(100*(median(basalt)-median(bare))/median(bare), "overhead-%")
	b.ReportMetric(slices.Min(overhead), "overhead-min-%")
	b.ReportMetric(slices.Max(overhead), "overhead-max-%")
	b.ReportMetric(float64(peakKB)/1024, "basalt-peak-RSS-MB")
}

// bootBare runs qemu until the prompt shows on its serial output, then
// kills it.
func bootBare(b *testing.B, kernel, img string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.Command("qemu-system-x86_64", "-nodefaults", "-no-user-config", "-accel", "tcg", "-cpu", "max",
		"-m", "512", "-display", "none", "-serial", "stdio",
		"-kernel", kernel, "-initrd", img, "-append", "console=ttyS0 panic=-1 basalt.netwait=0")
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
