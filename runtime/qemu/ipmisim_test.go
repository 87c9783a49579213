package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/runtime/initrd"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// needTool skips tb unless bin is on $PATH.
func needTool(tb testing.TB, bin, pkg string) {
	tb.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		tb.Skipf("%s not installed (apt-get install %s)", bin, pkg)
	}
}

// freePort returns a port that was free on 127.0.0.1 for network ("tcp" or
// "udp"). Another process could take it before it is used; the tests
// accept that small race because ipmi_sim and qemu both need the port
// before they start.
func freePort(t *testing.T, network string) string {
	t.Helper()
	var addr net.Addr
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = c.LocalAddr()
		c.Close()
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr()
		l.Close()
	}
	return addr.String()
}

func TestWriteIPMISimRefuses(t *testing.T) {
	const pw = "s3cret-pw"
	good := IPMISimConfig{Addr: "127.0.0.1:9623", Password: pw, SerialAddr: "127.0.0.1:9624"}
	for _, tt := range []struct {
		name string
		edit func(*IPMISimConfig)
	}{
		{"no addr", func(c *IPMISimConfig) { c.Addr = "" }},
		{"no serial", func(c *IPMISimConfig) { c.SerialAddr = "127.0.0.1" }},
		{"no password", func(c *IPMISimConfig) { c.Password = "" }},
		{"long password", func(c *IPMISimConfig) { c.Password = strings.Repeat("x", 21) }},
		{"quoted password", func(c *IPMISimConfig) { c.Password = `pw"x` }},
		{"quote in user", func(c *IPMISimConfig) { c.User = "a'b" }},
		{"bios default", func(c *IPMISimConfig) { c.DefaultBoot = "bios" }},
	} {
		cfg := good
		tt.edit(&cfg)
		_, err := WriteIPMISim(t.TempDir(), cfg)
		if err == nil {
			t.Errorf("WriteIPMISim(%s) = nil error, want one", tt.name)
			continue
		}
		if cfg.Password != "" && strings.Contains(err.Error(), cfg.Password) {
			t.Errorf("WriteIPMISim(%s) error %q holds the password", tt.name, err)
		}
	}
	s, err := WriteIPMISim(t.TempDir(), good)
	if err != nil {
		t.Fatalf("WriteIPMISim(good) = %v", err)
	}
	conf, err := os.ReadFile(s.LanConf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"addr 127.0.0.1 9623", `sol "tcp:127.0.0.1:9624" 115200`,
		`chassis_control "` + s.ChassisControl + ` 0x20"`, `user 2 true "admin" "` + pw + `" admin`} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("lan.conf lacks %q:\n%s", want, conf)
		}
	}
	if fi, err := os.Stat(s.StateDir); err != nil || !fi.IsDir() {
		t.Errorf("state dir %s: %v", s.StateDir, err)
	}
}

