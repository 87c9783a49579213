package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
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
	bin, labDir := benchLab(b, dir, k.Vmlinuz, img)
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
		"-kernel", kernel, "-initrd", img, "-append", "console=ttyS0 panic=-1 no_timer_check basalt.netwait=0")
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

// lavaFiveCommands is LAVA's job time outside the VM boot for five
// commands on the qemu lab, 2.6 s, as issue #10 quotes it: LAVA cannot run
// here (its Python packages are not reachable), so the anchor is the
// quoted figure, not a measurement of this machine.
const lavaFiveCommands = 2.6

// BenchmarkJobFiveCommands runs `basalt run` of a job that powers a qemu
// device on through its BMC, waits for the master image's prompt over SOL
// and runs five target.run("true"), and reports the job's wall time
// outside the VM boot: the whole `basalt run` (process start to exit)
// minus the boot. The boot is what a bare qemu boot is (BenchmarkDirectBoot
// times it from qemu's exec to the prompt): qemu's own start-up, from exec
// to its QMP greeting (the "qemu started" event's duration_ms), and the
// boot proper, from the start of the power-on call to the end of the
// prompt's expect (times from the bundle's events.jsonl). Ten samples per b.N,
// median and spread, beside LAVA's 2.6 s (quoted from issue #10, not
// measured here: see lavaFiveCommands). Goal: ≤ 0.1 s. Where the time
// goes, medians: pre-s (process start to power on, less qemu's start:
// lab, lock, the BMC, SOL), qemu-start-s, cmds-s (the five commands) and
// post-s (after the last command: bundle, VM shutdown, exit);
// outside-poweron-s is the wall time minus the boot proper alone (qemu's
// start counted as basalt's). BASALT_E2E=1 only (a TCG boot per sample).
func BenchmarkJobFiveCommands(b *testing.B) {
	needE2E(b)
	needQemu(b)
	k := debianKernel(b)
	dir := b.TempDir()
	img := buildInitrd(b, dir, "bench-five", k)
	bin, labDir := benchLab(b, dir, k.Vmlinuz, img)
	job := filepath.Join(dir, "five.star")
	os.WriteFile(job, []byte(fmt.Sprintf(`job(name = "five", timeout = "5m")
def five(ctx):
    ipmi.power("on")
    sol.expect(%q, timeout = "3m")
    for i in range(5):
        target.run("true")
stage("five", five)
`, initrd.DefaultPrompt)), 0o644)
	var outside, outsideOn, boot, qemuStart, pre, cmds, post []float64
	for i := 0; b.Loop(); i++ {
		for r := range runTrueRounds / 2 {
			out := filepath.Join(dir, "out", fmt.Sprintf("%d-%d", i, r))
			start := time.Now()
			run := exec.Command(bin, "run", job, "--lab", labDir, "--device", "vm", "--out", out)
			if msg, err := run.CombinedOutput(); err != nil {
				b.Fatalf("basalt run: %v\n%s", err, msg)
			}
			end := time.Now()
			jt := readJobTimes(b, filepath.Join(out, "events.jsonl"))
			tb, tq := jt.up.Sub(jt.on).Seconds(), jt.qemuStart.Seconds()
			total := end.Sub(start).Seconds()
			outside, outsideOn = append(outside, total-tb-tq), append(outsideOn, total-tb)
			boot, qemuStart = append(boot, tb), append(qemuStart, tq)
			pre = append(pre, jt.on.Sub(start).Seconds()-tq)
			cmds, post = append(cmds, jt.last.Sub(jt.up).Seconds()), append(post, end.Sub(jt.last).Seconds())
		}
	}
	b.ReportMetric(median(outside), "basalt-s/5-cmds")
	b.ReportMetric(slices.Min(outside), "basalt-min-s/5-cmds")
	b.ReportMetric(slices.Max(outside), "basalt-max-s/5-cmds")
	b.ReportMetric(lavaFiveCommands, "LAVA-quoted-s/5-cmds")
	b.ReportMetric(median(outsideOn), "outside-poweron-s")
	b.ReportMetric(median(pre), "pre-s")
	b.ReportMetric(median(qemuStart), "qemu-start-s")
	b.ReportMetric(median(cmds), "cmds-s")
	b.ReportMetric(median(post), "post-s")
	b.ReportMetric(median(boot), "boot-s")
	b.ReportMetric(0, "ns/op")
}

// jobTimes are the times BenchmarkJobFiveCommands reads from a bundle.
type jobTimes struct {
	qemuStart    time.Duration // qemu's exec to its QMP greeting
	on, up, last time.Time     // power-on call start, its prompt, the last target.run's end
}

// readJobTimes reads a bundle's events.jsonl: how long qemu took to
// start, when the power-on call started, when the first sol.expect after
// it ended (the prompt: the boot is over) and when the last target.run
// ended.
func readJobTimes(b *testing.B, events string) jobTimes {
	f, err := os.Open(events)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var jt jobTimes
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Time     time.Time `json:"time"`
			Type     string    `json:"type"`
			Event    string    `json:"event"`
			Command  string    `json:"command"`
			Duration float64   `json:"duration_ms"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		ms := time.Duration(ev.Duration * float64(time.Millisecond))
		switch {
		case ev.Type == "qemu" && ev.Event == "started":
			jt.qemuStart = ms
		case jt.on.IsZero() && ev.Type == "ipmi" && strings.Contains(ev.Command, "power on"):
			jt.on = ev.Time.Add(-ms)
		case !jt.on.IsZero() && jt.up.IsZero() && ev.Type == "expect":
			jt.up = ev.Time
		case ev.Type == "target_run":
			jt.last = ev.Time
		}
	}
	if jt.qemuStart == 0 || jt.on.IsZero() || jt.up.IsZero() || jt.last.IsZero() {
		b.Fatalf("%s: no qemu start, power-on call, expect after it or target.run", events)
	}
	return jt
}

// benchLab builds basalt into dir and writes a lab there with one qemu
// device "vm" booting kernel and img; it returns the binary and the lab.
// no_timer_check (here and on every benchmark VM): under TCG on a loaded
// host the kernel's IO-APIC timer check can miss its ticks and panic
// ("IO-APIC + timer doesn't work!"), as it did in one sample of ten.
func benchLab(b *testing.B, dir, kernel, img string) (bin, labDir string) {
	bin = filepath.Join(dir, "basalt")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/basalt")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build basalt: %v\n%s", err, out)
	}
	labDir = filepath.Join(dir, "lab")
	os.MkdirAll(filepath.Join(labDir, "devices"), 0o755)
	os.MkdirAll(filepath.Join(labDir, "device-types"), 0o755)
	os.WriteFile(filepath.Join(labDir, "lab.star"), []byte(fmt.Sprintf("lab(name = \"bench\", lock_dir = %q, cache_dir = %q)\n",
		filepath.Join(dir, "locks"), filepath.Join(dir, "cache"))), 0o644)
	os.WriteFile(filepath.Join(labDir, "device-types", "vmq.star"), []byte(fmt.Sprintf(
		"device_type(extends = \"qemu\", master_prompt = %q)\n", regexp.QuoteMeta(initrd.DefaultPrompt))), 0o644)
	os.WriteFile(filepath.Join(labDir, "devices", "vm.star"), []byte(fmt.Sprintf(
		"device(name = \"vm\", type = \"vmq\", mac = \"52:54:00:be:0b:01\", vm_kernel = %q, vm_initrd = %q, vm_append = \"console=ttyS0 panic=-1 no_timer_check basalt.netwait=0\")\n",
		kernel, img)), 0o644)
	return bin, labDir
}
