package pxe_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/pxe/pxesim"
	"github.com/pin/tftp/v3"
)

const testMAC = "52:54:00:12:34:56"

// events collects what the server emits.
type events = builtinstest.Recorder

// startServer runs a server on loopback port 0 with a loader directory of
// its own (fake pxelinux.0 and a symlink that escapes it).
func startServer(t testing.TB, cfg pxe.Config) (*pxe.Server, *events) {
	t.Helper()
	ev := &events{}
	if cfg.LoaderDir == "" {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "pxelinux.0"), []byte("fake pxelinux.0\n"), 0o644)
		os.Symlink("/etc/passwd", filepath.Join(dir, "escape"))
		cfg.LoaderDir = dir
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	cfg.Emit = ev.Emit
	s := pxe.NewServer(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ev
}

// jobDir writes a kernel, initrd and dtb of random bytes.
func jobDir(t testing.TB, kernelSize int) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, uint64(kernelSize)))
	files := map[string][]byte{}
	for name, n := range map[string]int{"vmlinuz": kernelSize, "initrd.gz": kernelSize/2 + 7, "board.dtb": 3000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	return dir, files
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tftpClient(t testing.TB, addr string, blksize int) *tftp.Client {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(500 * time.Millisecond)
	c.SetRetries(4)
	c.SetBackoff(func(int) time.Duration { return 0 })
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	return c
}

func get(c *tftp.Client, name string) ([]byte, error) {
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	_, err = wt.WriteTo(&b)
	return b.Bytes(), err
}

func serveJob(t testing.TB, s *pxe.Server, dir string) *pxe.Served {
	t.Helper()
	sv, err := s.Serve(context.Background(), pxe.Boot{
		Kernel: "vmlinuz", Initrd: "initrd.gz", DTB: "board.dtb",
		Append: "console=ttyAMA0 root=/dev/ram0", MAC: testMAC, JobDir: dir,
	})
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return sv
}

func TestSimBootsFromServer(t *testing.T) {
	s, ev := startServer(t, pxe.Config{})
	dir, files := jobDir(t, 300_000)
	sv := serveJob(t, s, dir)

	var con bytes.Buffer
	got, err := pxesim.Boot(context.Background(), pxesim.Config{
		TFTPAddr: s.TFTPAddr(), MAC: testMAC, Console: &con, BootFile: "pxelinux.0",
		UUID: "11111111-2222-3333-4444-555555555555",
	})
	if err != nil {
		t.Fatalf("pxesim.Boot: %v\nconsole:\n%s", err, con.String())
	}
	if want := pxe.MACConfigName(mustMAC(t, testMAC)); got.Config != want {
		t.Errorf("booted config = %q, want %q", got.Config, want)
	}
	if got.Nonce != sv.Nonce || sv.Nonce == "" {
		t.Errorf("booted nonce = %q, want %q", got.Nonce, sv.Nonce)
	}
	if !strings.Contains(got.Append, "root=/dev/ram0") || !strings.Contains(got.Append, "basalt.nonce="+sv.Nonce) {
		t.Errorf("append = %q, want the job's command line and nonce", got.Append)
	}
	if got.Kernel.SHA256 != sum(files["vmlinuz"]) || got.Kernel.Size != int64(len(files["vmlinuz"])) {
		t.Errorf("kernel = %d bytes %s, want %d bytes %s", got.Kernel.Size, got.Kernel.SHA256, len(files["vmlinuz"]), sum(files["vmlinuz"]))
	}
	if len(got.Initrd) != 1 || got.Initrd[0].SHA256 != sum(files["initrd.gz"]) {
		t.Errorf("initrd = %+v, want sha256 %s", got.Initrd, sum(files["initrd.gz"]))
	}
	if got.DTB == nil || got.DTB.SHA256 != sum(files["board.dtb"]) {
		t.Errorf("dtb = %+v, want sha256 %s", got.DTB, sum(files["board.dtb"]))
	}
	for _, want := range []string{"PXELINUX 6.04", "pxelinux.cfg/11111111-2222-3333-4444-555555555555", "Loading " + sv.Files["kernel"] + "...ok"} {
		if !strings.Contains(con.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, con.String())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range []string{"vmlinuz", "initrd", sv.Files["dtb"], sv.Config, "pxelinux.0"} {
		if err := s.WaitFetch(ctx, name); err != nil && name != "pxelinux.0" {
			t.Errorf("WaitFetch(%q) = %v, want nil", name, err)
		}
	}

	// The UUID lookup came first and got nothing; the MAC one answered.
	// Events are emitted when a transfer ends, so only the order of the
	// lookups themselves is fixed.
	idx := map[string]int{}
	for i, f := range ev.Events("tftp") {
		idx[fmt.Sprintf("%s:%s", f["file"], f["outcome"])] = i + 1
	}
	uuid := idx["pxelinux.cfg/11111111-2222-3333-4444-555555555555:not_found"]
	macOK := idx[sv.Config+":ok"]
	if idx["pxelinux.0:ok"] == 0 || uuid == 0 || macOK == 0 || uuid > macOK {
		t.Errorf("tftp events = %v, want pxelinux.0 ok, then the UUID config not found before the MAC config ok", idx)
	}
	for _, f := range ev.Events("tftp") {
		if f["file"] == sv.Files["kernel"] && (f["blksize"] != 1468 || f["tsize"] != int64(len(files["vmlinuz"]))) {
			t.Errorf("kernel event = %v, want blksize 1468 and tsize %d", f, len(files["vmlinuz"]))
		}
	}
}

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWaitFetchTimesOutAsDeviceError(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	dir, _ := jobDir(t, 1000)
	serveJob(t, s, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.WaitFetch(ctx, "vmlinuz")
	if builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("WaitFetch before any fetch = %v (class %s), want a device error", err, builtins.ClassOf(err))
	}
	if err := s.WaitFetch(ctx, "nosuchfile"); builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("WaitFetch(nosuchfile) = %v, want a job error", err)
	}
}

func TestOnlyThisJobsMACAndFiles(t *testing.T) {
	s, ev := startServer(t, pxe.Config{})
	dir, _ := jobDir(t, 1000)
	sv := serveJob(t, s, dir)
	c := tftpClient(t, s.TFTPAddr(), 0)
	if _, err := get(c, sv.Config); err != nil {
		t.Fatalf("get(%s) = %v, want the config", sv.Config, err)
	}
	for _, name := range []string{
		"pxelinux.cfg/01-52-54-00-12-34-57", "pxelinux.cfg/default", "pxelinux.cfg/C000020A",
		"vmlinuz", "escape", // escape: a symlink out of the loader directory
	} {
		if b, err := get(c, name); err == nil {
			t.Errorf("get(%q) = %d bytes, want an error", name, len(b))
		}
	}
	old := sv.Files["kernel"]
	serveJob(t, s, dir) // a new job: the old nonce's files are gone
	if _, err := get(c, old); err == nil {
		t.Errorf("get(%q) after a new Serve succeeded, want file not found", old)
	}
	s.Stop()
	if _, err := get(c, sv.Config); err == nil {
		t.Errorf("get(%q) after Stop succeeded, want file not found", sv.Config)
	}
	if n := len(ev.Events("pxe_serve")); n != 2 {
		t.Errorf("pxe_serve events = %d, want 2", n)
	}
}

func TestRefusedNames(t *testing.T) {
	s, ev := startServer(t, pxe.Config{})
	dir, _ := jobDir(t, 1000)
	serveJob(t, s, dir)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, _ := net.ResolveUDPAddr("udp", s.TFTPAddr())
	tests := []struct {
		name   []byte
		reason string
	}{
		{[]byte("../../etc/passwd"), "dotdot"},
		{[]byte("pxelinux.cfg/../../etc/passwd"), "dotdot"},
		{[]byte("/etc/passwd"), "absolute"},
		{[]byte(strings.Repeat("a", 300)), "too_long"},
		{[]byte("..\\..\\boot.ini"), "backslash"},
	}
	for _, tt := range tests {
		// RRQ: opcode 1, name, 0, mode, 0 (RFC 1350).
		pkt := append([]byte{0, 1}, tt.name...)
		pkt = append(pkt, 0)
		pkt = append(pkt, "octet\x00"...)
		if _, err := conn.WriteTo(pkt, srv); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 600)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("RRQ %q: no answer: %v", tt.name, err)
		}
		if n < 4 || buf[1] != 5 {
			t.Errorf("RRQ %q: answer opcode %d, want ERROR (5)", tt.name, buf[1])
		}
	}
	got := map[string]bool{}
	for _, f := range ev.Events("pxe_refused") {
		got[f["reason"].(string)] = true
	}
	for _, tt := range tests {
		if !got[tt.reason] {
			t.Errorf("pxe_refused reasons = %v, want %q", got, tt.reason)
		}
	}
	// A request with a NUL in the name parses as name "x", mode garbage:
	// pin/tftp drops it; nothing may be served.
	resp, err := http.Get(s.HTTPURL() + "/%2e%2e/%2e%2e/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /../../etc/passwd = %d, want 403", resp.StatusCode)
	}
}

