package qemu

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	args, err := Args(Config{
		Kernel: "/k", Initrd: "/i", Append: "console=ttyS0",
		Disk: "/d.img", NIC: NIC{Tap: "tap0"}, DefaultBoot: BootPXE,
	}, "/run/x")
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg", "-cpu max", "-m 512", "-S", "-action shutdown=pause", "-display none",
		"-qmp unix:/run/x/qmp.sock,server=on,wait=off",
		"-serial chardev:basalt-serial0",
		"-fw_cfg name=etc/sercon-port,file=/run/x/sercon-port",
		"-kernel /k -initrd /i -append console=ttyS0",
		"-device virtio-blk-pci,drive=basalt-drive0,id=basalt-disk0,bootindex=2",
		"-device e1000,netdev=basalt-net0,mac=52:54:00:12:34:56,id=basalt-nic0,bootindex=1",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("Args() = %q, want it to contain %q", line, want)
		}
	}
	if slices.Contains(args, "-no-reboot") {
		t.Errorf("Args() has -no-reboot; a guest reboot and system_reset must reboot")
	}

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"comma in a path", Config{Disk: "/a,b"}},
		{"bad mac", Config{NIC: NIC{Tap: "tap0", MAC: "nope"}}},
		{"bad default boot", Config{DefaultBoot: "cdrom"}},
		{"bad disk model", Config{Disk: "/d", DiskModel: "floppy"}},
	} {
		if _, err := Args(tc.cfg, "/run/x"); err == nil {
			t.Errorf("Args(%s) = nil error, want one", tc.name)
		}
	}
}

func TestBootIndexes(t *testing.T) {
	for _, tc := range []struct {
		boot          BootDevice
		nic, diskWant int
	}{{BootPXE, 1, 2}, {BootDisk, 2, 1}} {
		nic, disk := bootIndexes(tc.boot)
		if nic != tc.nic || disk != tc.diskWant {
			t.Errorf("bootIndexes(%s) = %d, %d, want %d, %d", tc.boot, nic, disk, tc.nic, tc.diskWant)
		}
	}
}

// TestPowerCycle drives a real qemu with an empty disk through QMP: the VM
// starts paused, each power on runs SeaBIOS afresh (seen on the serial
// line through sercon), power off stops it, and qemu is never restarted.
func TestPowerCycle(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	vm, err := Start(ctx, Config{Disk: disk, Memory: 64})
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

	if on, err := vm.PowerState(ctx); err != nil || on {
		t.Fatalf("PowerState() after Start = %v, %v, want off", on, err)
	}
	off := 0
	for i := range 2 {
		if err := vm.PowerOn(ctx, BootDisk); err != nil {
			t.Fatalf("PowerOn #%d: %v", i+1, err)
		}
		if on, err := vm.PowerState(ctx); err != nil || !on {
			t.Fatalf("PowerState() after PowerOn = %v, %v, want on", on, err)
		}
		// Each boot prints the banner and fails on the empty disk.
		if off, err = con.waitFrom(ctx, off, "SeaBIOS (version"); err != nil {
			t.Fatalf("boot #%d: %v", i+1, err)
		}
		if off, err = con.waitFrom(ctx, off, "Booting from Hard Disk"); err != nil {
			t.Fatalf("boot #%d: %v", i+1, err)
		}
		if idx, err := vm.BootIndex(ctx, "disk"); err != nil || idx != 1 {
			t.Errorf("BootIndex(disk) = %d, %v, want 1", idx, err)
		}
		if err := vm.PowerOff(ctx); err != nil {
			t.Fatalf("PowerOff #%d: %v", i+1, err)
		}
		if on, err := vm.PowerState(ctx); err != nil || on {
			t.Fatalf("PowerState() after PowerOff = %v, %v, want off", on, err)
		}
	}
	if vm.PID() != pid {
		t.Errorf("qemu pid changed from %d to %d", pid, vm.PID())
	}
	select {
	case <-vm.Exited():
		t.Fatal("qemu exited during power cycles")
	default:
	}
	if err := vm.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	select {
	case <-vm.Exited():
	default:
		t.Error("qemu still running after Close")
	}
	if _, err := os.Stat(vm.dir); !os.IsNotExist(err) {
		t.Errorf("socket dir %s left behind (%v)", vm.dir, err)
	}
}

