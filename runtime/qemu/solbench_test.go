package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/builtins/target"
	"github.com/basalt-lab/basalt/runtime/initrd"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// runTrueRounds is how many alternated pairs of samples BenchmarkRunTrue
// takes per b.N: one sample per side swings by tens of percent under TCG
// on a shared machine.
const runTrueRounds = 20

// BenchmarkRunTrue measures the round trip of target.run("true") on a
// booted qemu guest over SOL, behind basalt's own BMC (bmcsim, go-ipmi's
// server in front of the VM's serial socket) and behind OpenIPMI's
// ipmi_sim (its own process, on the VM's second UART over TCP), against
// the guest's own time: the same framed line typed by the same
// target.Target straight into the same serial chardev, no BMC in between
// ("direct"). The samples alternate on one boot: a serial switch in front
// of the chardev gives its output to the BMC or to the direct console. The
// figure is basalt-ms/cmd beside direct-ms/cmd (medians, with the spread)
// and overhead-ms/cmd, the median of the paired differences. Goal: ≤ 20 ms
// above the guest's own time (issue #10; ~100 ms with go-ipmi's 100 ms
// SOL poll). The boot itself is not timed.
func BenchmarkRunTrue(b *testing.B) {
	needQemu(b)
	needE2E(b)
	k := debianKernel(b)
	dir := b.TempDir()
	img := buildInitrd(b, dir, "bench-run", k)

	b.Run("basalt-bmc", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		vm, err := Start(ctx, Config{Kernel: k.Vmlinuz, Initrd: img, Append: "console=ttyS0 panic=-1 no_timer_check basalt.netwait=0"})
		if err != nil {
			b.Fatal(err)
		}
		defer vm.Close()
		sw := newSerialSwitch(vm.Serial())
		bmc := bmcsim.New(bmcsim.Config{Serial: sw.side[0], Node: NewNode(vm)})
		if err := bmc.Start(ctx, "127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
		defer bmc.Close()
		benchRun(ctx, b, bmc.IPMI(), sw, func() error {
			ctl := ipmi.NewClient("qemu", bmc.IPMI(), ipmi.Options{})
			defer ctl.Close()
			return ctl.Power(ctx, ipmi.On)
		})
	})

	b.Run("ipmi_sim", func(b *testing.B) {
		if _, err := exec.LookPath("ipmi_sim"); err != nil {
			b.Skip("ipmi_sim not installed (Debian package openipmi)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bmcAddr := freeAddr(b, "udp")
		serialAddr, qemuAddr := freeAddr(b, "tcp"), freeAddr(b, "tcp")
		s, err := WriteIPMISim(b.TempDir(), IPMISimConfig{Addr: bmcAddr, User: "admin", Password: "s3cret-pw", SerialAddr: serialAddr})
		if err != nil {
			b.Fatal(err)
		}
		// ipmi_sim's SOL connects to serialAddr (the switch); qemu's
		// chardev listens on qemuAddr.
		s.serialHost, s.serialPort, _ = net.SplitHostPort(qemuAddr)
		vm, err := Start(ctx, Config{Kernel: k.Vmlinuz, Initrd: img,
			Append: "console=ttyS1 panic=-1 no_timer_check basalt.netwait=0", ExtraArgs: s.QemuArgs()})
		if err != nil {
			b.Fatal(err)
		}
		defer vm.Close()
		go newConsole().copyFrom(vm.Serial())
		// ipmi_sim connects to the switch, which holds the one connection
		// qemu's chardev takes.
		line, err := net.Dial("tcp", qemuAddr)
		if err != nil {
			b.Fatal(err)
		}
		defer line.Close()
		sw := newSerialSwitch(line)
		ln, err := net.Listen("tcp", serialAddr)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go bridge(ln, sw.side[0])
		sim := exec.Command("ipmi_sim", s.Args()...)
		sim.Dir = s.Dir
		sim.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := sim.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			sim.Process.Kill() // by PID: the ipmi_sim this benchmark started
			sim.Wait()
		}()
		host, port, _ := net.SplitHostPort(bmcAddr)
		var portN int
		fmt.Sscan(port, &portN)
		cfg := lab.IPMI{Host: host, Port: portN, User: "admin", Password: lab.NewSecret("IPMI_SIM_PW", "s3cret-pw"),
			CipherSuites: []int{3}, Timeout: 500 * time.Millisecond, Retries: 2}
		ctl := ipmi.NewClient("qemu-ipmisim", cfg, ipmi.Options{})
		defer ctl.Close()
		for {
			if _, err := ctl.PowerStatus(ctx); err == nil {
				break
			} else if ctx.Err() != nil {
				b.Fatalf("ipmi_sim did not answer: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		benchRun(ctx, b, cfg, sw, func() error { return ctl.Power(ctx, ipmi.On) })
	})
}

// freeAddr returns a 127.0.0.1 address free for network ("tcp", "udp").
func freeAddr(b *testing.B, network string) string {
	b.Helper()
	var c io.Closer
	var addr string
	if network == "udp" {
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		c, addr = l, l.LocalAddr().String()
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		c, addr = l, l.Addr().String()
	}
	c.Close()
	return addr
}

// bridge connects each client of ln (ipmi_sim's SOL, which reconnects
// after a failure) to side, one at a time.
func bridge(ln net.Listener, side *switchSide) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			io.Copy(c, side) // until c fails
			close(done)
		}()
		io.Copy(side, c)
		c.Close()
		<-done
	}
}

// benchRun opens SOL to cfg's BMC and a direct console on sw's side 1,
// powers the guest on, waits for the master image's prompt and times
// target.run("true") on each, alternately.
func benchRun(ctx context.Context, b *testing.B, cfg lab.IPMI, sw *serialSwitch, powerOn func() error) {
	con := sol.New(ipmi.NewSOL("bench", cfg, ipmi.SOLOptions{}), sol.Options{})
	if err := con.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer con.Close()
	if err := powerOn(); err != nil {
		b.Fatal(err)
	}
	if _, err := con.Expect(ctx, expect.Literal(initrd.DefaultPrompt)); err != nil {
		b.Fatal(err)
	}
	direct := sol.New(directSerial{sw.side[1]}, sol.Options{})
	if err := direct.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	prompt := regexp.QuoteMeta(initrd.DefaultPrompt)
	overSOL := target.New(target.Config{Console: con, Prompt: prompt})
	onSerial := target.New(target.Config{Console: direct, Prompt: prompt})
	sample := func(side int, t *target.Target) float64 {
		sw.give(side)
		start := time.Now()
		if _, err := t.Run(ctx, "true", true); err != nil {
			b.Fatal(err)
		}
		return float64(time.Since(start).Microseconds()) / 1000
	}
	sample(0, overSOL) // warm up: the first frame of each
	sample(1, onSerial)
	var viaSOL, viaSerial, diff []float64
	for i := 0; b.Loop(); i++ {
		for r := range runTrueRounds {
			var s, d float64
			if (i+r)%2 == 0 {
				s, d = sample(0, overSOL), sample(1, onSerial)
			} else {
				d, s = sample(1, onSerial), sample(0, overSOL)
			}
			viaSOL, viaSerial, diff = append(viaSOL, s), append(viaSerial, d), append(diff, s-d)
		}
	}
	b.ReportMetric(median(viaSOL), "basalt-ms/cmd")
	b.ReportMetric(slices.Min(viaSOL), "basalt-min-ms/cmd")
	b.ReportMetric(slices.Max(viaSOL), "basalt-max-ms/cmd")
	b.ReportMetric(median(viaSerial), "direct-ms/cmd")
	b.ReportMetric(slices.Min(viaSerial), "direct-min-ms/cmd")
	b.ReportMetric(slices.Max(viaSerial), "direct-max-ms/cmd")
	b.ReportMetric(median(diff), "overhead-ms/cmd")
	b.ReportMetric(0, "ns/op")
}

// median of xs (not empty).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
