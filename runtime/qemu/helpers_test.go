package qemu

import (
	"bytes"
	"context"
	"errors"
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

var (
	kernelOnce sync.Once
	kernel     *Kernel
	kernelErr  error
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

// debianKernel returns a Debian kernel from DebianKernel, unpacked once per
// test binary into a temp dir (or named by $BASALT_KERNEL and
// $BASALT_MODULES_DIR). It skips when no kernel package can be had.
func debianKernel(tb testing.TB) *Kernel {
	tb.Helper()
	kernelOnce.Do(func() {
		if os.Getenv(EnvKernel) == "" {
			kernelDir, kernelErr = os.MkdirTemp("", "basalt-qemu-kernel-")
			if kernelErr != nil {
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		kernel, kernelErr = DebianKernel(ctx, kernelDir)
	})
	if errors.Is(kernelErr, ErrNoKernel) {
		tb.Skip(kernelErr)
	}
	if kernelErr != nil {
		tb.Fatal(kernelErr)
	}
	return kernel
}

// buildInitrd builds a master initrd into dir with runtime/initrd. Modules
// are loaded by the image's /init from k's modules directory.
func buildInitrd(tb testing.TB, dir, version string, k *Kernel, modules ...string) string {
	tb.Helper()
	if _, err := os.Stat(initrd.DefaultBusybox); err != nil {
		tb.Skip("no static busybox (apt-get install busybox-static)")
	}
	opts := initrd.Options{Version: version}
	if len(modules) > 0 {
		if k.ModulesDir == "" {
			tb.Skipf("no modules for the kernel (set %s with %s)", EnvModulesDir, EnvKernel)
		}
		opts.ModulesDir, opts.Modules = k.ModulesDir, modules
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
