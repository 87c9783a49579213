package initrd

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQEMUBoot boots the initrd with a Debian kernel under qemu (TCG, no
// network device) and drives the serial console: the banner, the prompt, a
// dynamically linked host binary running from the image, and poweroff
// through busybox init. Set BASALT_E2E=1; BASALT_KERNEL=/path/to/vmlinuz
// skips fetching the kernel with apt-get download (the package is unpacked
// in a temp dir, never installed).
func TestQEMUBoot(t *testing.T) {
	if os.Getenv("BASALT_E2E") != "1" {
		t.Skip("set BASALT_E2E=1 to boot the initrd under qemu")
	}
	staticBusybox(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	kernel := os.Getenv("BASALT_KERNEL")
	if kernel == "" {
		kernel = fetchKernel(t)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "initrd.gz")
	raw, _ := build(t, Options{Binaries: []string{"/bin/ls"}, Version: "e2e-1"})
	if err := os.WriteFile(img, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.Command(qemu, "-accel", "tcg", "-cpu", "max", "-nographic", "-no-reboot", "-m", "512",
		"-nic", "none", "-kernel", kernel, "-initrd", img, "-append", "console=ttyS0 panic=-1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	con := &console{changed: make(chan struct{}, 1)}
	cmd.Stdout, cmd.Stderr = con, con
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill() // by PID; a no-op once qemu has exited
		<-exited
		if t.Failed() {
			t.Logf("console:\n%s", con.String())
		}
	}()

	bootCtx, bootCancel := context.WithTimeout(ctx, 120*time.Second)
	defer bootCancel()
	if err := con.wait(bootCtx, "basalt master image e2e-1"); err != nil {
		t.Fatalf("banner: %v", err)
	}
	if err := con.wait(bootCtx, DefaultPrompt); err != nil {
		t.Fatalf("prompt: %v", err)
	}
	t.Logf("prompt after %v (qemu TCG)", time.Since(start).Round(100*time.Millisecond))

	// The typed line is echoed; the arithmetic makes the answer differ from it.
	io.WriteString(stdin, "ls /lava && echo v=$(cat /etc/basalt-master-image-info) ls-$((40+2))ok\n")
	if err := con.wait(bootCtx, "v=e2e-1 ls-42ok"); err != nil {
		t.Fatalf("command: %v", err)
	}
	io.WriteString(stdin, "poweroff\n")
	select {
	case <-exited:
		exited <- nil // for the deferred wait
	case <-time.After(60 * time.Second):
		t.Errorf("qemu still running 60 s after poweroff")
	}
}

// console collects qemu's serial output.
type console struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// wait returns once s has appeared in the output.
func (c *console) wait(ctx context.Context, s string) error {
	for !strings.Contains(c.String(), s) {
		select {
		case <-c.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// fetchKernel downloads the current Debian kernel package with apt-get
// download and unpacks only its vmlinuz into a temp dir.
func fetchKernel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		t.Skipf("no kernel: apt-cache depends linux-image-amd64: %v (set BASALT_KERNEL)", err)
	}
	var pkg string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "linux-image-") && f != "linux-image-amd64" && strings.HasSuffix(f, "-amd64") {
			pkg = f
			break
		}
	}
	if pkg == "" {
		t.Skipf("no kernel package named by apt-cache depends linux-image-amd64 (run apt-get update, or set BASALT_KERNEL)")
	}
	get := exec.Command("apt-get", "download", pkg)
	get.Dir = dir
	if out, err := get.CombinedOutput(); err != nil {
		t.Skipf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %v", pkg, debs)
	}
	x := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/vmlinuz-*'`, "sh", debs[0], dir)
	if out, err := x.CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", debs[0], err, out)
	}
	os.Remove(debs[0])
	kernels, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		t.Fatalf("no single vmlinuz in %s: %v", pkg, kernels)
	}
	return kernels[0]
}
