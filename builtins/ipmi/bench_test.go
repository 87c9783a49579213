package ipmi_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
)

// BenchmarkOps compares one operation through basalt's client (one session
// kept for the job) with one `ipmitool -I lanplus -C 3` process per
// operation, LAVA's way, against the same simulated BMC.
func BenchmarkOps(b *testing.B) {
	sim := startBMC(b, bmcsim.Config{})
	cfg := sim.IPMI()
	ops := []struct {
		name     string
		basalt   func(context.Context, *ipmi.Client) error
		ipmitool []string
	}{
		{"power_status", func(ctx context.Context, c *ipmi.Client) error {
			_, err := c.PowerStatus(ctx)
			return err
		}, []string{"chassis", "power", "status"}},
		{"bootdev", func(ctx context.Context, c *ipmi.Client) error {
			return c.SetBootDevice(ctx, ipmi.PXE, ipmi.BootOptions{})
		}, []string{"chassis", "bootdev", "pxe"}},
	}
	for _, op := range ops {
		b.Run("basalt/"+op.name, func(b *testing.B) {
			c := newClient(b, cfg, nil)
			ctx := context.Background()
			if err := op.basalt(ctx, c); err != nil { // session setup is per job, not per op
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if err := op.basalt(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
		})
		b.Run("ipmitool/"+op.name, func(b *testing.B) {
			if _, err := exec.LookPath("ipmitool"); err != nil {
				b.Skip("ipmitool not installed (Debian package ipmitool)")
			}
			args := append([]string{"-I", "lanplus", "-H", cfg.Host, "-p", fmt.Sprint(cfg.Port),
				"-U", cfg.User, "-P", cfg.Password.Value(), "-C", "3"}, op.ipmitool...)
			start := time.Now()
			for b.Loop() {
				if out, err := exec.Command("ipmitool", args...).CombinedOutput(); err != nil {
					b.Fatalf("ipmitool: %v: %s", err, out)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkIPMISimIdleOp measures the first operation after 40 s of
// idleness against OpenIPMI's ipmi_sim (its own process), which forgets
// sessions silent for 30 s, and a warm operation on the same session, with
// a lab's default timeout and retries (2 s × 5). Goal: idle ≤ 2× warm.
// Before basalt kept sessions alive the idle one took 10.7–19.8 s.
func BenchmarkIPMISimIdleOp(b *testing.B) {
	cfg := startIPMISim(b, true).cfg
	cfg.CipherSuites, cfg.Timeout, cfg.Retries = []int{3}, 0, 0 // the defaults
	c := newClient(b, cfg, nil)
	ctx := context.Background()
	op := func() time.Duration {
		start := time.Now()
		if _, err := c.PowerStatus(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	op() // the session is opened per job, not per op
	var warm, idle time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		warm += op()
		b.StopTimer()
		time.Sleep(40 * time.Second)
		b.StartTimer()
		idle += op()
	}
	n := float64(b.N)
	b.ReportMetric(float64(warm.Microseconds())/1000/n, "warm-ms/op")
	b.ReportMetric(float64(idle.Microseconds())/1000/n, "idle40s-ms/op")
	b.ReportMetric(float64(idle)/float64(max(warm, time.Microsecond)), "idle/warm")
}
