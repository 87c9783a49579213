package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/initrd"
)

// serialDelayMs is the pause between typed characters: SOL and the guest's
// UART lose characters typed at line speed.
const serialDelayMs = 30

// TestDirectBootBMC is the qemu device type end to end: a Debian kernel
// and a runtime/initrd master image booted directly by qemu, whose BMC is
// bmcsim (go-ipmi's server) driven by basalt's IPMI client, with the
// console read over IPMI SOL. It powers on, runs a command, powers off and
// on again (the same qemu process; the shell's state is gone) and resets.
func TestDirectBootBMC(t *testing.T) {
	needQemu(t)
	needE2E(t)
	k := debianKernel(t)
	dir := t.TempDir()
	img := buildInitrd(t, dir, "e2e-qemu", k)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serialLog := filepath.Join(dir, "serial.log")
	vm, err := Start(ctx, Config{Kernel: k.Vmlinuz, Initrd: img, Append: "console=ttyS0 panic=-1 basalt.netwait=0", SerialLog: serialLog})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	node := NewNode(vm)
	bmc := bmcsim.New(bmcsim.Config{Serial: vm.Serial(), Node: node})
	if err := bmc.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer bmc.Close()
	ctl := ipmi.NewClient("qemu", bmc.IPMI(), ipmi.Options{})
	defer ctl.Close()
	sol, err := ipmi.NewSOL("qemu", bmc.IPMI(), ipmi.SOLOptions{}).Open(ctx)
	if err != nil {
		t.Fatalf("SOL: %v", err)
	}
	defer sol.Close()
	con := newConsole()
	go con.copyFrom(sol)
	defer func() {
		if t.Failed() {
			raw, _ := os.ReadFile(serialLog)
			if len(raw) > 4096 {
				raw = raw[len(raw)-4096:]
			}
			t.Logf("SOL console (last 4 KiB):\n%s\nserial log (last 4 KiB):\n%s\nqemu:\n%s", con.tail(4096), raw, vm.Output())
		}
	}()
	pid := vm.PID()

	boot := func(what string, from int, power func() error) int {
		t.Helper()
		start := time.Now()
		if err := power(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := node.Err(); err != nil {
			t.Fatalf("%s: node: %v", what, err)
		}
		off, err := con.waitFrom(ctx, from, "basalt master image e2e-qemu")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if off, err = con.waitFrom(ctx, off, initrd.DefaultPrompt); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: prompt after %v", what, time.Since(start).Round(100*time.Millisecond))
		return off
	}
	run := func(from int, cmd, want string) int {
		t.Helper()
		if err := typeSlowly(ctx, sol, cmd+"\n", serialDelayMs); err != nil {
			t.Fatalf("type %q: %v", cmd, err)
		}
		off, err := con.waitFrom(ctx, from, want)
		if err != nil {
			t.Fatalf("run %q: %v", cmd, err)
		}
		return off
	}

	if on, err := ctl.PowerStatus(ctx); err != nil || on {
		t.Fatalf("PowerStatus() before power on = %v, %v, want off", on, err)
	}
	off := boot("power on", 0, func() error { return ctl.Power(ctx, ipmi.On) })
	// The arithmetic makes the output differ from the echoed command.
	off = run(off, "echo m-$((6*7)) >/tmp/m; cat /tmp/m", "m-42")

	if err := ctl.Power(ctx, ipmi.Off); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if s, err := vm.Status(ctx); err != nil || s.Running {
		t.Fatalf("VM status after power off = %+v, %v, want stopped", s, err)
	}
	off = boot("power on again", off, func() error { return ctl.Power(ctx, ipmi.On) })
	off = run(off, "cat /tmp/m 2>/dev/null || echo fresh-$((1+1))", "fresh-2")

	off = boot("reset", off, func() error { return ctl.Power(ctx, ipmi.Reset) })
	off = run(off, "echo up-$((2+3))", "up-5")

	// A guest poweroff pauses the VM (qemu stays); the BMC still counts
	// the chassis as on, so a power cycle brings it back.
	if err := typeSlowly(ctx, sol, "poweroff\n", serialDelayMs); err != nil {
		t.Fatal(err)
	}
	for {
		s, err := vm.Status(ctx)
		if err != nil {
			t.Fatalf("status after guest poweroff: %v", err)
		}
		if !s.Running {
			t.Logf("guest poweroff: VM status %q", s.Status)
			break
		}
		if err := sleep(ctx, 200); err != nil {
			t.Fatalf("VM still running after guest poweroff: %v", err)
		}
	}
	off = boot("cycle after guest poweroff", off, func() error { return ctl.Power(ctx, ipmi.Cycle) })
	run(off, "echo back-$((3+4))", "back-7")

	if vm.PID() != pid {
		t.Errorf("qemu pid changed from %d to %d across power cycles", pid, vm.PID())
	}
	select {
	case <-vm.Exited():
		t.Error("qemu exited during the test")
	default:
	}
}

// TestPXEBoot PXE-boots the master image through the NIC's iPXE ROM in a
// network namespace of the test's own: dnsmasq is the site DHCP server
// (addresses and router advertisements, no boot file), builtins/pxe's proxy
// DHCP hands iPXE its script and serves kernel and initrd over HTTP. The
// boot device comes from the BMC's side (Node.PowerOn(pxe)); a second
// power on with disk first shows SeaBIOS trying the disk before the NIC.
func TestPXEBoot(t *testing.T) {
	needQemu(t)
	needRoot(t)
	needE2E(t)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq not installed (apt-get install dnsmasq-base)")
	}
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-e1000.rom"); err != nil {
		t.Skip("no iPXE ROM for e1000 (apt-get install ipxe-qemu)")
	}
	k := debianKernel(t)
	dir := t.TempDir()
	jobDir := filepath.Join(dir, "job")
	if err := os.Mkdir(jobDir, 0o755); err != nil {
		t.Fatal(err)
	}
	buildInitrd(t, jobDir, "e2e-pxe", k, "e1000")
	copyFile(t, k.Vmlinuz, filepath.Join(jobDir, "vmlinuz"))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns, err := NewNetNS(fmt.Sprintf("basalt-pxe-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	a := ns.Addr.Addr().As4()
	subnet := fmt.Sprintf("%d.%d.%d", a[0], a[1], a[2])

	// The site DHCP server: addresses and RAs only.
	dnsmasq := ns.Command(ctx, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface="+ns.Bridge, "--bind-interfaces", "--pid-file=", "--no-resolv", "--no-hosts",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--dhcp-range="+subnet+".100,"+subnet+".199,255.255.255.0,1h",
		"--enable-ra", "--dhcp-range=::,constructor:"+ns.Bridge+",ra-only")
	dnsLog := newConsole()
	dnsmasq.Stdout, dnsmasq.Stderr = dnsLog, dnsLog
	if err := dnsmasq.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	defer func() {
		dnsmasq.Process.Kill() // by PID: the process this test started
		dnsmasq.Wait()
	}()

	events := newConsole()
	srv := pxe.NewServer(pxe.Config{
		TFTPAddr:      ns.Addr.Addr().String() + ":69",
		HTTPAddr:      ns.Addr.Addr().String() + ":8080",
		DHCP:          "proxy",
		DHCPInterface: ns.Bridge,
		Emit: func(typ string, f map[string]any) {
			fmt.Fprintf(events, "%s %v\n", typ, f)
		},
	})
	if err := ns.Exec(func() error { return srv.Start(ctx) }); err != nil {
		t.Fatalf("pxe server in the namespace: %v", err)
	}
	defer srv.Close()
	const mac = "52:54:00:ba:5a:17"
	served, err := srv.Serve(ctx, pxe.Boot{
		Kernel: "vmlinuz", Initrd: "initrd.gz", JobDir: jobDir, MAC: mac, Loader: "ipxe",
		Append: "console=ttyS0 panic=-1",
	})
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}

	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	vm, err := Start(ctx, Config{NetNS: ns.Name, NIC: NIC{Tap: ns.Tap, MAC: mac}, Disk: disk, DefaultBoot: BootDisk})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	con := newConsole()
	go con.copyFrom(vm.Serial())
	defer func() {
		if t.Failed() {
			t.Logf("console (last 6 KiB):\n%s\nqemu:\n%s\ndnsmasq:\n%s\npxe events:\n%s",
				con.tail(6144), vm.Output(), dnsLog.String(), events.String())
		}
	}()
	node := NewNode(vm)

	start := time.Now()
	if err := node.PowerOn(ctx, bmcsim.BootPXE); err != nil {
		t.Fatalf("power on (pxe): %v", err)
	}
	// SeaBIOS names each boot entry it tries; the NIC's (iPXE's BEV) is
	// "Booting from ROM".
	off, err := con.waitFrom(ctx, 0, "Booting from ROM")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(con.String()[:off], "Booting from Hard Disk") {
		t.Errorf("pxe boot tried the disk before the NIC")
	}
	if err := srv.WaitFetch(ctx, "initrd"); err != nil {
		t.Fatalf("WaitFetch(initrd): %v", err)
	}
	t.Logf("pxe: initrd fetched after %v", time.Since(start).Round(100*time.Millisecond))
	if off, err = con.waitFrom(ctx, off, "basalt master image e2e-pxe"); err != nil {
		t.Fatal(err)
	}
	if off, err = con.waitFrom(ctx, off, "basalt.nonce="+served.Nonce); err != nil {
		t.Fatal(err)
	}
	if off, err = con.waitFrom(ctx, off, initrd.DefaultPrompt); err != nil {
		t.Fatal(err)
	}
	t.Logf("pxe: master prompt after %v", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(con.String(), "basalt: loaded module e1000") {
		t.Errorf("the master image's /init did not report loading e1000")
	}
	if !strings.Contains(con.String(), "udhcpc: eth0 "+subnet+".") {
		t.Errorf("the master image got no address from the site DHCP server on eth0")
	}
	// The master image reaches the dispatcher's HTTP server over the bridge.
	if err := typeSlowly(ctx, vm.Serial(), "wget -q -O - "+served.URLs["ipxe"]+" | head -1 | tr a-z A-Z\n", serialDelayMs); err != nil {
		t.Fatal(err)
	}
	if off, err = con.waitFrom(ctx, off, "#!IPXE"); err != nil {
		t.Fatalf("wget from the master image: %v", err)
	}

	// Disk first: SeaBIOS tries the (empty) disk, then the NIC.
	if err := node.PowerOff(ctx); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if err := node.PowerOn(ctx, bmcsim.BootDisk); err != nil {
		t.Fatalf("power on (disk): %v", err)
	}
	diskAt, err := con.waitFrom(ctx, off, "Booting from Hard Disk")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := con.waitFrom(ctx, off, "Booting from ROM"); err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(con.String()[off:], "Booting from ROM"); off+i < diskAt {
		t.Errorf("disk-first boot tried the NIC before the disk")
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestModulesBoot boots a Debian kernel directly with a master initrd that
// carries e1000, virtio_pci and virtio_blk from the kernel's own modules
// (DebianKernel, initrd Options.Modules): the e1000 NIC has no network
// backend (nothing leaves qemu) and the disk is a small virtio-blk image.
// /init must load every module, after which the shell sees eth0 and reads
// the disk's first bytes from /dev/vda.
func TestModulesBoot(t *testing.T) {
	needQemu(t)
	needE2E(t)
	k := debianKernel(t)
	dir := t.TempDir()
	img := buildInitrd(t, dir, "e2e-modules", k, "e1000", "virtio_pci", "virtio_blk")
	disk := filepath.Join(dir, "disk.img")
	mark := fmt.Sprintf("basalt-disk-%d", time.Now().UnixNano())
	data := make([]byte, 1<<20)
	copy(data, mark+"\n")
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{
		Kernel: k.Vmlinuz, Initrd: img, Disk: disk,
		// Time enough for the driver to probe; DHCP on the peerless NIC
		// then fails after udhcpc's retries.
		Append: "console=ttyS0 panic=-1 basalt.netwait=10",
		// A NIC with no -netdev: the guest sees a card, nothing is sent
		// anywhere. romfile= skips the iPXE ROM a direct boot never uses.
		ExtraArgs: []string{"-device", "e1000,id=basalt-test-nic,mac=52:54:00:ba:5a:18,romfile="},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	con := newConsole()
	go con.copyFrom(vm.Serial())
	defer func() {
		if t.Failed() {
			t.Logf("console (last 6 KiB):\n%s\nqemu:\n%s", con.tail(6144), vm.Output())
		}
	}()
	start := time.Now()
	if err := vm.PowerOn(ctx, BootDefault); err != nil {
		t.Fatal(err)
	}
	off := 0
	for _, m := range []string{"e1000", "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"} {
		if off, err = con.waitFrom(ctx, off, "basalt: loaded module "+m+"\r\n"); err != nil {
			t.Fatalf("module %s: %v", m, err)
		}
	}
	t.Logf("modules loaded after %v", time.Since(start).Round(100*time.Millisecond))
	if off, err = con.waitFrom(ctx, off, "basalt master image e2e-modules"); err != nil {
		t.Fatal(err)
	}
	if off, err = con.waitFrom(ctx, off, initrd.DefaultPrompt); err != nil {
		t.Fatal(err)
	}
	t.Logf("prompt after %v", time.Since(start).Round(100*time.Millisecond))
	if strings.Contains(con.String(), "failed; see dmesg") {
		t.Errorf("an insmod failed")
	}
	// The typed line is echoed; its output differs from it.
	cmd := "echo nets=$(ls /sys/class/net | tr '\\n' ,) vda=$(head -c " + strconv.Itoa(len(mark)) + " /dev/vda)\n"
	if err := typeSlowly(ctx, vm.Serial(), cmd, serialDelayMs); err != nil {
		t.Fatal(err)
	}
	if _, err = con.waitFrom(ctx, off, "nets=eth0,lo, vda="+mark); err != nil {
		t.Fatalf("eth0 and /dev/vda: %v", err)
	}
	t.Logf("eth0 and /dev/vda seen after %v", time.Since(start).Round(100*time.Millisecond))
}