func TestHTTPRangeAndPublish(t *testing.T) {
	s, ev := startServer(t, pxe.Config{})
	dir, files := jobDir(t, 100_000)
	sv := serveJob(t, s, dir)

	req, _ := http.NewRequest("GET", sv.URLs["kernel"], nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, files["vmlinuz"][1000:2000]) {
		t.Errorf("GET kernel bytes=1000-1999 = %d, %d bytes, want 206 with those bytes", resp.StatusCode, len(body))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	if err := s.WaitFetch(ctx, "kernel"); err == nil {
		t.Errorf("WaitFetch after a partial GET = nil, want a timeout")
	}
	cancel()
	resp, err = http.Get(sv.URLs["kernel"])
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, files["vmlinuz"]) {
		t.Errorf("GET kernel = %d bytes, want %d", len(body), len(files["vmlinuz"]))
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitFetch(ctx, "kernel"); err != nil {
		t.Errorf("WaitFetch after a full GET = %v, want nil", err)
	}
	resp, _ = http.Get(sv.URLs["ipxe"])
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(script), "#!ipxe") || !strings.Contains(string(script), sv.URLs["kernel"]) {
		t.Errorf("iPXE script = %q, want a script fetching %s", script, sv.URLs["kernel"])
	}

	u, err := s.Publish("disk.img", filepath.Join(dir, "initrd.gz"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	req, _ = http.NewRequest("GET", u, nil)
	req.Header.Set("Range", "bytes=10-")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, files["initrd.gz"][10:]) {
		t.Errorf("GET published bytes=10- = %d, %d bytes, want 206 and %d bytes", resp.StatusCode, len(body), len(files["initrd.gz"])-10)
	}
	// The event of a request is emitted when its handler returns, which
	// may be just after the client has read the body.
	for deadline := time.Now().Add(2 * time.Second); len(ev.Events("http")) < 4 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if len(ev.Events("http")) < 4 {
		t.Errorf("http events = %d, want one per request", len(ev.Events("http")))
	}
	if _, err := s.Publish("../x", filepath.Join(dir, "initrd.gz")); err == nil {
		t.Errorf("Publish(../x) = nil, want an error")
	}
}

func TestJobPathsConfined(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	dir, _ := jobDir(t, 1000)
	os.Symlink("/etc/passwd", filepath.Join(dir, "link"))
	for _, k := range []string{"../vmlinuz", "/etc/passwd", "link", "missing"} {
		_, err := s.Serve(context.Background(), pxe.Boot{Kernel: k, MAC: testMAC, JobDir: dir})
		if builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("Serve(kernel=%q) = %v, want a job error", k, err)
		}
	}
	_, err := s.Serve(context.Background(), pxe.Boot{Kernel: "vmlinuz", MAC: testMAC, JobDir: dir, SHA256: map[string]string{"kernel": strings.Repeat("0", 64)}})
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("Serve with a wrong sha256 = %v, want a checksum error", err)
	}
}

