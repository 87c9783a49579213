package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/qemu"
	"github.com/creack/pty"
)

// diskOSInit is /init of the "installed OS" the qemu e2e job deploys: it
// boots from the disk to a login prompt, then a root shell.
const diskOSInit = `#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo
echo "Basalt Disk OS (qemu e2e) disk-os ttyS0"
echo
while :; do
	printf 'disk-os login: '
	read user || sleep 1
	[ -n "$user" ] && break
done
echo "Welcome to Basalt Disk OS"
export PS1='root@disk-os:~# ' HOME=/root
exec setsid cttyhack sh
`

const syslinuxCfg = `SERIAL 0 115200
DEFAULT disk-os
PROMPT 0
TIMEOUT 0
LABEL disk-os
  KERNEL vmlinuz
  INITRD diskos.gz
  APPEND console=ttyS0,115200 quiet
`

// qemuLab is the e2e lab: basalt built, a Debian kernel, the master initrd
// and a disk image in jobDir/images/qemu, a network namespace with dnsmasq,
// (in namespace netns) and lab qemu01, a VM basalt starts. It skips without the tools.
type qemuLab struct {
	dir, bin, jobDir, images, labDir string
	ns                               *qemu.NetNS
}

func newQemuLab(t *testing.T, ctx context.Context, netns string) *qemuLab {
	if os.Getenv("BASALT_E2E") == "" {
		t.Skip("set BASALT_E2E=1 (make e2e) to boot a real kernel under qemu")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.vfat", "mcopy", "syslinux", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make e2e installs qemu-system-x86 ipxe-qemu dnsmasq-base dosfstools mtools syslinux)", tool)
		}
	}
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-e1000.rom"); err != nil {
		t.Skip("no iPXE ROM for e1000 (apt-get install ipxe-qemu)")
	}
	if _, err := exec.LookPath("dnsmasq"); err != nil && netns != "" {
		t.Skip("dnsmasq not installed (apt-get install dnsmasq-base)")
	}
	dir := t.TempDir()
	shared := e2eShared(t, ctx)
	bin := filepath.Join(dir, "basalt")
	must(t, os.Link(shared.bin, bin))

	// The job's directory: the job and its images.
	jobDir := filepath.Join(dir, "job")
	images := filepath.Join(jobDir, "images", "qemu")
	must(t, os.MkdirAll(images, 0o755))
	src, err := os.ReadFile(filepath.Join("..", "..", "jobs", "qemu-master.star"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(jobDir, "qemu-master.star"), src, 0o644))
	for _, name := range []string{"vmlinuz", "master.cpio.gz", "disk.img.gz"} {
		must(t, os.Link(filepath.Join(shared.images, name), filepath.Join(images, name)))
	}

	if netns == "" {
		// segment = "netns": basalt makes the network of each job itself.
		return &qemuLab{dir: dir, bin: bin, jobDir: jobDir, images: images}
	}
	// The lab's network: a namespace with a bridge and the VM's tap.
	ns, err := qemu.NewNetNS(netns)
	if err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	a := ns.Addr.Addr().As4()
	subnet := fmt.Sprintf("%d.%d.%d", a[0], a[1], a[2])
	dnsmasq := ns.Command(ctx, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface="+ns.Bridge, "--bind-interfaces", "--pid-file=", "--no-resolv", "--no-hosts",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--dhcp-range="+subnet+".100,"+subnet+".199,255.255.255.0,1h",
		"--enable-ra", "--dhcp-range=::,constructor:"+ns.Bridge+",ra-only")
	dnsLog, err := os.Create(filepath.Join(dir, "dnsmasq.log"))
	must(t, err)
	dnsmasq.Stdout, dnsmasq.Stderr = dnsLog, dnsLog
	must(t, dnsmasq.Start())
	t.Cleanup(func() {
		dnsmasq.Process.Kill() // by PID: the process this test started
		dnsmasq.Wait()
	})

	labDir := filepath.Join(dir, "lab")
	must(t, os.MkdirAll(filepath.Join(labDir, "devices"), 0o755))
	must(t, os.WriteFile(filepath.Join(labDir, "lab.star"), []byte(fmt.Sprintf(`lab(
    name = "qemu-e2e",
    tftp = "%[1]s:69",
    http = "%[1]s:8080",
    dhcp = "proxy",
    dhcp_interface = %[2]q,
    lock_dir = %[3]q,
    cache_dir = %[4]q,
)
`, ns.Addr.Addr(), ns.Bridge, filepath.Join(dir, "locks"), filepath.Join(dir, "cache"))), 0o644))
	must(t, os.WriteFile(filepath.Join(labDir, "devices", "qemu01.star"), []byte(fmt.Sprintf(
		"device(name = \"qemu01\", type = \"qemu\", mac = \"52:54:00:be:e2:01\", vm_tap = %q, vm_disk_mb = 64)\n", ns.Tap)), 0o644))

	return &qemuLab{dir: dir, bin: bin, jobDir: jobDir, images: images, labDir: labDir, ns: ns}
}

