package bmcsim_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/google/go-cmp/cmp"
)

type node struct {
	mu     sync.Mutex
	events []string
}

func (n *node) PowerOn(_ context.Context, boot bmcsim.BootDevice) error {
	n.add("on:" + boot.String())
	return nil
}
func (n *node) PowerOff(context.Context) error { n.add("off"); return nil }
func (n *node) Reset(_ context.Context, boot bmcsim.BootDevice) error {
	n.add("reset:" + boot.String())
	return nil
}
func (n *node) add(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, s)
}
func (n *node) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.events
	n.events = nil
	return e
}

func start(t *testing.T, cfg bmcsim.Config) *bmcsim.BMC {
	t.Helper()
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Skip("ipmitool not installed (Debian package ipmitool)")
	}
	b := bmcsim.New(cfg)
	if err := b.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func ipmitoolArgs(b *bmcsim.BMC, args ...string) []string {
	return append([]string{"-I", "lanplus", "-H", "127.0.0.1", "-p", fmt.Sprint(b.Addr().Port),
		"-U", b.User(), "-P", b.Password(), "-C", "3"}, args...)
}

func ipmitool(t *testing.T, b *bmcsim.BMC, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("ipmitool", ipmitoolArgs(b, args...)...).CombinedOutput()
	return string(out), err
}

func mustIpmitool(t *testing.T, b *bmcsim.BMC, args ...string) string {
	t.Helper()
	out, err := ipmitool(t, b, args...)
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestIpmitoolPower(t *testing.T) {
	n := &node{}
	b := start(t, bmcsim.Config{Node: n, SoftOffDelay: 50 * time.Millisecond})
	steps := []struct {
		args []string
		want string // in ipmitool's output
		on   bool   // BMC power state after
	}{
		{[]string{"chassis", "power", "status"}, "Chassis Power is off", false},
		{[]string{"chassis", "power", "on"}, "Chassis Power Control: Up/On", true},
		{[]string{"chassis", "power", "status"}, "Chassis Power is on", true},
		{[]string{"chassis", "power", "reset"}, "Chassis Power Control: Reset", true},
		{[]string{"chassis", "power", "cycle"}, "Chassis Power Control: Cycle", true},
		{[]string{"chassis", "power", "off"}, "Chassis Power Control: Down/Off", false},
		{[]string{"chassis", "power", "status"}, "Chassis Power is off", false},
	}
	for _, s := range steps {
		out := mustIpmitool(t, b, s.args...)
		if !strings.Contains(out, s.want) {
			t.Errorf("ipmitool %s = %q, want %q", strings.Join(s.args, " "), out, s.want)
		}
		if b.PowerState() != s.on {
			t.Errorf("after ipmitool %s: PowerState() = %v, want %v", strings.Join(s.args, " "), b.PowerState(), s.on)
		}
	}
	want := []string{"on:default", "reset:default", "off", "on:default", "off"}
	if diff := cmp.Diff(want, n.take()); diff != "" {
		t.Errorf("node events (-want +got):\n%s", diff)
	}

	// A reset of an off chassis is refused, as by real BMCs.
	out, err := ipmitool(t, b, "chassis", "power", "reset")
	if err == nil || !strings.Contains(out, "0xd5") && !strings.Contains(strings.ToLower(out), "not supported in present state") {
		t.Errorf("ipmitool chassis power reset while off = %v, %q; want a D5h refusal", err, out)
	}
	// Soft-off takes effect a little later.
	mustIpmitool(t, b, "chassis", "power", "on")
	mustIpmitool(t, b, "chassis", "power", "soft")
	deadline := time.Now().Add(10 * time.Second)
	for b.PowerState() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out := mustIpmitool(t, b, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") {
		t.Errorf("after soft-off: %q, want off", out)
	}
}

func TestIpmitoolBootdev(t *testing.T) {
	n := &node{}
	b := start(t, bmcsim.Config{Node: n})
	mustIpmitool(t, b, "chassis", "bootdev", "pxe")
	if dev, p := b.BootDevice(); dev != bmcsim.BootPXE || p {
		t.Errorf("after bootdev pxe: BootDevice() = %s, %v, want pxe, false", dev, p)
	}
	if out := mustIpmitool(t, b, "chassis", "bootparam", "get", "5"); !strings.Contains(out, "Force PXE") {
		t.Errorf("bootparam get 5 = %q, want Force PXE", out)
	}
	mustIpmitool(t, b, "chassis", "power", "on")
	// The next-boot-only setting was used and cleared.
	if dev, _ := b.BootDevice(); dev != bmcsim.BootDefault {
		t.Errorf("after boot: BootDevice() = %s, want default", dev)
	}
	mustIpmitool(t, b, "chassis", "bootdev", "disk", "options=persistent")
	mustIpmitool(t, b, "chassis", "power", "reset")
	mustIpmitool(t, b, "chassis", "power", "reset")
	if dev, p := b.BootDevice(); dev != bmcsim.BootDisk || !p {
		t.Errorf("after persistent bootdev disk and two resets: BootDevice() = %s, %v, want disk, true", dev, p)
	}
	want := []string{"on:pxe", "reset:disk", "reset:disk"}
	if diff := cmp.Diff(want, n.take()); diff != "" {
		t.Errorf("node events (-want +got):\n%s", diff)
	}
}

// line is a serial line: the node writes with print, keystrokes land in typed.
type line struct {
	r *io.PipeReader
	w *io.PipeWriter

	mu    sync.Mutex
	typed bytes.Buffer
}

func (l *line) Read(p []byte) (int, error) { return l.r.Read(p) }
func (l *line) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.typed.Write(p)
}
func (l *line) Typed() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.typed.String()
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer = builtinstest.SyncBuffer

var waitFor = builtinstest.WaitFor

// TestIpmitoolSOL: `ipmitool sol activate` sees what the node prints, and
// what is typed reaches the node.
func TestIpmitoolSOL(t *testing.T) {
	r, w := io.Pipe()
	l := &line{r: r, w: w}
	t.Cleanup(func() { w.Close() })
	b := start(t, bmcsim.Config{Serial: l})

	cmd := exec.Command("ipmitool", ipmitoolArgs(b, "sol", "activate")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitFor(t, "SOL active", b.SOLActive)
	go w.Write([]byte("Linux version 6.1.0 (highbank)\r\nbuildroot login: "))
	waitFor(t, "console bytes at ipmitool", func() bool { return strings.Contains(out.String(), "buildroot login: ") })
	if _, err := stdin.Write([]byte("root\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "keystrokes at the node", func() bool { return strings.Contains(l.Typed(), "root") })

	// The BMC drops the session; ipmitool notices and the BMC is free again.
	b.DropSOL()
	if b.SOLActive() {
		t.Errorf("SOLActive() after DropSOL = true")
	}
}