func TestStartFails(t *testing.T) {
	needQemu(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if vm, err := Start(ctx, Config{Disk: "/nonexistent/disk.img"}); err == nil {
		vm.Close()
		t.Fatal("Start with a missing disk = nil error, want one")
	} else if !strings.Contains(err.Error(), "exited") {
		t.Errorf("Start with a missing disk = %v, want qemu's exit reported", err)
	}
}

// hostLinks lists the host namespace's interfaces.
func hostLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

func TestNetNS(t *testing.T) {
	needRoot(t)
	name := "basalt-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405")
	before := hostLinks(t)
	ns, err := NewNetNS(name)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			ns.Close()
		}
	}()
	if _, err := NewNetNS(name); err == nil {
		t.Error("NewNetNS of an existing name = nil error, want one")
	}

	out, err := exec.Command("ip", "-n", name, "-br", "addr", "show", "dev", ns.Bridge).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ns.Addr.String()) || !strings.Contains(string(out), ns.Addr6.String()) {
		t.Errorf("ip -n %s addr show %s = %q, %v; want %s and %s", name, ns.Bridge, out, err, ns.Addr, ns.Addr6)
	}
	out, err = exec.Command("ip", "-n", name, "-d", "link", "show", ns.Tap).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "master "+ns.Bridge) || !strings.Contains(string(out), "tun") {
		t.Errorf("ip -n %s link show %s = %q, %v; want a tap on %s", name, ns.Tap, out, err, ns.Bridge)
	}

	// Inside, the bridge address can be bound; back outside it cannot,
	// which shows Exec returned the thread to the host namespace.
	var inside net.Listener
	err = ns.Exec(func() error {
		l, err := net.Listen("tcp", net.JoinHostPort(ns.Addr.Addr().String(), "0"))
		inside = l
		return err
	})
	if err != nil {
		t.Fatalf("Exec(listen on %s) = %v", ns.Addr.Addr(), err)
	}
	// The listener stays in the namespace after Exec returns.
	go func() {
		c, err := inside.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var got []byte
	err = ns.Exec(func() error {
		c, err := net.Dial("tcp", inside.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		got = make([]byte, 2)
		_, err = c.Read(got)
		return err
	})
	if err != nil || string(got) != "hi" {
		t.Errorf("dial inside = %q, %v, want hi", got, err)
	}
	inside.Close()
	for range 4 { // runs on whichever thread the scheduler picks
		if l, err := net.Listen("tcp", net.JoinHostPort(ns.Addr.Addr().String(), "0")); err == nil {
			l.Close()
			t.Fatalf("listening on %s outside the namespace worked; the host has the address", ns.Addr.Addr())
		}
	}
	if err := ns.Exec(func() error { return os.ErrExist }); err != os.ErrExist {
		t.Errorf("Exec(fn) = %v, want fn's error", err)
	}

	closed = true
	if err := ns.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", name)); !os.IsNotExist(err) {
		t.Errorf("/run/netns/%s still there after Close (%v)", name, err)
	}
	out, _ = exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), name) {
		t.Errorf("ip netns list after Close = %q, still has %s", out, name)
	}
	// Other tests may add host interfaces meanwhile; ours must not be there.
	after := hostLinks(t)
	for _, l := range []string{ns.Bridge, ns.Tap} {
		if slices.Contains(after, l) && !slices.Contains(before, l) {
			t.Errorf("host namespace gained %s: before %v, after %v", l, before, after)
		}
	}
}
