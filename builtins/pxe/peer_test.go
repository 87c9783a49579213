package pxe_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/pxe/pxesim"
)

func need(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed (Debian: see the package list in the report): %v", tool, err)
	}
	return p
}

func hostPort(t testing.TB, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func runTool(t *testing.T, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

func checkFile(t *testing.T, tool, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", tool, err)
		return
	}
	if sum(got) != sum(want) {
		t.Errorf("%s fetched %d bytes sha256 %s, want %d bytes %s", tool, len(got), sum(got), len(want), sum(want))
	}
}

func TestCurlTFTP(t *testing.T) {
	curl := need(t, "curl")
	s, ev := startServer(t, pxe.Config{})
	dir, files := jobDir(t, 2_000_000)
	sv := serveJob(t, s, dir)
	out := t.TempDir()
	for _, name := range []string{sv.Config, sv.Files["kernel"]} {
		dst := filepath.Join(out, filepath.Base(name))
		if b, err := runTool(t, curl, "-sS", "--tftp-blksize", "1468", "-o", dst, "tftp://"+s.TFTPAddr()+"/"+name); err != nil {
			t.Fatalf("curl %s: %v\n%s", name, err, b)
		}
	}
	checkFile(t, "curl", filepath.Join(out, "vmlinuz"), files["vmlinuz"])
	cfg, _ := os.ReadFile(filepath.Join(out, filepath.Base(sv.Config)))
	if !strings.Contains(string(cfg), "APPEND console=ttyAMA0 root=/dev/ram0 basalt.nonce="+sv.Nonce) {
		t.Errorf("config fetched by curl:\n%s\nwant an APPEND line with the nonce", cfg)
	}
	found := false
	for _, f := range ev.Events("tftp") {
		if f["file"] == sv.Files["kernel"] && f["blksize"] == 1468 && f["outcome"] == "ok" {
			found = true
		}
	}
	if !found {
		t.Errorf("no tftp event for the kernel with blksize 1468: %v", ev.Events("tftp"))
	}
	// Traversal, as sent by curl without URL normalisation.
	b, err := runTool(t, curl, "-sS", "--path-as-is", "-o", filepath.Join(out, "passwd"), "tftp://"+s.TFTPAddr()+"/../../../etc/passwd")
	if err == nil {
		t.Errorf("curl ../../../etc/passwd succeeded, want refused: %s", b)
	}
	if len(ev.Events("pxe_refused")) == 0 {
		t.Errorf("no pxe_refused event for curl's traversal")
	}
}

func TestAtftpBlksize1468(t *testing.T) {
	atftp := need(t, "atftp")
	s, _ := startServer(t, pxe.Config{})
	dir, files := jobDir(t, 1_500_000)
	sv := serveJob(t, s, dir)
	h, p := hostPort(t, s.TFTPAddr())
	dst := filepath.Join(t.TempDir(), "k")
	if b, err := runTool(t, atftp, "--option", "blksize 1468", "--option", "tsize 0", "-g", "-r", sv.Files["kernel"], "-l", dst, h, p); err != nil {
		t.Fatalf("atftp: %v\n%s", err, b)
	}
	checkFile(t, "atftp", dst, files["vmlinuz"])
	b, err := runTool(t, atftp, "-g", "-r", "../../etc/passwd", "-l", filepath.Join(t.TempDir(), "x"), h, p)
	if err == nil && !strings.Contains(string(b), "rror") {
		t.Errorf("atftp ../../etc/passwd: succeeded, want refused\n%s", b)
	}
}

func TestTFTPHPAClient(t *testing.T) {
	tftpc := need(t, "tftp")
	s, _ := startServer(t, pxe.Config{})
	dir, files := jobDir(t, 800_000)
	sv := serveJob(t, s, dir)
	h, p := hostPort(t, s.TFTPAddr())
	dst := filepath.Join(t.TempDir(), "k")
	if b, err := runTool(t, tftpc, "-m", "binary", h, p, "-c", "get", sv.Files["kernel"], dst); err != nil {
		t.Fatalf("tftp-hpa: %v\n%s", err, b)
	}
	checkFile(t, "tftp-hpa", dst, files["vmlinuz"])
	// tftp-hpa's client reports errors on stdout and exits 0.
	b, _ := runTool(t, tftpc, "-m", "binary", h, p, "-c", "get", "../etc/passwd", filepath.Join(t.TempDir(), "x"))
	if !strings.Contains(string(b), "Error") {
		t.Errorf("tftp-hpa ../etc/passwd = %q, want an error", b)
	}
}

// lossyRelay is a client-side UDP proxy that drops a fraction of datagrams
// both ways. The client talks to the relay's port only; the relay follows
// the server's per-transfer port (the TID of RFC 1350) by sending the
// client's datagrams to whichever server port spoke last.
type lossyRelay struct {
	front   net.PacketConn // the client talks to this
	back    net.PacketConn // this talks to the server
	server  *net.UDPAddr   // port 69 equivalent
	loss    float64
	mu      sync.Mutex
	rng     *rand.Rand
	client  net.Addr
	peer    *net.UDPAddr // server's current transfer port
	dropped int
}

func newLossyRelay(t *testing.T, server string, loss float64) *lossyRelay {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := net.ResolveUDPAddr("udp", server)
	r := &lossyRelay{front: front, back: back, server: sa, loss: loss, rng: rand.New(rand.NewPCG(7, 9))}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.pump(true) }()
	go func() { defer wg.Done(); r.pump(false) }()
	t.Cleanup(func() { front.Close(); back.Close(); wg.Wait() })
	return r
}