// chassisControl runs the script as ipmi_sim does and returns its output.
func chassisControl(t *testing.T, s *IPMISim, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(s.ChassisControl, append([]string{"0x20"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestChassisControl runs the chassis_control script by hand against a
// paused qemu with a blank disk (no kernel: SeaBIOS's banner on ttyS0
// shows each boot): power, reset and the boot device become QMP commands
// on the script's own monitor while basalt keeps its QMP connection, and
// the process stays the same.
func TestChassisControl(t *testing.T) {
	needQemu(t)
	needTool(t, "socat", "socat")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := WriteIPMISim(dir, IPMISimConfig{Addr: "127.0.0.1:9", Password: "pw",
		SerialAddr: freePort(t, "tcp"), Disk: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	vm, err := Start(ctx, Config{Disk: disk, Memory: 64, ExtraArgs: s.QemuArgs()})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	con := newConsole()
	go con.copyFrom(vm.Serial())
	defer func() {
		if t.Failed() {
			t.Logf("serial:\n%s\nqemu:\n%s", con.String(), vm.Output())
		}
	}()
	pid := vm.PID()

	run := func(want string, args ...string) {
		t.Helper()
		out, err := chassisControl(t, s, args...)
		if err != nil || out != want {
			t.Fatalf("chassis_control %s = %q, %v, want %q", strings.Join(args, " "), out, err, want)
		}
	}
	running := func(want bool) {
		t.Helper()
		if on, err := vm.PowerState(ctx); err != nil || on != want {
			t.Fatalf("PowerState() = %v, %v, want %v", on, err, want)
		}
	}
	bootIndex := func(want int) {
		t.Helper()
		if idx, err := vm.BootIndex(ctx, "disk"); err != nil || idx != want {
			t.Errorf("BootIndex(disk) = %d, %v, want %d", idx, err, want)
		}
	}

	run("power:0\nboot:none\n", "get", "power", "boot")
	run("", "set", "boot", "pxe")
	run("boot:pxe\n", "get", "boot")
	run("", "set", "power", "1")
	running(true)
	bootIndex(2) // pxe first; the disk is second
	off, err := con.waitFrom(ctx, 0, "SeaBIOS (version")
	if err != nil {
		t.Fatal(err)
	}
	run("power:1\n", "get", "power")
	run("", "set", "power", "1") // already on: left alone
	run("", "set", "power", "0")
	running(false)
	run("power:0\n", "get", "power")

	run("", "set", "boot", "default", "power", "1")
	running(true)
	bootIndex(1)
	if off, err = con.waitFrom(ctx, off, "SeaBIOS (version"); err != nil {
		t.Fatalf("second power on: %v", err)
	}
	run("", "set", "boot", "pxe", "reset", "1")
	running(true)
	bootIndex(2)
	if _, err = con.waitFrom(ctx, off, "SeaBIOS (version"); err != nil {
		t.Fatalf("reset: %v", err)
	}

	for _, args := range [][]string{{"get", "reset"}, {"set", "boot", "floppy"}, {"set", "power"}, {"frob"}} {
		if out, err := chassisControl(t, s, args...); err == nil || out == "" {
			t.Errorf("chassis_control %s = %q, %v, want a message and an error", strings.Join(args, " "), out, err)
		}
	}
	if vm.PID() != pid {
		t.Errorf("qemu pid changed from %d to %d", pid, vm.PID())
	}
	vm.Close()
	// With qemu gone the script reports the failure instead of "off".
	if out, err := chassisControl(t, s, "get", "power"); err == nil || !strings.HasPrefix(out, "qmp: ") {
		t.Errorf("chassis_control get power without qemu = %q, %v, want a qmp error", out, err)
	}
}

// TestIPMISimBMC is OpenIPMI's ipmi_sim as the BMC of one long-lived qemu:
// basalt's IPMI client (cipher suite 3) powers a Debian kernel and a
// runtime/initrd master image on and off through the chassis_control
// script, basalt's SOL transport under a sol.Console reads ttyS1 through
// ipmi_sim, and ipmitool reads back the boot device basalt set.
func TestIPMISimBMC(t *testing.T) {
	needQemu(t)
	needE2E(t)
	needTool(t, "ipmi_sim", "openipmi")
	needTool(t, "socat", "socat")
	needTool(t, "ipmitool", "ipmitool")
	k := debianKernel(t)
	dir := t.TempDir()
	img := buildInitrd(t, dir, "e2e-ipmisim", k)
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	const user, password = "admin", "s3cret-pw"
	bmcAddr := freePort(t, "udp")
	s, err := WriteIPMISim(dir, IPMISimConfig{Addr: bmcAddr, User: user, Password: password,
		SerialAddr: freePort(t, "tcp"), Disk: true})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	// The kernel and the master image's shell on ttyS1, ipmi_sim's SOL.
	// (With "console=ttyS0 console=ttyS1" this kernel made ttyS0
	// /dev/console and SOL saw nothing.)
	vm, err := Start(ctx, Config{Kernel: k.Vmlinuz, Initrd: img, Disk: disk,
		Append:    "console=ttyS1 panic=-1 basalt.netwait=0",
		ExtraArgs: s.QemuArgs()})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	ttyS0 := newConsole()
	go ttyS0.copyFrom(vm.Serial())
	pid := vm.PID()

	// ipmi_sim after qemu, so that its SOL connects to ttyS1 at once.
	sim := exec.Command("ipmi_sim", s.Args()...)
	sim.Dir = s.Dir
	simOut := newConsole()
	sim.Stdout, sim.Stderr = simOut, simOut
	sim.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sim.Process.Kill() // by PID: the process this test started
		sim.Wait()
	}()

	host, port, _ := net.SplitHostPort(bmcAddr)
	var portN int
	fmt.Sscan(port, &portN)
	cfg := lab.IPMI{Host: host, Port: portN, User: user, Password: lab.NewSecret("IPMI_SIM_PW", password),
		CipherSuites: []int{3}, Timeout: 500 * time.Millisecond, Retries: 2}
	var evMu sync.Mutex
	var ipmiEvents []string
	ctl := ipmi.NewClient("qemu-ipmisim", cfg, ipmi.Options{Emit: func(typ string, f map[string]any) {
		evMu.Lock()
		defer evMu.Unlock()
		ipmiEvents = append(ipmiEvents, fmt.Sprintf("%v=%v", f["command"], f["outcome"]))
	}})
	defer ctl.Close()
	for {
		on, err := ctl.PowerStatus(ctx)
		if err == nil {
			if on {
				t.Fatal("PowerStatus() before power on = true, want false")
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("ipmi_sim did not answer: %v\n%s", err, simOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("qemu and ipmi_sim up after %v", time.Since(start).Round(100*time.Millisecond))

	capture := newConsole()
	con := sol.New(ipmi.NewSOL("qemu-ipmisim", cfg, ipmi.SOLOptions{}), sol.Options{
		Capture: capture, TestShellDelay: serialDelayMs * time.Millisecond})
	start = time.Now()
	if err := con.Start(ctx); err != nil {
		t.Fatalf("SOL: %v\n%s", err, simOut.String())
	}
	defer con.Close()
	con.SetMode(sol.ModeShell)
	t.Logf("SOL activated after %v", time.Since(start).Round(100*time.Millisecond))
	defer func() {
		if t.Failed() {
			t.Logf("SOL console (last 4 KiB):\n%s\nttyS0 (last 4 KiB):\n%s\nipmi_sim:\n%s\nqemu:\n%s",
				capture.tail(4096), ttyS0.tail(4096), simOut.String(), vm.Output())
		}
	}()

	bootparam := func(dev ipmi.Device, want string) {
		t.Helper()
		if err := ctl.SetBootDevice(ctx, dev, ipmi.BootOptions{}); err != nil {
			t.Fatalf("SetBootDevice(%s) = %v", dev, err)
		}
		out, err := exec.CommandContext(ctx, "ipmitool", "-I", "lanplus", "-H", host, "-p", port,
			"-U", user, "-P", password, "-C", "3", "-N", "1", "-R", "3",
			"chassis", "bootparam", "get", "5").CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("after SetBootDevice(%s): ipmitool chassis bootparam get 5 = %v\n%s\nwant %q", dev, err, out, want)
		}
	}
	boot := func(what string, power func() error) {
		t.Helper()
		start := time.Now()
		if err := power(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		ectx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if _, err := con.Expect(ectx, expect.Literal("basalt master image e2e-ipmisim")); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if _, err := con.Expect(ectx, expect.Literal(initrd.DefaultPrompt)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: prompt on SOL after %v", what, time.Since(start).Round(100*time.Millisecond))
	}
	run := func(cmd, want string) {
		t.Helper()
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := con.SendLine(ectx, cmd, sol.SendOptions{}); err != nil {
			t.Fatalf("send %q: %v", cmd, err)
		}
		if _, err := con.Expect(ectx, expect.Literal(want)); err != nil {
			t.Fatalf("run %q: %v", cmd, err)
		}
	}
	bootIndex := func(want int) {
		t.Helper()
		if idx, err := vm.BootIndex(ctx, "disk"); err != nil || idx != want {
			t.Errorf("BootIndex(disk) = %d, %v, want %d", idx, err, want)
		}
	}

	bootparam(ipmi.PXE, "Boot Device Selector : Force PXE")
	boot("power on", func() error { return ctl.Power(ctx, ipmi.On) })
	bootIndex(2) // pxe first: the disk second
	// The arithmetic makes the output differ from the echoed command.
	run("echo m-$((6*7)) >/tmp/m; cat /tmp/m", "m-42")

	if err := ctl.Power(ctx, ipmi.Off); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if st, err := vm.Status(ctx); err != nil || st.Running {
		t.Fatalf("VM status after power off = %+v, %v, want stopped", st, err)
	}
	if on, err := ctl.PowerStatus(ctx); err != nil || on {
		t.Fatalf("PowerStatus() after power off = %v, %v, want false", on, err)
	}

	bootparam(ipmi.Disk, "Boot Device Selector : Force Boot from default Hard-Drive")
	boot("power on again", func() error { return ctl.Power(ctx, ipmi.On) })
	bootIndex(1)
	run("cat /tmp/m 2>/dev/null || echo fresh-$((1+1))", "fresh-2")

	// A long deploy leaves the BMC idle: ipmi_sim forgets sessions silent
	// for 30 s, so the client keeps its own alive and the reset goes out
	// on the same session.
	time.Sleep(40 * time.Second)
	boot("reset after 40 s idle", func() error { return ctl.Power(ctx, ipmi.Reset) })
	run("echo up-$((2+3))", "up-5")

	if on, err := ctl.PowerStatus(ctx); err != nil || !on {
		t.Errorf("PowerStatus() at the end = %v, %v, want true", on, err)
	}
	if vm.PID() != pid {
		t.Errorf("qemu pid changed from %d to %d across power cycles", pid, vm.PID())
	}
	if n := con.Losses(); n != 0 {
		t.Errorf("SOL lost %d times", n)
	}
	// Past the polls that waited for ipmi_sim to come up, one session
	// served the whole test: no new one, no lost keepalive.
	evMu.Lock()
	opened := false
	for _, e := range ipmiEvents {
		switch {
		case e == "open session=ok" && !opened:
			opened = true
		case opened && (strings.HasPrefix(e, "open session=") || strings.HasPrefix(e, "keepalive=")):
			t.Errorf("IPMI session not kept: %s in %v", e, ipmiEvents)
		}
	}
	evMu.Unlock()
	select {
	case <-vm.Exited():
		t.Error("qemu exited during the test")
	default:
	}
}