func TestURLArtifactsCached(t *testing.T) {
	kernel := bytes.Repeat([]byte("kernel!"), 5000)
	var hits atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/vmlinuz" {
			http.NotFound(w, r)
			return
		}
		w.Write(kernel)
	}))
	defer hs.Close()
	s, _ := startServer(t, pxe.Config{DownloadRetries: 1})
	for i := range 2 {
		sv, err := s.Serve(context.Background(), pxe.Boot{Kernel: hs.URL + "/vmlinuz", MAC: testMAC,
			SHA256: map[string]string{"kernel": sum(kernel)}})
		if err != nil {
			t.Fatalf("Serve #%d: %v", i, err)
		}
		got, err := get(tftpClient(t, s.TFTPAddr(), 1468), sv.Files["kernel"])
		if err != nil || !bytes.Equal(got, kernel) {
			t.Errorf("Serve #%d: fetched %d bytes (%v), want %d", i, len(got), err, len(kernel))
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("downloads = %d, want 1 (cached by sha256)", n)
	}
	_, err := s.Serve(context.Background(), pxe.Boot{Kernel: hs.URL + "/missing", MAC: testMAC})
	if builtins.ClassOf(err) != builtins.ClassInfra || !strings.Contains(err.Error(), hs.URL+"/missing") {
		t.Errorf("Serve(missing URL) = %v, want an infra error naming the URL", err)
	}
	var ce *builtins.Error
	if !errors.As(err, &ce) {
		t.Errorf("Serve(missing URL) error is %T, want *builtins.Error", err)
	}
}

