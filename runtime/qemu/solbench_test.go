package qemu

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
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

// BenchmarkRunTrue measures the round trip of target.run("true") on a
// booted qemu guest, over SOL behind basalt's own BMC (go-ipmi's server in
// front of the VM) and behind OpenIPMI's ipmi_sim. The guest's own time
// for "true" (a shell builtin) is well under a millisecond, so ms/cmd is
// basalt's overhead. Goal: ≤ 20 ms per command (it was ~100 ms with
// go-ipmi's 100 ms SOL poll); s/5-cmds is the job time outside the boot for
// five commands, to set beside LAVA's 2.6 s measured on the same boot
// (goal ≤ 0.1 s). The boot itself is not timed.
func BenchmarkRunTrue(b *testing.B) {
	needQemu(b)
	needE2E(b)
	k := debianKernel(b)
	dir := b.TempDir()
	img := buildInitrd(b, dir, "bench-run", k)

	b.Run("basalt-bmc", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		vm, err := Start(ctx, Config{Kernel: k.Vmlinuz, Initrd: img, Append: "console=ttyS0 panic=-1 basalt.netwait=0"})
		if err != nil {
			b.Fatal(err)
		}
		defer vm.Close()
		bmc := bmcsim.New(bmcsim.Config{Serial: vm.Serial(), Node: NewNode(vm)})
		if err := bmc.Start(ctx, "127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
		defer bmc.Close()
		benchRun(ctx, b, bmc.IPMI(), func() error {
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
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		bmcAddr := l.LocalAddr().String()
		l.Close()
		t, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		serialAddr := t.Addr().String()
		t.Close()
		s, err := WriteIPMISim(b.TempDir(), IPMISimConfig{Addr: bmcAddr, User: "admin", Password: "s3cret-pw", SerialAddr: serialAddr})
		if err != nil {
			b.Fatal(err)
		}
		vm, err := Start(ctx, Config{Kernel: k.Vmlinuz, Initrd: img,
			Append: "console=ttyS1 panic=-1 basalt.netwait=0", ExtraArgs: s.QemuArgs()})
		if err != nil {
			b.Fatal(err)
		}
		defer vm.Close()
		go newConsole().copyFrom(vm.Serial())
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
		benchRun(ctx, b, cfg, func() error { return ctl.Power(ctx, ipmi.On) })
	})
}

// benchRun opens SOL to cfg's BMC, powers the guest on, waits for the
// master image's prompt and times target.run("true").
func benchRun(ctx context.Context, b *testing.B, cfg lab.IPMI, powerOn func() error) {
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
	tgt := target.New(target.Config{Console: con, Prompt: regexp.QuoteMeta(initrd.DefaultPrompt)})
	if _, err := tgt.Run(ctx, "true", true); err != nil { // warm up: the first frame
		b.Fatal(err)
	}
	start := time.Now()
	n := 0
	for b.Loop() {
		if _, err := tgt.Run(ctx, "true", true); err != nil {
			b.Fatal(err)
		}
		n++
	}
	per := time.Since(start) / time.Duration(n)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/cmd")
	b.ReportMetric(5*per.Seconds(), "s/5-cmds")
	b.ReportMetric(0, "ns/op")
}