// e2eBuild is what every qemu lab of the package's tests starts from,
// built once per test binary: basalt, a Debian kernel, the master initrd
// and the disk image. Each lab gets hard links to them (nothing writes
// them) instead of five minutes of rebuilding in `make e2e`.
type e2eBuild struct {
	bin, images string
}

var (
	e2eOnce   sync.Once
	e2eBuilt  *e2eBuild
	e2eErr    error
	e2eShared = func(t *testing.T, ctx context.Context) *e2eBuild {
		t.Helper()
		e2eOnce.Do(func() { e2eBuilt, e2eErr = buildE2E(ctx) })
		if e2eErr != nil {
			t.Fatal(e2eErr)
		}
		return e2eBuilt
	}
	// e2eDir holds e2eBuild; TestMain removes it after the tests.
	e2eDir string
)

func buildE2E(ctx context.Context) (*e2eBuild, error) {
	dir, err := os.MkdirTemp("", "basalt-e2e-build-")
	if err != nil {
		return nil, err
	}
	e2eDir = dir
	bin := filepath.Join(dir, "basalt")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	k, err := qemu.DebianKernel(ctx, filepath.Join(dir, "kernel"))
	if err != nil {
		return nil, fmt.Errorf("Debian kernel: %w", err)
	}
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(k.Vmlinuz, filepath.Join(images, "vmlinuz")); err != nil {
		return nil, err
	}
	// The master initrd, built with `basalt initrd build`; its
	// /etc/rc.local starts an httpd of its own on port 80 with another
	// document root, which target.fetch must not use.
	rc := filepath.Join(dir, "rc.local")
	if err := os.WriteFile(rc, []byte("mkdir -p /srv\necho 'master image web root' > /srv/index.html\nhttpd -p 80 -h /srv\n"), 0o644); err != nil {
		return nil, err
	}
	if err := basaltInitrd(ctx, bin, filepath.Join(images, "master.cpio.gz"), "--version", "e2e-master", "--prompt", "(initramfs) ",
		"--modules-dir", k.ModulesDir, "--module", "e1000", "--module", "virtio_pci", "--module", "virtio_blk",
		"--file", rc+":/etc/rc.local"); err != nil {
		return nil, err
	}
	if err := buildDiskImage(ctx, bin, dir, k.Vmlinuz, filepath.Join(images, "disk.img.gz")); err != nil {
		return nil, err
	}
	return &e2eBuild{bin: bin, images: images}, nil
}

