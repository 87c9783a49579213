package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBasalt builds the real binary once per benchmark: start-up cost is
// part of what is measured.
func buildBasalt(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "basalt")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func tenStageJob(b *testing.B) string {
	dir := b.TempDir()
	var sb strings.Builder
	sb.WriteString(`job(name = "ten", timeout = "1h", params = {"a": "1"})` + "\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&sb, "def s%d(ctx):\n    test.case(\"c%d\", \"pass\")\n", i, i)
		fmt.Fprintf(&sb, "stage(\"s%d\", s%d, timeout = \"5m\", retries = 1)\n", i, i)
	}
	sb.WriteString("def off(ctx):\n    pass\ncleanup(off)\n")
	f := filepath.Join(dir, "ten.star")
	if err := os.WriteFile(f, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkCLI measures whole-process wall time and peak RSS of `basalt
// check` on a 10-stage job (goal ≤ 30 ms) and of a no-op `basalt run`
// (goal ≤ 50 ms, ≤ 20 MB). For scale: LAVA's dispatcher spends ~0.26 s
// starting Python and peaks at 112 MB per job on this machine.
func BenchmarkCLI(b *testing.B) {
	bin := buildBasalt(b)
	job := tenStageJob(b)
	noop := filepath.Join(b.TempDir(), "noop.star")
	os.WriteFile(noop, []byte("job(name = \"noop\")\ndef one(ctx):\n    pass\nstage(\"one\", one)\n"), 0o644)
	cases := []struct {
		name string
		args func(i int) []string
	}{
		{"check-10-stages", func(int) []string { return []string{"check", job} }},
		{"run-noop", func(i int) []string {
			return []string{"run", noop, "--out", filepath.Join(b.TempDir(), fmt.Sprint(i))}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var maxRSS int64
			var wall time.Duration
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(bin, c.args(i)...)
				t0 := time.Now()
				out, err := cmd.CombinedOutput()
				wall += time.Since(t0)
				if err != nil {
					b.Fatalf("%v: %v\n%s", c.args(i), err, out)
				}
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > maxRSS {
					maxRSS = ru.Maxrss
				}
			}
			b.ReportMetric(float64(wall.Microseconds())/1000/float64(b.N), "wall-ms/op")
			b.ReportMetric(float64(maxRSS)/1024, "peak-RSS-MB")
		})
	}
}