func (r *lossyRelay) drop() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rng.Float64() < r.loss {
		r.dropped++
		return true
	}
	return false
}

func (r *lossyRelay) pump(fromClient bool) {
	buf := make([]byte, 65536)
	for {
		if fromClient {
			n, from, err := r.front.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.client = from
			dst := r.peer
			if n >= 2 && buf[1] == 1 { // a new RRQ goes to the listening port
				dst, r.peer = r.server, nil
			}
			if dst == nil {
				dst = r.server
			}
			r.mu.Unlock()
			if !r.drop() {
				r.back.WriteTo(buf[:n], dst)
			}
		} else {
			n, from, err := r.back.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.peer = from.(*net.UDPAddr)
			c := r.client
			r.mu.Unlock()
			if c != nil && !r.drop() {
				r.front.WriteTo(buf[:n], c)
			}
		}
	}
}

func TestTFTPWithPacketLoss(t *testing.T) {
	// Short timeouts keep the test quick; many retries keep a loaded
	// machine (make test runs packages in parallel under -race) from
	// turning a slow scheduler into a lost transfer.
	s, _ := startServer(t, pxe.Config{TFTPTimeout: 20 * time.Millisecond, TFTPRetries: 200})
	dir := t.TempDir()
	data := make([]byte, 16<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(data); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	os.WriteFile(filepath.Join(dir, "big.img"), data, 0o644)
	sv, err := s.Serve(context.Background(), pxe.Boot{Kernel: "big.img", MAC: testMAC, JobDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	relay := newLossyRelay(t, s.TFTPAddr(), 0.10)
	c := tftpClient(t, relay.front.LocalAddr().String(), 8192)
	c.SetTimeout(20 * time.Millisecond)
	c.SetRetries(200)
	got, err := get(c, sv.Files["kernel"])
	if err != nil {
		t.Fatalf("16 MiB through a 10%% lossy relay: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("got %d bytes sha256 %s, want %d bytes %s", len(got), sum(got), len(data), sum(data))
	}
	relay.mu.Lock()
	dropped := relay.dropped
	relay.mu.Unlock()
	if dropped == 0 {
		t.Errorf("the relay dropped nothing; the test proved nothing")
	}
	t.Logf("relay dropped %d datagrams", dropped)
}

func TestSimFailures(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	dir, _ := jobDir(t, 1000)
	sv := serveJob(t, s, dir)

	// No boot file: the ROM gives up with Intel's messages.
	var con bytes.Buffer
	_, err := pxesim.Boot(context.Background(), pxesim.Config{TFTPAddr: s.TFTPAddr(), MAC: testMAC, Console: &con, BootFile: "nosuch.0"})
	if be, ok := err.(*pxesim.BootError); !ok || be.Stage != "rom" || !strings.Contains(con.String(), "PXE-E3B: TFTP Error - File Not found") {
		t.Errorf("boot with a missing boot file = %v, console %q, want a rom error with PXE-E3B", err, con.String())
	}

	// Another MAC: every config lookup fails, as pxelinux reports.
	con.Reset()
	_, err = pxesim.Boot(context.Background(), pxesim.Config{TFTPAddr: s.TFTPAddr(), MAC: "52:54:00:00:00:01", Console: &con})
	if be, ok := err.(*pxesim.BootError); !ok || be.Stage != "config" || !strings.Contains(con.String(), "Unable to locate configuration file") {
		t.Errorf("boot of another MAC = %v, console %q, want a config error", err, con.String())
	}
	if !strings.Contains(con.String(), "pxelinux.cfg/default") || !strings.Contains(con.String(), "pxelinux.cfg/C") {
		t.Errorf("console %q, want every lookup step tried", con.String())
	}

	_ = sv
	con.Reset()
	// Nothing served: a silent server port makes the ROM time out.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer pc.Close()
	_, err = pxesim.Boot(context.Background(), pxesim.Config{TFTPAddr: pc.LocalAddr().String(), MAC: testMAC, Console: &con,
		BootFile: "pxelinux.0", Timeout: 20 * time.Millisecond, Retries: 1})
	if !strings.Contains(con.String(), "PXE-E32: TFTP open timeout") || err == nil {
		t.Errorf("boot against a silent server = %v, console %q, want PXE-E32", err, con.String())
	}
}
