package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPool runs 64 `basalt run --device-type sim --wait 10m` processes
// at once on a lab of 8 sim devices and reports the throughput (jobs/min),
// the waits for a device (p50, p99) and the largest peak RSS of one run.
// Every run must be served and no device booked twice (from result.json).
func BenchmarkPool(b *testing.B) {
	const devices, runs = 8, 64
	bin := buildBasalt(b)
	dir := b.TempDir()
	labDir := filepath.Join(dir, "lab")
	os.MkdirAll(filepath.Join(labDir, "devices"), 0o755)
	os.WriteFile(filepath.Join(labDir, "lab.star"), []byte(fmt.Sprintf("lab(name = \"bench\", lock_dir = %q)\n", filepath.Join(dir, "locks"))), 0o644)
	for i := 1; i <= devices; i++ {
		src := fmt.Sprintf("device(type = \"sim\", mac = \"02:42:00:00:03:%02x\")\n", i)
		os.WriteFile(filepath.Join(labDir, "devices", fmt.Sprintf("p%d.star", i)), []byte(src), 0o644)
	}
	job := filepath.Join(dir, "job.star")
	os.WriteFile(job, []byte("job(name = \"pool\", device_type = \"sim\", timeout = \"10m\")\ndef one(ctx):\n    time.sleep(\"200ms\")\n    test.case(\"ran\", \"pass\")\nstage(\"one\", one)\n"), 0o644)

	var waits []time.Duration
	var maxRSS int64
	var wall time.Duration
	for n := 0; n < b.N; n++ {
		out := filepath.Join(dir, fmt.Sprint("round", n))
		var wg sync.WaitGroup
		var mu sync.Mutex
		errs := make(chan error, runs)
		t0 := time.Now()
		for i := 0; i < runs; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(bin, "run", job, "--lab", labDir, "--device-type", "sim", "--wait", "10m", "--out", filepath.Join(out, fmt.Sprint(i)))
				if o, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("run %d: %v\n%s", i, err, o)
					return
				}
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					mu.Lock()
					maxRSS = max(maxRSS, ru.Maxrss)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		wall += time.Since(t0)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		var got []poolRun
		for i := 0; i < runs; i++ {
			r, err := readPoolRun(filepath.Join(out, fmt.Sprint(i), "result.json"))
			if err != nil || r.Device == "" {
				b.Fatalf("run %d: no pool device: %v", i, err)
			}
			got = append(got, r)
			waits = append(waits, time.Duration(r.WaitedMS)*time.Millisecond)
		}
		if d := doubleBookings(got); len(d) > 0 {
			b.Fatalf("%d double bookings, first of %s: %s and %s", len(d), d[0][0].Device, d[0][0].Dir, d[0][1].Dir)
		}
	}
	slices.Sort(waits)
	pct := func(p float64) float64 { return float64(waits[int(p*float64(len(waits)-1))].Milliseconds()) }
	b.ReportMetric(float64(runs*b.N)/wall.Minutes(), "jobs/min")
	b.ReportMetric(pct(0.50), "wait-p50-ms")
	b.ReportMetric(pct(0.99), "wait-p99-ms")
	b.ReportMetric(float64(maxRSS)/1024, "peak-RSS-MB/run")
}
