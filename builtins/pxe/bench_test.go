package pxe_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
)

const benchSize = 64 << 20

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

// fetchAll is the one client every TFTP server is measured with.
func fetchAll(b *testing.B, addr, name string, blksize int) {
	b.Helper()
	c := tftpClient(b, addr, blksize)
	c.SetTimeout(2 * time.Second)
	b.SetBytes(benchSize)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			b.Fatal(err)
		}
		n, err := wt.WriteTo(io.Discard)
		if err != nil || n != benchSize {
			b.Fatalf("got %d bytes, %v; want %d", n, err, benchSize)
		}
	}
	b.ReportMetric(float64(benchSize)*float64(b.N)/time.Since(start).Seconds()/1e6, "MB/s")
}

// BenchmarkTFTP fetches 64 MiB over loopback from basalt (lock-step and
// with pin/tftp's anticipation window) and from Debian's tftpd-hpa, with
// pin/tftp's client in every case.
func BenchmarkTFTP(b *testing.B) {
	dir := benchFile(b)
	for _, blk := range []int{512, 1468} {
		for _, anticipate := range []uint{0, 16} {
			b.Run(fmt.Sprintf("basalt/anticipate=%d/blksize=%d", anticipate, blk), func(b *testing.B) {
				s, _ := startServer(b, pxe.Config{Anticipate: anticipate})
				sv, err := s.Serve(context.Background(), pxe.Boot{Kernel: "big.img", MAC: testMAC, JobDir: dir})
				if err != nil {
					b.Fatal(err)
				}
				fetchAll(b, s.TFTPAddr(), sv.Files["kernel"], blk)
			})
		}
		b.Run(fmt.Sprintf("tftpd-hpa/blksize=%d", blk), func(b *testing.B) {
			addr := startTFTPDHPA(b, dir)
			fetchAll(b, addr, "big.img", blk)
		})
	}
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

// BenchmarkHTTP fetches 64 MiB over loopback: a job file and a published
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
