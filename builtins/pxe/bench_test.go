package pxe_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
)

const benchSize = 16 << 20

func benchFile(b *testing.B) (dir string) {
	b.Helper()
	dir = b.TempDir()
	os.Chmod(dir, 0o755) // tftpd-hpa drops to nobody
	data := make([]byte, benchSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.img"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ready"), []byte("ok"), 0o644)
	return dir
}

// benchRounds is the number of alternated samples per server.
const benchRounds = 10

// fetchOnce fetches name once with the client every server is measured
// with: pin/tftp's lock-step client, or (window > 1) the RFC 7440 client
// of window_test.go, which acts as U-Boot with tftpwindowsize set. It
// returns MB/s.
func fetchOnce(b *testing.B, addr, name string, blksize, window int) float64 {
	b.Helper()
	start := time.Now()
	var n int64
	if window > 1 {
		c := &windowClient{blksize: blksize, window: window}
		n = int64(len(c.get(b, addr, name)))
	} else {
		c := tftpClient(b, addr, blksize)
		c.SetTimeout(2 * time.Second)
		wt, err := c.Receive(name, "octet")
		if err != nil {
			b.Fatal(err)
		}
		if n, err = wt.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	if n != benchSize {
		b.Fatalf("got %d bytes, want %d", n, benchSize)
	}
	return float64(n) / time.Since(start).Seconds() / 1e6
}

// spread returns the median, minimum and maximum of xs.
func spread(xs []float64) (med, lo, hi float64) {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

// BenchmarkTFTP fetches a 16 MiB file over loopback from basalt's TFTP
// server and from Debian's tftpd-hpa, each in a process of its own (basalt
// in this test binary re-run as TestHelperTFTPServer), with the same
// client in this process, alternating the two benchmarkRounds times per
// b.N. It reports the median MB/s of each with min and max, and the ratio
// of the medians. windowsize=16 is basalt with a client that negotiates
// RFC 7440 windows (U-Boot's tftpwindowsize=16) against tftpd-hpa, which
// has no windowsize, in lock-step at the same blksize: what a U-Boot gets
// from either.
func BenchmarkTFTP(b *testing.B) {
	dir := benchFile(b)
	hpa := startTFTPDHPA(b, dir)
	basalt, name, basaltPID := startTFTPHelper(b, dir)
	for _, tc := range []struct{ blksize, window int }{{512, 1}, {1468, 1}, {1468, 16}} {
		b.Run(fmt.Sprintf("windowsize=%d/blksize=%d", tc.window, tc.blksize), func(b *testing.B) {
			var ours, theirs []float64
			var ourCPU time.Duration
			for b.Loop() {
				for range benchRounds {
					c0 := procCPU(b, basaltPID)
					ours = append(ours, fetchOnce(b, basalt, name, tc.blksize, tc.window))
					ourCPU += procCPU(b, basaltPID) - c0
					theirs = append(theirs, fetchOnce(b, hpa, "big.img", tc.blksize, 1))
				}
			}
			// Throughput on a shared machine depends on the load; the
			// CPU the server spends per MB depends much less on it. There
			// is no such figure for tftpd-hpa: the time of the child it
			// forks per transfer did not show in the listener's
			// /proc/PID/stat (cutime stayed 0 here).
			mb := float64(len(ours)) * benchSize / 1e6
			b.ReportMetric(float64(ourCPU.Milliseconds())/mb, "server-cpu-ms/MB")
			om, olo, ohi := spread(ours)
			tm, tlo, thi := spread(theirs)
			b.ReportMetric(om, "basalt-MB/s")
			b.ReportMetric(olo, "basalt-min-MB/s")
			b.ReportMetric(ohi, "basalt-max-MB/s")
			b.ReportMetric(tm, "tftpd-hpa-MB/s")
			b.ReportMetric(tlo, "tftpd-hpa-min-MB/s")
			b.ReportMetric(thi, "tftpd-hpa-max-MB/s")
			b.ReportMetric(om/tm, "x-tftpd-hpa")
		})
	}
}

// TestHelperTFTPServer is basalt's TFTP server for BenchmarkTFTP, in a
// process of its own: it runs only when the benchmark starts this test
// binary with BASALT_TFTP_HELPER_DIR set, prints its address and the
// served name, and serves until its stdin closes.
func TestHelperTFTPServer(t *testing.T) {
	dir := os.Getenv("BASALT_TFTP_HELPER_DIR")
	if dir == "" {
		t.Skip("the server process of BenchmarkTFTP")
	}
	s, _ := startServer(t, pxe.Config{})
	sv, err := s.Serve(context.Background(), pxe.Boot{Kernel: "big.img", MAC: testMAC, JobDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s %s\n", s.TFTPAddr(), sv.Files["kernel"])
	io.Copy(io.Discard, os.Stdin)
}

func startTFTPHelper(b *testing.B, dir string) (addr, name string, pid int) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTFTPServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BASALT_TFTP_HELPER_DIR="+dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("tftp server process: %v", err)
		}
	})
	if _, err := fmt.Fscan(out, &addr, &name); err != nil {
		b.Fatalf("tftp server process: read address: %v", err)
	}
	go io.Copy(io.Discard, out)
	return addr, name, cmd.Process.Pid
}

// procCPU is the user and system time of process pid and of its children
// that it has waited for, from
// /proc/PID/stat (proc(5): fields 14-17, in clock ticks of 10 ms).
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("cpu time of %d: %v", pid, err)
	}
	// The command name (field 2) may hold spaces; fields after it do not.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	var ticks int64
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("cpu time of %d: %q: %v", pid, data, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// startTFTPDHPA runs Debian's in.tftpd in the foreground on a free
// loopback port, serving dir.
func startTFTPDHPA(b *testing.B, dir string) string {
	b.Helper()
	bin, err := exec.LookPath("in.tftpd")
	if err != nil {
		b.Skipf("in.tftpd (tftpd-hpa) not installed: %v", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	cmd := exec.Command(bin, "--foreground", "--address", addr, "--secure", dir)
	if err := cmd.Start(); err != nil {
		b.Skipf("in.tftpd: %v", err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until it answers.
	c := tftpClient(b, addr, 0)
	c.SetTimeout(100 * time.Millisecond)
	for i := 0; ; i++ {
		if _, err := get(c, "ready"); err == nil {
			break
		} else if i > 50 {
			b.Skipf("in.tftpd does not answer on %s: %v", addr, err)
		}
	}
	return addr
}

// BenchmarkHTTP fetches 16 MiB over loopback: a job file and a published
// file (sendfile).
func BenchmarkHTTP(b *testing.B) {
	dir := benchFile(b)
	s, _ := startServer(b, pxe.Config{})
	sv, err := s.Serve(context.Background(), pxe.Boot{Kernel: "big.img", MAC: testMAC, JobDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	pub, err := s.Publish("big.img", filepath.Join(dir, "big.img"))
	if err != nil {
		b.Fatal(err)
	}
	for name, u := range map[string]string{"job": sv.URLs["kernel"], "published": pub} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(benchSize)
			start := time.Now()
			for i := 0; i < b.N; i++ {
				resp, err := http.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != benchSize {
					b.Fatalf("got %d bytes, %v", n, err)
				}
			}
			b.ReportMetric(float64(benchSize)*float64(b.N)/time.Since(start).Seconds()/1e6, "MB/s")
		})
	}
}