// TestE2EQemuMaster is `make e2e`: jobs/qemu-master.star on a qemu VM that
// basalt starts behind its own BMC, PXE-booted by the VM's iPXE firmware
// through basalt's proxy DHCP and HTTP inside a network namespace this test
// creates, with dnsmasq as the site DHCP server.
func TestE2EQemuMaster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q := newQemuLab(t, ctx, "basalt-e2e")
	dir, bin, jobDir, labDir, ns := q.dir, q.bin, q.jobDir, q.labDir, q.ns
	out := filepath.Join(dir, "out")
	run := ns.Command(ctx, bin, "run", filepath.Join(jobDir, "qemu-master.star"), "--lab", labDir, "--device", "qemu01", "--out", out)
	t0 := time.Now()
	output, err := run.CombinedOutput()
	t.Logf("basalt run took %s:\n%s", time.Since(t0).Round(time.Second), output)
	if err != nil {
		con, _ := os.ReadFile(filepath.Join(out, "console.log"))
		dl, _ := os.ReadFile(filepath.Join(dir, "dnsmasq.log"))
		t.Fatalf("basalt run: %v\nconsole.log (last 6 KiB):\n%s\ndnsmasq:\n%s", err, tail(con, 6<<10), dl)
	}
	var res struct {
		Status string
		Tests  []struct{ Name, Result string }
	}
	data, err := os.ReadFile(filepath.Join(out, "result.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &res))
	if res.Status != "pass" || len(res.Tests) != 7 {
		t.Errorf("result: status %s, %d tests %v; want pass with 7 tests", res.Status, len(res.Tests), res.Tests)
	}
	con, _ := os.ReadFile(filepath.Join(out, "console.log"))
	for _, want := range []string{"iPXE", "PXELINUX", "basalt.nonce=", "disk-os login: root", "SYSLINUX"} {
		if !strings.Contains(string(con), want) {
			t.Errorf("console.log lacks %q", want)
		}
	}
	// pxelinux fetched the kernel and the initrd over basalt's TFTP.
	evs, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
	for _, f := range []string{"/vmlinuz", "/master.cpio.gz"} {
		if !strings.Contains(string(evs), `"type":"tftp"`) || !strings.Contains(string(evs), f+`"`) {
			t.Errorf("no tftp event for %s", f)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "artifacts", "tmp", "master-image-info")); err != nil {
		t.Errorf("fetched file not in the bundle: %v", err)
	}
	// /proc/version arrived whole (busybox httpd would have sent it
	// empty) from an httpd that was not the master's on port 80.
	if v, err := os.ReadFile(filepath.Join(out, "artifacts", "proc", "version")); err != nil || !strings.HasPrefix(string(v), "Linux version ") {
		t.Errorf("fetched /proc/version = %q, %v; want the kernel's version line", v, err)
	}
	if !strings.Contains(string(con), "basalt: running /etc/rc.local") {
		t.Error("console.log lacks the master image's rc.local")
	}
	for _, line := range strings.Split(string(evs), "\n") {
		if strings.Contains(line, `"type":"target_fetch"`) && strings.Contains(line, `"port":80,`) {
			t.Errorf("fetch used port 80, the master's httpd: %s", line)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

func basaltInitrd(ctx context.Context, bin, path string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, append([]string{"initrd", "build", "-o", path}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("basalt initrd build %s: %v\n%s", path, err, out)
	}
	return nil
}

// buildDiskImage makes the bootable disk the job deploys: a FAT
// filesystem (no partition table; SeaBIOS boots its syslinux boot sector)
// holding the kernel, the disk OS's initrd and syslinux.cfg.
func buildDiskImage(ctx context.Context, bin, dir, vmlinuz, out string) error {
	w := filepath.Join(dir, "diskos")
	if err := os.MkdirAll(w, 0o755); err != nil {
		return err
	}
	initPath := filepath.Join(w, "init")
	if err := os.WriteFile(initPath, []byte(diskOSInit), 0o755); err != nil {
		return err
	}
	if err := basaltInitrd(ctx, bin, filepath.Join(w, "diskos.gz"), "--version", "disk-os-1", "--hostname", "disk-os",
		"--prompt", "root@disk-os:~# ", "--file", initPath+":/init"); err != nil {
		return err
	}
	if err := copyFile(vmlinuz, filepath.Join(w, "vmlinuz")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(w, "syslinux.cfg"), []byte(syslinuxCfg), 0o644); err != nil {
		return err
	}
	img := filepath.Join(w, "disk.img")
	for _, c := range [][]string{
		{"mkfs.vfat", "-C", img, "32768"},
		{"mcopy", "-i", img, filepath.Join(w, "vmlinuz"), filepath.Join(w, "diskos.gz"), filepath.Join(w, "syslinux.cfg"), "::"},
		{"syslinux", "--install", img},
	} {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v\n%s", c, err, out)
		}
	}
	in, err := os.Open(img)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	if _, err := io.Copy(zw, in); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestE2EQemuShell is basalt shell on the qemu lab, driven through a real
// pseudo-terminal as a person types: the master image PXE-boots, a typed
// command runs, ~. detaches, and the cleanup powers the VM off.
func TestE2EQemuShell(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q := newQemuLab(t, ctx, "basalt-e2e-shell")
	cmd := q.ns.Command(ctx, q.bin, "shell", "qemu01", "--lab", q.labDir,
		"--kernel", filepath.Join(q.images, "vmlinuz"), "--initrd", filepath.Join(q.images, "master.cpio.gz"),
		"--out", filepath.Join(q.dir, "shell"))
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatalf("start basalt shell on a pty: %v", err)
	}
	defer ptmx.Close()
	ts := &termSide{t: t, ptmx: ptmx}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			ts.mu.Lock()
			ts.buf.Write(b[:n])
			ts.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	ts.waitFor("at its master prompt")
	ts.typ("echo e2e-$((6*7))\r")
	ts.waitFor("e2e-42")
	ts.typ("\r~.")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("basalt shell: %v\n%s", err, ts.text())
	}
	evs, _ := os.ReadFile(filepath.Join(q.dir, "shell", "events.jsonl"))
	if !regexp.MustCompile(`"builtin":"power.off".*"outcome":"ok"`).Match(evs) {
		t.Errorf("the cleanup did not power the VM off; events:\n%s", tail(evs, 4<<10))
	}
}

// TestE2EQemuHoldConsole: a job that fails on the qemu lab is held with
// --hold-on-failure; basalt console on a pty types a command into the VM's
// master shell and sees its output, detaches with ~., and attaches again to
// a board still on; a read-only watcher attached since the start saw exactly
// the bytes of console.log; basalt release runs the skipped power off.
func TestE2EQemuHoldConsole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q := newQemuLab(t, ctx, "basalt-e2e-hold")
	job := filepath.Join(q.jobDir, "hold.star")
	must(t, os.WriteFile(job, []byte(`load("@stdlib//master.star", "master")
job(name = "e2e-hold", device_type = "qemu", timeout = "10m",
    params = {"kernel": "images/qemu/vmlinuz", "initrd": "images/qemu/master.cpio.gz"})
def one(ctx):
    master.boot(ctx)
    target.run("echo the job was here")
    fail("broken on purpose")
stage("one", one)
cleanup(master.power_off)
`), 0o644))
	out := filepath.Join(q.dir, "hold")
	runCmd := q.ns.Command(ctx, q.bin, "run", job, "--lab", q.labDir, "--device", "qemu01", "--out", out, "--hold-on-failure", "10m")
	var runErr syncBuf
	runCmd.Stdout, runCmd.Stderr = &runErr, &runErr
	must(t, runCmd.Start())
	runDone := make(chan error, 1)
	go func() { runDone <- runCmd.Wait() }()

	// The watcher, from the start of the job.
	sock := filepath.Join(q.dir, "locks", "qemu01.console.sock")
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-runDone:
			t.Fatalf("run ended (%v) before serving its console:\n%s", err, runErr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	watch := exec.CommandContext(ctx, q.bin, "console", "qemu01", "--lab", q.labDir)
	var wOut, wErr syncBuf
	watchIn, err := watch.StdinPipe()
	must(t, err)
	defer watchIn.Close()
	watch.Stdout, watch.Stderr = &wOut, &wErr
	must(t, watch.Start())

	for !strings.Contains(runErr.String(), "basalt console qemu01") {
		select {
		case err := <-runDone:
			t.Fatalf("run ended (%v) without holding:\n%s", err, runErr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !strings.Contains(wErr.String(), "read-only") {
		t.Errorf("the watcher attached during the run says %q, want read-only", wErr.String())
	}
	for _, sum := range []string{"20+1", "40+2"} {
		cmd := exec.CommandContext(ctx, q.bin, "console", "qemu01", "--lab", q.labDir)
		ptmx, err := pty.Start(cmd)
		must(t, err)
		ts := &termSide{t: t, ptmx: ptmx}
		go func() {
			b := make([]byte, 4096)
			for {
				n, err := ptmx.Read(b)
				ts.mu.Lock()
				ts.buf.Write(b[:n])
				ts.mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		ts.waitFor("after its failure")
		ts.typ("echo e2e-$((" + sum + "))\r")
		want := map[string]string{"20+1": "e2e-21", "40+2": "e2e-42"}[sum]
		ts.waitFor(want)
		ts.typ("~.")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("basalt console: %v\n%s", err, ts.text())
		}
		ptmx.Close()
	}
	rel := exec.CommandContext(ctx, q.bin, "release", "qemu01", "--lab", q.labDir)
	if b, err := rel.CombinedOutput(); err != nil {
		t.Fatalf("basalt release: %v\n%s", err, b)
	}
	if err := <-runDone; err == nil || runCmd.ProcessState.ExitCode() != 2 {
		t.Errorf("held run: %v, want exit 2 (its fail())\n%s", err, runErr.String())
	}
	if err := watch.Wait(); err != nil {
		t.Errorf("watcher: %v: %s", err, wErr.String())
	}
	con, err := os.ReadFile(filepath.Join(out, "console.log"))
	must(t, err)
	if wOut.String() != string(con) {
		t.Errorf("the watcher saw %d bytes, console.log has %d: they differ", len(wOut.String()), len(con))
	}
	for _, want := range []string{"the job was here", "e2e-21", "e2e-42"} {
		if !strings.Contains(string(con), want) {
			t.Errorf("console.log lacks %q", want)
		}
	}
	evs, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
	if !regexp.MustCompile(`"reason":"basalt release".*"type":"hold_end"`).Match(evs) || !regexp.MustCompile(`"builtin":"power.off".*"outcome":"ok"`).Match(evs) {
		t.Errorf("events lack the hold's end by release or the power off after it:\n%s", tail(evs, 4<<10))
	}
}

// TestE2EQemuIPXEConsole is `make e2e` with no PXE config at all: dnsmasq
// gives addresses only and basalt's proxy DHCP is off (lab dhcp = "none"),
// so the VM's iPXE ROM boots nothing by itself; jobs/qemu-ipxe-console.star
// stops it with Ctrl-B over SOL, types dhcp and a chain of basalt's HTTP
// script, checks the nonce, and takes the inventory, whose values must be
// what qemu was started with.
func TestE2EQemuIPXEConsole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q := newQemuLab(t, ctx, "basalt-e2e-ipxe")
	const memMB, diskMB, mac = 384, 48, "52:54:00:be:e2:17"
	labDir := filepath.Join(q.dir, "lab-nopxe")
	must(t, os.MkdirAll(filepath.Join(labDir, "devices"), 0o755))
	must(t, os.WriteFile(filepath.Join(labDir, "lab.star"), []byte(fmt.Sprintf(`lab(
    name = "qemu-e2e-nopxe",
    tftp = "%[1]s:69",
    http = "%[1]s:8080",
    dhcp = "none",
    lock_dir = %[2]q,
    cache_dir = %[3]q,
)
`, q.ns.Addr.Addr(), filepath.Join(q.dir, "locks"), filepath.Join(q.dir, "cache"))), 0o644))
	must(t, os.WriteFile(filepath.Join(labDir, "devices", "qemu01.star"), []byte(fmt.Sprintf(
		"device(name = \"qemu01\", type = \"qemu\", mac = %q, vm_tap = %q, vm_disk_mb = %d, vm_memory_mb = %d)\n",
		mac, q.ns.Tap, diskMB, memMB)), 0o644))
	src, err := os.ReadFile(filepath.Join("..", "..", "jobs", "qemu-ipxe-console.star"))
	must(t, err)
	job := filepath.Join(q.jobDir, "qemu-ipxe-console.star")
	must(t, os.WriteFile(job, src, 0o644))

	// Typed kernel/initrd/boot lines instead of the script: no config is
	// served at all.
	lines := filepath.Join(q.dir, "out-ipxe-lines")
	run := q.ns.Command(ctx, q.bin, "run", job, "--lab", labDir, "--device", "qemu01", "--out", lines, "--param", "script=no")
	if output, err := run.CombinedOutput(); err != nil {
		con, _ := os.ReadFile(filepath.Join(lines, "console.log"))
		t.Fatalf("basalt run --param script=no: %v\n%s\nconsole.log (last 6 KiB):\n%s", err, output, tail(con, 6<<10))
	}
	if con, _ := os.ReadFile(filepath.Join(lines, "console.log")); !strings.Contains(string(con), "iPXE> kernel ${basalt_url} ${basalt_args}") || strings.Contains(string(con), "chain http") {
		t.Errorf("console.log of script=no lacks the typed kernel line (or chains):\n%s", tail(con, 4<<10))
	}

	out := filepath.Join(q.dir, "out-ipxe")
	run = q.ns.Command(ctx, q.bin, "run", job, "--lab", labDir, "--device", "qemu01", "--out", out)
	t0 := time.Now()
	output, err := run.CombinedOutput()
	t.Logf("basalt run took %s:\n%s", time.Since(t0).Round(time.Second), output)
	con, _ := os.ReadFile(filepath.Join(out, "console.log"))
	if err != nil {
		dl, _ := os.ReadFile(filepath.Join(q.dir, "dnsmasq.log"))
		t.Fatalf("basalt run: %v\nconsole.log (last 6 KiB):\n%s\ndnsmasq:\n%s", err, tail(con, 6<<10), dl)
	}
	for _, want := range []string{"Press Ctrl-B", "iPXE> dhcp", "iPXE> chain http://", "basalt.nonce="} {
		if !strings.Contains(string(con), want) {
			t.Errorf("console.log lacks %q", want)
		}
	}
	evs, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
	if strings.Contains(string(evs), `"type":"dhcp"`) {
		t.Errorf("basalt answered DHCP with its proxy off")
	}
	chained := false
	for _, line := range strings.Split(string(evs), "\n") {
		chained = chained || strings.Contains(line, `"type":"http"`) && strings.Contains(line, "boot.ipxe") && strings.Contains(line, `"status":200`)
	}
	if !chained {
		t.Errorf("no HTTP event for the chained script")
	}

	// The inventory is what qemu was started with.
	var inv struct {
		CPU    struct{ Count int }
		Memory struct {
			TotalKB int64 `json:"total_kb"`
		}
		Disks []struct {
			Name      string
			SizeBytes int64 `json:"size_bytes"`
		}
		NICs []struct{ Name, MAC, Link string } `json:"nics"`
		DMI  map[string]any
	}
	data, err := os.ReadFile(filepath.Join(out, "artifacts", "inventory.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &inv))
	if kb := inv.Memory.TotalKB; kb > memMB*1024 || kb < memMB*1024*8/10 {
		t.Errorf("inventory memory total_kb = %d, want a little under -m %d (%d kB)", kb, memMB, memMB*1024)
	}
	var disk, nic bool
	for _, d := range inv.Disks {
		disk = disk || d.Name == "vda" && d.SizeBytes == diskMB<<20
	}
	for _, n := range inv.NICs {
		nic = nic || n.MAC == mac && n.Link == "up"
	}
	if !disk || !nic || inv.CPU.Count < 1 || inv.DMI["sys_vendor"] != "QEMU" {
		t.Errorf("inventory = %s; want vda of %d MiB, NIC %s up, a CPU, DMI sys_vendor QEMU", data, diskMB, mac)
	}
	var res struct {
		Status string
		Extra  struct {
			Inventory struct {
				MemoryKB int64 `json:"memory_kb"`
			}
		}
	}
	data, err = os.ReadFile(filepath.Join(out, "result.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &res))
	if res.Status != "pass" || res.Extra.Inventory.MemoryKB != inv.Memory.TotalKB {
		t.Errorf("result.json: status %s, extra.inventory.memory_kb %d; want pass and %d", res.Status, res.Extra.Inventory.MemoryKB, inv.Memory.TotalKB)
	}
}
