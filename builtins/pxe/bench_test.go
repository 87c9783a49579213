package pxe_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
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

// benchRounds is the number of samples per server: alternated, the one
// that goes first changing every round (basalt, tftpd-hpa, tftpd-hpa,
// basalt, ...), so that a change of the machine's load hits both sides
// alike and neither is always the one after the other.
const benchRounds = 16

// sample is one fetch: its throughput and the CPU time the server spent
// on it.
type sample struct {
	mbps float64
	cpu  time.Duration
}

// fetchOnce fetches name once with the client every server is measured
// with: lockStepGet, or (window > 1) the RFC 7440 client of
// window_test.go, which acts as U-Boot with tftpwindowsize set. serverCPU
// returns the CPU time so far of the process serving the transfer; it is
// read before the request (started false) and again just before the
// client ACKs the last block (tftpd-hpa's per-transfer child exits on
// that ACK).
func fetchOnce(b *testing.B, addr, name string, blksize, window int, serverCPU func(started bool) time.Duration) sample {
	b.Helper()
	c0 := serverCPU(false)
	var c1 time.Duration
	atEnd := func() { c1 = serverCPU(true) }
	start := time.Now()
	var n int64
	var took time.Duration
	if window > 1 {
		c := &windowClient{blksize: blksize, window: window, atEnd: func() { took = time.Since(start); atEnd() }}
		n = int64(len(c.get(b, addr, name)))
	} else {
		n = lockStepGet(b, addr, name, blksize, func() { took = time.Since(start); atEnd() })
	}
	if n != benchSize {
		b.Fatalf("got %d bytes, want %d", n, benchSize)
	}
	return sample{mbps: float64(n) / took.Seconds() / 1e6, cpu: c1 - c0}
}