// A large published file (a disk image being deployed) reports progress
// while it is sent, and still arrives whole.
func TestPublishProgress(t *testing.T) {
	s, ev := startServer(t, pxe.Config{})
	data := make([]byte, 40<<20+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	p := filepath.Join(t.TempDir(), "big.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := s.Publish("big.img", p)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, data) {
		t.Fatalf("GET %s = %d bytes, want the %d published", u, len(body), len(data))
	}
	var sent []int64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		sent = sent[:0]
		for _, e := range ev.Events("http_progress") {
			sent = append(sent, e["bytes"].(int64))
		}
		if len(sent) >= 2 {
			break
		}
	}
	if len(sent) < 2 {
		t.Fatalf("http_progress events = %v, want one per 16 MiB sent", sent)
	}
	for i := 1; i < len(sent); i++ {
		if sent[i] <= sent[i-1] {
			t.Errorf("progress went from %d to %d bytes", sent[i-1], sent[i])
		}
	}
}

// A loader directory that does not exist is not worth a warning when no
// target asks for a loader (the sim's firmware loads the kernel itself);
// a target asking for pxelinux.0 that no directory has is, once, naming the
// file and the directories.
func TestMissingLoaderWarnsOnlyWhenAsked(t *testing.T) {
	var logs builtinstest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	absent := filepath.Join(t.TempDir(), "no-such-dir")
	present := t.TempDir()
	os.WriteFile(filepath.Join(present, "ldlinux.c32"), []byte("module"), 0o644)
	s, _ := startServer(t, pxe.Config{LoaderDir: absent + string(filepath.ListSeparator) + present, Log: log})
	if logs.Len() > 0 {
		t.Errorf("Start logged %q, want no warning for an absent loader directory", logs.String())
	}
	dir, _ := jobDir(t, 3000)
	sv := serveJob(t, s, dir)
	c := tftpClient(t, s.TFTPAddr(), 0)
	if got, err := get(c, "ldlinux.c32"); err != nil || string(got) != "module" {
		t.Errorf("get ldlinux.c32 = %q, %v; want it from the directory that exists", got, err)
	}
	if _, err := get(c, sv.Config); err != nil {
		t.Errorf("get %s: %v", sv.Config, err)
	}
	if logs.Len() > 0 {
		t.Errorf("a boot without a missing loader logged %q", logs.String())
	}
	for i := 0; i < 3; i++ {
		if _, err := get(c, "pxelinux.0"); err == nil {
			t.Fatal("get pxelinux.0 succeeded; no loader directory has it")
		}
	}
	out := logs.String()
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "file=pxelinux.0") || !strings.Contains(out, "absent_dirs="+absent) {
		t.Errorf("after 3 requests for a missing pxelinux.0 the log is %q, want one warning naming the file and %s", out, absent)
	}
}
