package initrd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/qemu"
)

// TestQEMUBoot boots the initrd with a Debian kernel under qemu (TCG, no
// network device, basalt.netwait=0) and drives the serial console: the
// banner, the prompt, a dynamically linked host binary running from the
// image, and poweroff through busybox init. Set BASALT_E2E=1; the kernel
// comes from qemu.DebianKernel (BASALT_KERNEL=/path/to/vmlinuz skips the
// download; the package is unpacked in a temp dir, never installed).
func TestQEMUBoot(t *testing.T) {
	if os.Getenv("BASALT_E2E") != "1" {
		t.Skip("set BASALT_E2E=1 to boot the initrd under qemu")
	}
	staticBusybox(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	kernel := debianKernel(t).Vmlinuz
	dir := t.TempDir()
	img := filepath.Join(dir, "initrd.gz")
	raw, _ := build(t, Options{Binaries: []string{"/bin/ls"}, Version: "e2e-1"})
	if err := os.WriteFile(img, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.Command(qemu, "-accel", "tcg", "-cpu", "max", "-nographic", "-no-reboot", "-m", "512",
		"-nic", "none", "-kernel", kernel, "-initrd", img, "-append", "console=ttyS0 panic=-1 basalt.netwait=0")
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
	if err := con.wait(bootCtx, "basalt: no eth0; network not configured"); err != nil {
		t.Fatalf("no-NIC message: %v", err)
	}
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

// debianKernel returns the Debian kernel from qemu.DebianKernel, unpacked
// into a temp dir, or skips when no kernel package can be had.
func debianKernel(t *testing.T) *qemu.Kernel {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	k, err := qemu.DebianKernel(ctx, t.TempDir())
	if errors.Is(err, qemu.ErrNoKernel) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestDebianModules resolves the NIC and disk drivers of Debian's kernel
// both from the modules.dep depmod wrote and from the modules' .modinfo
// (the fallback for a modules dir without one): the two must agree on
// what to load, and the build must carry every file.
func TestDebianModules(t *testing.T) {
	if os.Getenv("BASALT_E2E") != "1" {
		t.Skip("set BASALT_E2E=1 to fetch a Debian kernel")
	}
	staticBusybox(t)
	k := debianKernel(t)
	if k.ModulesDir == "" {
		t.Skip("no modules dir (set BASALT_MODULES_DIR with BASALT_KERNEL)")
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err != nil {
		t.Skipf("no modules.dep (depmod missing? apt-get install kmod): %v", err)
	}
	names := []string{"e1000", "virtio_pci", "virtio_blk"}
	var orders [2][]string
	for i, useDep := range []bool{true, false} {
		ix, err := loadModIndex(k.ModulesDir, useDep)
		if err != nil {
			t.Fatal(err)
		}
		order, builtin, err := ix.resolve(names)
		if err != nil || len(builtin) != 0 {
			t.Fatalf("resolve(%q) from %s = %q, builtin %q, %v", names, ix.source, order, builtin, err)
		}
		t.Logf("%s: %q", ix.source, order)
		orders[i] = slices.Sorted(slices.Values(order))
	}
	if !slices.Equal(orders[0], orders[1]) {
		t.Errorf("modules.dep gives %q, .modinfo gives %q", orders[0], orders[1])
	}
	for _, n := range names {
		if !slices.Contains(orders[0], n) {
			t.Errorf("resolve(%q) lacks %s", names, n)
		}
	}
	raw, m := build(t, Options{ModulesDir: k.ModulesDir, Modules: names})
	a := readArchive(t, raw, true)
	for _, mod := range m.Modules {
		_, e, err := a.lookup(mod.Path, true)
		if err != nil {
			t.Errorf("%s: %v", mod.Name, err)
			continue
		}
		host, err := os.ReadFile(mod.Source)
		if err != nil || !bytes.Equal(e.data, host) {
			t.Errorf("%s: archive copy differs from %s (%v)", mod.Path, mod.Source, err)
		}
	}
	t.Logf("image with %d modules: %d bytes gzipped", len(m.Modules), len(raw))
}