// lockStepGet fetches name from server as an RFC 1350 client with the
// RFC 2348 blksize and RFC 2349 tsize options, as a PXE ROM does: one ACK
// per DATA, the ACK resent when nothing comes for a second. It returns the
// bytes received. atEnd runs once the last block is in, before its ACK.
// It is written for the benchmark: pin/tftp's client, used before, arms a
// timer and allocates per block, work that is the client's and only
// dilutes the servers' difference.
func lockStepGet(b *testing.B, server, name string, blksize int, atEnd func()) int64 {
	b.Helper()
	srv, err := netip.ParseAddrPort(server)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := fmt.Appendf([]byte{0, 1}, "%s\x00octet\x00blksize\x00%d\x00tsize\x000\x00", name, blksize)
	if _, err := conn.WriteToUDPAddrPort(req, srv); err != nil {
		b.Fatal(err)
	}
	last := req // what a timeout resends: the request, then the last ACK
	to := srv
	ack := []byte{0, 4, 0, 0}
	buf := make([]byte, 4+65464)
	var n int64
	want := uint16(1)
	var armed time.Time
	for tries := 0; ; {
		// A deadline per datagram would be a timer reset per block; one
		// renewed every 100 ms still catches a stall within 1.1 s.
		if now := time.Now(); now.Sub(armed) > 100*time.Millisecond {
			conn.SetReadDeadline(now.Add(time.Second))
			armed = now
		}
		m, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if tries++; tries > 5 {
				b.Fatalf("%s: nothing after block %d: %v", server, want-1, err)
			}
			conn.WriteToUDPAddrPort(last, to)
			armed = time.Time{}
			continue
		}
		if m < 4 {
			continue
		}
		to = from
		switch binary.BigEndian.Uint16(buf) {
		case 6: // OACK (RFC 2347): the server may lower blksize
			for f := strings.Split(strings.TrimSuffix(string(buf[2:m]), "\x00"), "\x00"); len(f) >= 2; f = f[2:] {
				if strings.EqualFold(f[0], "blksize") {
					blksize, _ = strconv.Atoi(f[1])
				}
			}
			binary.BigEndian.PutUint16(ack[2:], 0)
		case 3: // DATA
			blk := binary.BigEndian.Uint16(buf[2:])
			if blk != want {
				// A duplicate: ACK it again (RFC 1350 §6).
				binary.BigEndian.PutUint16(ack[2:], blk)
				conn.WriteToUDPAddrPort(ack, from)
				continue
			}
			n += int64(m - 4)
			binary.BigEndian.PutUint16(ack[2:], blk)
			want++
			if m-4 < blksize {
				atEnd()
				conn.WriteToUDPAddrPort(ack, from)
				return n
			}
		case 5:
			b.Fatalf("%s: error %q", server, buf[4:m])
		default:
			continue
		}
		tries = 0
		last = ack
		if _, err := conn.WriteToUDPAddrPort(ack, from); err != nil {
			b.Fatal(err)
		}
	}
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
// client in this process, alternating the two benchRounds times per b.N.
// It reports the median MB/s of each with min and max; x-tftpd-hpa, the
// ratio of the medians; x-paired, the median of the ratios of the two
// samples of a round (taken a second apart, so under the same load), with
// their min and max; and the CPU time each server spent per MB, from
// /proc/PID/stat (proc(5) fields 14-17): basalt's process, and the child
// tftpd-hpa forks per transfer, read before that child exits.
// windowsize=16 is basalt with a client that negotiates RFC 7440 windows
// (U-Boot's tftpwindowsize=16) against tftpd-hpa, which has no
// windowsize, in lock-step at the same blksize: what a U-Boot gets from
// either. -v logs every sample.
func BenchmarkTFTP(b *testing.B) {
	dir := benchFile(b)
	hpa, hpaPID := startTFTPDHPA(b, dir)
	basalt, name, basaltPID := startTFTPHelper(b, dir)
	ourCPU := func() time.Duration { return procCPU(b, basaltPID) }
	// tftpd-hpa serves each request in a child it forks (and does not
	// wait for: it ignores SIGCHLD, so its time never shows in the
	// listener's), which starts at zero CPU time.
	theirCPU := func(started bool) time.Duration {
		if !started {
			return 0
		}
		return procCPU(b, hpaTransferPID(b, hpaPID))
	}
	for _, tc := range []struct{ blksize, window int }{{512, 1}, {1468, 1}, {1468, 16}} {
		b.Run(fmt.Sprintf("windowsize=%d/blksize=%d", tc.window, tc.blksize), func(b *testing.B) {
			var ours, theirs, paired []float64
			var ocpu, tcpu time.Duration
			for b.Loop() {
				for i := range benchRounds {
					var o, t sample
					basaltSide := func() {
						o = fetchOnce(b, basalt, name, tc.blksize, tc.window, func(bool) time.Duration { return ourCPU() })
					}
					hpaSide := func() { t = fetchOnce(b, hpa, "big.img", tc.blksize, 1, theirCPU) }
					if i%4 == 0 || i%4 == 3 {
						basaltSide()
						hpaSide()
					} else {
						hpaSide()
						basaltSide()
					}
					b.Logf("round %d: basalt %.1f MB/s %v cpu, tftpd-hpa %.1f MB/s %v cpu", i, o.mbps, o.cpu, t.mbps, t.cpu)
					ours, theirs, paired = append(ours, o.mbps), append(theirs, t.mbps), append(paired, o.mbps/t.mbps)
					ocpu += o.cpu
					tcpu += t.cpu
				}
			}
			mb := float64(len(ours)) * benchSize / 1e6
			b.ReportMetric(float64(ocpu.Microseconds())/1e3/mb, "basalt-cpu-ms/MB")
			b.ReportMetric(float64(tcpu.Microseconds())/1e3/mb, "tftpd-hpa-cpu-ms/MB")
			om, olo, ohi := spread(ours)
			tm, tlo, thi := spread(theirs)
			pm, plo, phi := spread(paired)
			b.ReportMetric(om, "basalt-MB/s")
			b.ReportMetric(olo, "basalt-min-MB/s")
			b.ReportMetric(ohi, "basalt-max-MB/s")
			b.ReportMetric(tm, "tftpd-hpa-MB/s")
			b.ReportMetric(tlo, "tftpd-hpa-min-MB/s")
			b.ReportMetric(thi, "tftpd-hpa-max-MB/s")
			b.ReportMetric(om/tm, "x-tftpd-hpa")
			b.ReportMetric(pm, "x-paired")
			b.ReportMetric(plo, "x-paired-min")
			b.ReportMetric(phi, "x-paired-max")
		})
	}
}

// hpaTransferPID is the child tftpd-hpa (pid) forked for the transfer
// under way, from /proc/PID/task/PID/children (proc(5)): the newest one,
// as an earlier child may not have exited yet.
func hpaTransferPID(b *testing.B, pid int) int {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		b.Skipf("no CPU time of tftpd-hpa's transfer: %v", err)
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		b.Fatalf("tftpd-hpa (pid %d) has no child while it serves a transfer", pid)
	}
	child, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		b.Fatalf("children of tftpd-hpa: %q: %v", data, err)
	}
	return child
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
func startTFTPDHPA(b *testing.B, dir string) (addr string, pid int) {
	b.Helper()
	bin, err := exec.LookPath("in.tftpd")
	if err != nil {
		b.Skipf("in.tftpd (tftpd-hpa) not installed: %v", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr = pc.LocalAddr().String()
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
	return addr, cmd.Process.Pid
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
