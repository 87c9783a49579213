package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/initrd"
)

// needQemu skips tb unless qemu-system-x86_64 is installed.
func needQemu(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		tb.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86 ipxe-qemu)")
	}
}

// needRoot skips tb unless it can create network namespaces.
func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create network namespaces and taps")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("ip not installed (apt-get install iproute2)")
	}
}

// needE2E skips tb unless BASALT_E2E=1.
func needE2E(tb testing.TB) {
	tb.Helper()
	if os.Getenv("BASALT_E2E") != "1" {
		tb.Skip("set BASALT_E2E=1 to boot a Debian kernel under qemu")
	}
}

// kernelFiles is a Debian kernel unpacked from its package.
type kernelFiles struct {
	vmlinuz string
	e1000   string // the e1000 module; "" when BASALT_KERNEL was used
	err     error
	skip    string
}

var (
	kernelOnce sync.Once
	kernel     kernelFiles
	kernelDir  string
)

// TestMain removes the unpacked kernel shared by the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if kernelDir != "" {
		os.RemoveAll(kernelDir)
	}
	os.Exit(code)
}

// debianKernel returns a Debian kernel and its e1000 module. It downloads
// the current linux-image package with apt-get download and unpacks only
// those two files into a temp dir (nothing is installed), once per test
// binary. BASALT_KERNEL=/path/to/vmlinuz skips the download; BASALT_E1000
// names the matching e1000.ko.
func debianKernel(tb testing.TB) kernelFiles {
	tb.Helper()
	kernelOnce.Do(func() {
		if k := os.Getenv("BASALT_KERNEL"); k != "" {
			kernel = kernelFiles{vmlinuz: k, e1000: os.Getenv("BASALT_E1000")}
			return
		}
		kernel = fetchKernel()
	})
	if kernel.skip != "" {
		tb.Skip(kernel.skip)
	}
	if kernel.err != nil {
		tb.Fatal(kernel.err)
	}
	return kernel
}

func fetchKernel() kernelFiles {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return kernelFiles{skip: fmt.Sprintf("no kernel: apt-cache depends linux-image-amd64: %v (set BASALT_KERNEL)", err)}
	}
	var pkg string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "linux-image-") && f != "linux-image-amd64" && strings.HasSuffix(f, "-amd64") {
			pkg = f
			break
		}
	}
	if pkg == "" {
		return kernelFiles{skip: "apt-cache names no kernel package (run apt-get update, or set BASALT_KERNEL)"}
	}
	dir, err := os.MkdirTemp("", "basalt-qemu-kernel-")
	if err != nil {
		return kernelFiles{err: err}
	}
	kernelDir = dir
	get := exec.Command("apt-get", "download", pkg)
	get.Dir = dir
	if out, err := get.CombinedOutput(); err != nil {
		return kernelFiles{skip: fmt.Sprintf("apt-get download %s: %v\n%s", pkg, err, out)}
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		return kernelFiles{err: fmt.Errorf("apt-get download %s left %v", pkg, debs)}
	}
	x := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/vmlinuz-*' '*/e1000.ko*'`,
		"sh", debs[0], dir)
	if out, err := x.CombinedOutput(); err != nil {
		return kernelFiles{err: fmt.Errorf("unpack %s: %v\n%s", debs[0], err, out)}
	}
	os.Remove(debs[0])
	k, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	m, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*", "kernel", "drivers", "net", "ethernet", "intel", "e1000", "e1000.ko"))
	if len(k) != 1 || len(m) != 1 {
		return kernelFiles{err: fmt.Errorf("%s: want one vmlinuz and one uncompressed e1000.ko, got %v %v", pkg, k, m)}
	}
	return kernelFiles{vmlinuz: k[0], e1000: m[0]}
}

// preinit runs before runtime/initrd's /init (rdinit=/sbin/basalt-preinit):
// it loads the NIC driver Debian builds as a module, then hands over.
const preinit = `#!/bin/sh
/bin/busybox insmod /lib/modules/e1000.ko || echo "basalt-preinit: insmod e1000 failed"
exec /init
`

// buildInitrd builds a master initrd into dir with runtime/initrd. With
// e1000 set it also carries the module and the preinit script that loads
// it.
func buildInitrd(tb testing.TB, dir, version, e1000 string) string {
	tb.Helper()
	if _, err := os.Stat(initrd.DefaultBusybox); err != nil {
		tb.Skip("no static busybox (apt-get install busybox-static)")
	}
	opts := initrd.Options{Version: version}
	if e1000 != "" {
		script := filepath.Join(dir, "preinit")
		if err := os.WriteFile(script, []byte(preinit), 0o755); err != nil {
			tb.Fatal(err)
		}
		opts.Files = map[string]string{script: "/sbin/basalt-preinit", e1000: "/lib/modules/e1000.ko"}
	}
	path := filepath.Join(dir, "initrd.gz")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := initrd.Build(context.Background(), f, opts); err != nil {
		tb.Fatalf("initrd.Build: %v", err)
	}
	return path
}

// console collects a serial line's output and lets a test wait for text.
type console struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newConsole() *console { return &console{changed: make(chan struct{}, 1)} }

// copyFrom copies r into c until r fails.
func (c *console) copyFrom(r io.Reader) {
	b := make([]byte, 4096)
	for {
		n, err := r.Read(b)
		if n > 0 {
			c.Write(b[:n])
		}
		if err != nil {
			return
		}
	}
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

// waitFrom waits until s appears at or after offset from, and returns the
// offset just past it.
func (c *console) waitFrom(ctx context.Context, from int, s string) (int, error) {
	for {
		out := c.String()
		if from <= len(out) {
			if i := strings.Index(out[from:], s); i >= 0 {
				return from + i + len(s), nil
			}
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			return from, fmt.Errorf("waiting for %q: %w", s, ctx.Err())
		}
	}
}

// tail returns the last n bytes of the output.
func (c *console) tail(n int) string {
	s := c.String()
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// typeSlowly writes s one byte at a time: firmware and SOL paths drop
// characters typed at line speed.
func typeSlowly(ctx context.Context, w io.Writer, s string, delayMs int) error {
	for i := 0; i < len(s); i++ {
		if _, err := w.Write([]byte{s[i]}); err != nil {
			return err
		}
		if err := sleep(ctx, delayMs); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, ms int) error {
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
