package target

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
	"github.com/basalt-lab/basalt/builtins/target/simshell"
)

// waitLimit bounds how long a test waits before it fails instead of
// hanging; it is not a speed assertion.
const waitLimit = 60 * time.Second

// testPrompt matches the sim shell's prompt in any directory, before and
// after a kexec.
const testPrompt = `root@[a-z]+:[^#\r\n]*# `

// kernelLine is what the rig injects into the console as a kernel message.
const kernelLine = "[   12.345678] usb 1-1: new high-speed USB device number 2 using ehci-pci\r\n"

type kexecCall struct {
	kernel, initrd []byte
	append         string
}

// rig is a sim target behind the real console code: a simshell.Shell
// serving on a serialsim.Line, a sol.Console over the line's transport, a
// real pxe.Server for Publish, and the Target under test.
type rig struct {
	t       testing.TB
	ctx     context.Context
	line    *serialsim.Line
	con     *sol.Console
	tgt     *Target
	pxe     *pxe.Server
	cfg     Config
	jobDir  string
	disk    string // host file of the target's /dev/sda
	ip      string
	capture *builtinstest.SyncBuffer

	inject atomic.Bool // put a kernel message after every line the shell prints

	mu     sync.Mutex
	roots  []string              // shell root of each boot (kexec starts a new one)
	rec    builtinstest.Recorder // events
	kexecs chan kexecCall
}

type rigOption func(*rig)

// withConfig changes the Target's config before New.
func withConfig(f func(*Config)) rigOption {
	return func(r *rig) { f(&r.cfg) }
}

// newRig starts a sim target; the test's cleanup stops everything.
func newRig(t testing.TB, opts ...rigOption) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	dir := t.TempDir()
	r := &rig{
		t:       t,
		ctx:     ctx,
		line:    serialsim.New(serialsim.Config{}),
		jobDir:  filepath.Join(dir, "job"),
		disk:    filepath.Join(dir, "sda.disk"),
		ip:      "127.0.0.2",
		capture: &builtinstest.SyncBuffer{},
		kexecs:  make(chan kexecCall, 4),
	}
	if err := os.MkdirAll(r.jobDir, 0o755); err != nil {
		t.Fatal(err)
	}
	freePort(t, r.ip) // skips without the loopback alias

	// The shell talks to one end of a net.Pipe and two pumps join the
	// other end to the line: net.Pipe has read deadlines, so a Serve that
	// ends (kexec) leaves no Read pending that would eat the keys typed
	// to the next one.
	shellEnd, pumpEnd := net.Pipe()
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { // keys
		defer pumps.Done()
		io.Copy(pumpEnd, r.line.Device())
	}()
	go func() { // output, with kernel messages when asked
		defer pumps.Done()
		buf := make([]byte, 4096)
		for {
			n, err := pumpEnd.Read(buf)
			if n > 0 {
				out := buf[:n]
				if r.inject.Load() {
					out = bytes.ReplaceAll(out, []byte("\r\n"), []byte("\r\n"+kernelLine))
				}
				r.line.Device().Write(out)
			}
			if err != nil {
				return
			}
		}
	}()
	shellDone := make(chan struct{})
	go func() {
		defer close(shellDone)
		cfg := simshell.Config{
			Disks: map[string]string{"/dev/sda": r.disk},
			IP:    r.ip,
			Hooks: simshell.Hooks{Kexec: func(k, i []byte, a string) {
				select {
				case r.kexecs <- kexecCall{k, i, a}:
				default:
				}
			}},
			Emit: r.emit,
		}
		for boot := 0; ; boot++ {
			cfg.Root = filepath.Join(dir, "root"+strconv.Itoa(boot))
			sh, err := simshell.New(cfg)
			if err != nil {
				t.Error(err)
				return
			}
			r.mu.Lock()
			r.roots = append(r.roots, cfg.Root)
			r.mu.Unlock()
			err = sh.Serve(ctx, shellEnd)
			sh.Close()
			if !errors.Is(err, simshell.ErrKexec) {
				return
			}
			// What a kexec'd kernel prints before its shell comes up.
			fmt.Fprint(shellEnd, "[    0.000000] Booting Linux on physical CPU 0x0\r\n[    0.000000] Linux version 3.13.0-kexec (sim@basalt) #2 SMP\r\n")
			cfg.Hostname = "kexeced"
		}
	}()

	r.pxe = pxe.NewServer(pxe.Config{LoaderDir: dir, Emit: r.emit})
	if err := r.pxe.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.con = sol.New(serialsim.Transport(r.line), sol.Options{Capture: r.capture, Emit: r.emit})
	if err := r.con.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.cfg = Config{
		Console:   r.con,
		Publisher: r.pxe,
		Prompt:    testPrompt,
		CacheDir:  filepath.Join(dir, "cache"),
		Emit:      r.emit,
	}
	for _, o := range opts {
		o(r)
	}
	r.tgt = New(r.cfg)
	t.Cleanup(func() {
		cancel()
		<-shellDone
		r.con.Close()
		r.pxe.Close()
		r.line.Close()
		shellEnd.Close()
		pumpEnd.Close()
		pumps.Wait()
	})
	// The first prompt: the shell is up.
	wctx, wcancel := context.WithTimeout(ctx, waitLimit)
	defer wcancel()
	if _, err := r.con.Expect(wctx, mustPattern(testPrompt)); err != nil {
		t.Fatalf("no first prompt: %v", err)
	}
	return r
}

func (r *rig) emit(typ string, fields map[string]any) { r.rec.Emit(typ, fields) }

// eventsOf returns the fields of the events of type typ so far.
func (r *rig) eventsOf(typ string) []map[string]any { return r.rec.Events(typ) }

// root returns the host directory of the running shell's filesystem.
func (r *rig) root() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.roots[len(r.roots)-1]
}

// context returns a context for one call, bounded by waitLimit.
func (r *rig) context() context.Context {
	ctx, cancel := context.WithTimeout(r.ctx, waitLimit)
	r.t.Cleanup(cancel)
	return ctx
}

// run runs cmd and fails the test on an error.
func (r *rig) run(cmd string) Result {
	r.t.Helper()
	res, err := r.tgt.Run(r.context(), cmd, false)
	if err != nil {
		r.t.Fatalf("Run(%q): %v", cmd, err)
	}
	return res
}

// writeJobFile writes a file under the job directory.
func (r *rig) writeJobFile(name string, data []byte) string {
	r.t.Helper()
	p := filepath.Join(r.jobDir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// freePort returns a TCP port that was free on host a moment ago.
func freePort(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (loopback alias needed): %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
