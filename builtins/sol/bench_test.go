package sol

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

const benchMarker = "BASALT-BENCH-END login: "

// kernelLog returns about n bytes of boot log lines, none of them matching
// the LAVA error patterns.
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

// pipeTransport is a transport whose single connection reads what a
// writer goroutine feeds into an io.Pipe, so each 4 KiB write is one read.
type pipeTransport struct{ r *io.PipeReader }

type pipeConn struct{ *io.PipeReader }

func (pipeConn) Write(p []byte) (int, error) { return len(p), nil }

func (t pipeTransport) Open(context.Context) (io.ReadWriteCloser, error) { return pipeConn{t.r}, nil }
func (t pipeTransport) String() string                                   { return "pipe" }

// feedStream writes size bytes of log in 4 KiB chunks, then the marker.
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

// peakHeap samples the live heap until stop is closed.
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

func measure(b *testing.B, size int, run func()) {
	b.SetBytes(int64(size))
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

// BenchmarkConsole matches a 100 MB console stream in 4 KiB chunks against
// LAVA's ten kernel error patterns plus a marker on the last line, without
// capture. The comparison with goexpect, at one size and with capture on
// both sides, is in the nested module ./goexpectbench.
func BenchmarkConsole(b *testing.B) {
	block := kernelLog(1 << 20)
	b.Run("basalt-100MB", func(b *testing.B) {
		const size = 100 << 20
		measure(b, size, func() {
			r, w := io.Pipe()
			go feedStream(w, block, size)
			c := New(pipeTransport{r}, Options{ErrorPatterns: lavaErrors})
			if err := c.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			m, err := c.Expect(context.Background(), expect.Literal(benchMarker))
			if err != nil || m.Text != benchMarker {
				b.Fatalf("Expect = %q, %v", m.Text, err)
			}
			c.Close()
			r.Close()
		})
	})
}
