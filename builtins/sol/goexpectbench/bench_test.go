package goexpectbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"testing"
	"time"

	goexpect "github.com/google/goexpect"

	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/runtime/bundle"
)

// benchSize is the stream both sides match: the same for both, small
// enough that goexpect, which rescans its whole buffer on every read,
// finishes in a few seconds.
const benchSize = 20 << 20

const benchMarker = "BASALT-BENCH-END login: "

// lavaErrors are LAVA's kernel error patterns (lava_common/constants.py
// KERNEL_* and the Linux "end trace" marker), the set a real job watches.
var lavaErrors = []string{
	`Kernel panic - not syncing`, `end Kernel panic`, `Oops`, `Unable to handle kernel`, `BUG:`,
	`Internal error:`, `general protection fault`, `Unhandled fault`, `Call trace:`, `---\[ end trace`,
}

// kernelLog returns about n bytes of boot log lines, none of them matching
// the error patterns.
func kernelLog(n int) []byte {
	msgs := []string{
		"usb 1-1: new high-speed USB device number %d using ehci-pci",
		"EXT4-fs (sda%d): mounted filesystem with ordered data mode. Opts: (null)",
		"xgmac fff5%d000.ethernet eth0: Link is Up - 1Gbps/Full - flow control rx/tx",
		"random: crng init done, %d bits of entropy",
		"systemd[1]: Started Journal Service (pid %d).",
	}
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "[%5d.%06d] ", i/1000, i%1000*997)
		fmt.Fprintf(&b, msgs[i%len(msgs)], i)
		b.WriteString("\r\n")
	}
	return b.Bytes()[:n]
}

// feedStream writes size bytes of log in 4 KiB chunks (one SOL payload
// burst each), then the marker.
func feedStream(w *io.PipeWriter, block []byte, size int) {
	for sent := 0; sent < size; {
		for p := block[:min(len(block), size-sent)]; len(p) > 0; {
			n := min(4096, len(p))
			if _, err := w.Write(p[:n]); err != nil {
				return
			}
			p, sent = p[n:], sent+n
		}
	}
	w.Write([]byte("\r\n" + benchMarker))
}

type pipeTransport struct{ r *io.PipeReader }

type pipeConn struct{ *io.PipeReader }

func (pipeConn) Write(p []byte) (int, error) { return len(p), nil }

func (t pipeTransport) Open(context.Context) (io.ReadWriteCloser, error) { return pipeConn{t.r}, nil }
func (t pipeTransport) String() string                                   { return "pipe" }

// captureFile is console.log as a run writes it: a file in the bundle,
// buffered.
type captureFile struct {
	f *os.File
	w *bufio.Writer
}

func newCapture(b *testing.B) *captureFile {
	f, err := os.Create(filepath.Join(b.TempDir(), "console.log"))
	if err != nil {
		b.Fatal(err)
	}
	return &captureFile{f: f, w: bufio.NewWriterSize(f, 64<<10)}
}

func (c *captureFile) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *captureFile) Close() error {
	if err := c.w.Flush(); err != nil {
		return err
	}
	return c.f.Close()
}

func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measure(b *testing.B, run func()) {
	b.SetBytes(benchSize)
	runtime.GC()
	stop := make(chan struct{})
	peak := peakHeap(stop)
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	close(stop)
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(<-peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkConsole matches the same 20 MB console stream, fed in 4 KiB
// chunks, against LAVA's ten kernel error patterns plus a marker on the
// last line, with basalt's console and with goexpect; both write every
// byte to a console.log file as a run does (basalt through the bundle's
// streaming redactor, as cmd/basalt wires it; goexpect through its Tee).
func BenchmarkConsole(b *testing.B) {
	block := kernelLog(1 << 20)
	b.Run("basalt", func(b *testing.B) {
		red := bundle.NewRedactor("hunter2-s3cr3t")
		measure(b, func() {
			r, w := io.Pipe()
			go feedStream(w, block, benchSize)
			file := newCapture(b)
			capture := bundle.NewStreamWriter(red, file)
			c := sol.New(pipeTransport{r}, sol.Options{ErrorPatterns: lavaErrors, Capture: capture})
			if err := c.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			m, err := c.Expect(context.Background(), expect.Literal(benchMarker))
			if err != nil || m.Text != benchMarker {
				b.Fatalf("Expect = %q, %v", m.Text, err)
			}
			c.Close()
			r.Close()
			capture.Flush()
			file.Close()
		})
	})
	b.Run("goexpect", func(b *testing.B) {
		var cases []goexpect.Caser
		for _, p := range lavaErrors {
			cases = append(cases, &goexpect.Case{R: regexp.MustCompile(p)})
		}
		cases = append(cases, &goexpect.Case{R: regexp.MustCompile(regexp.QuoteMeta(benchMarker))})
		measure(b, func() {
			r, w := io.Pipe()
			go feedStream(w, block, benchSize)
			done := make(chan struct{})
			var once sync.Once
			file := newCapture(b)
			e, _, err := goexpect.SpawnGeneric(&goexpect.GenOptions{
				In:    nopCloser{io.Discard},
				Out:   r,
				Wait:  func() error { <-done; return nil },
				Close: func() error { once.Do(func() { close(done) }); return r.Close() },
				Check: func() bool { return true },
			}, 5*time.Minute, goexpect.CheckDuration(time.Millisecond), goexpect.Tee(file))
			if err != nil {
				b.Fatal(err)
			}
			_, _, i, err := e.ExpectSwitchCase(cases, 5*time.Minute)
			if err != nil || i != len(cases)-1 {
				b.Fatalf("ExpectSwitchCase = %d, %v", i, err)
			}
			e.Close()
		})
	})
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
