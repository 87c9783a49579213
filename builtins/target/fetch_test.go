package target

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// putTargetFile writes a file into the running target's filesystem.
func (r *rig) putTargetFile(name string, data []byte) {
	r.t.Helper()
	p := filepath.Join(r.root(), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// httpdLeft fails the test unless every httpd the sim shell started (but
// those in keep, by address) has stopped, and no fetch directory is left in
// the target's /tmp. It returns the addresses httpd was started on.
func (r *rig) httpdLeft(keep ...string) []string {
	r.t.Helper()
	running := map[string]bool{}
	var starts []string
	for _, e := range r.eventsOf("sim.httpd") {
		addr, _ := e["addr"].(string)
		switch e["event"] {
		case "start":
			running[addr] = true
			starts = append(starts, addr)
		case "stop":
			delete(running, addr)
		}
	}
	for _, k := range keep {
		delete(running, k)
	}
	if len(running) > 0 {
		r.t.Errorf("httpd still running on %v after the fetch", running)
	}
	left, _ := filepath.Glob(filepath.Join(r.root(), "tmp", "basalt-fetch-*"))
	if len(left) > 0 {
		r.t.Errorf("fetch left %v on the target", left)
	}
	return starts
}

func TestFetch(t *testing.T) {
	r := newRig(t)
	data := randomBytes(t, 300<<10)
	r.putTargetFile("var/log/data.bin", data)
	for _, want := range []string{"", sha(data)} {
		var got bytes.Buffer
		f, err := r.tgt.Fetch(r.context(), "/var/log/data.bin", want, &got)
		if err != nil {
			t.Fatalf("Fetch(sha256=%q) = %v", want, err)
		}
		if !bytes.Equal(got.Bytes(), data) || f.SHA256 != sha(data) || f.Size != int64(len(data)) || f.Resumes != 0 {
			t.Errorf("Fetch(sha256=%q) = %+v and %d bytes, want %s and %d bytes", want, f, got.Len(), sha(data), len(data))
		}
	}
	// Each fetch started an httpd of its own and stopped it.
	if starts := r.httpdLeft(); len(starts) != 2 {
		t.Errorf("httpd started on %v, want twice", starts)
	}

	// A wrong digest is the device's problem, and nothing is kept.
	_, err := r.tgt.Fetch(r.context(), "/var/log/data.bin", sha([]byte("other")), io.Discard)
	var ce *ChecksumError
	if !errors.As(err, &ce) || builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("Fetch with a wrong sha256 = %v, want a device *ChecksumError", err)
	}
	r.httpdLeft()
	for _, p := range []string{"relative/path", "/", ""} {
		if _, err := r.tgt.Fetch(r.context(), p, "", io.Discard); builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("Fetch(%q) = %v, want a job error", p, err)
		}
	}
}

// TestFetchBadPath: a missing path, a directory or an unreadable file is a
// device error that names the path and says what is wrong, and leaves
// nothing behind.
func TestFetchBadPath(t *testing.T) {
	r := newRig(t)
	r.putTargetFile("var/log/sub/x", []byte("x"))
	tests := []struct{ path, want string }{
		{"/no/such/file", "/no/such/file: no such file on the target"},
		{"/var/log/sub", "/var/log/sub: is a directory on the target"},
		// Write-only: root opens it, but a read fails (as on Linux).
		{"/proc/self/clear_refs", "/proc/self/clear_refs: cannot be read on the target: cat: read error: Invalid argument"},
	}
	for _, tc := range tests {
		_, err := r.tgt.Fetch(r.context(), tc.path, "", io.Discard)
		if builtins.ClassOf(err) != builtins.ClassDevice || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Fetch(%q) = %v, want a device error saying %q", tc.path, err, tc.want)
		}
	}
	if starts := r.httpdLeft(); len(starts) != 0 {
		t.Errorf("httpd started on %v for paths that cannot be fetched", starts)
	}
}

// TestFetchProcFile: a procfs file stats to size 0 (as on Linux), so
// busybox httpd would send it empty; fetch serves a copy and its digest.
func TestFetchProcFile(t *testing.T) {
	r := newRig(t)
	want, err := os.ReadFile(filepath.Join(r.root(), "proc", "version"))
	if err != nil {
		t.Fatal(err)
	}
	if res := r.run("ls -l /proc/version"); !strings.Contains(res.Output, " 0 ") {
		t.Fatalf("ls -l /proc/version = %q, want size 0 as on Linux", res.Output)
	}
	var got bytes.Buffer
	f, err := r.tgt.Fetch(r.context(), "/proc/version", "", &got)
	if err != nil {
		t.Fatalf("Fetch(/proc/version) = %v", err)
	}
	if got.String() != string(want) || f.SHA256 != sha(want) || f.Size != int64(len(want)) {
		t.Errorf("Fetch(/proc/version) = %+v and %q, want %q (sha256 %s)", f, got.String(), want, sha(want))
	}
	r.httpdLeft()
}

// TestFetchPortTaken: a master image that already runs an httpd with
// another document root (on port 80, and on the port fetch picks first)
// is neither trusted nor disturbed.
func TestFetchPortTaken(t *testing.T) {
	r := newRig(t)
	data := []byte("the file we want\n")
	r.putTargetFile("root/result.txt", data)
	r.putTargetFile("srv/index.html", []byte("master image web root\n"))
	busy := freePort(t, r.ip)
	for _, port := range []int{80, busy} {
		if res := r.run(fmt.Sprintf("httpd -p %d -h /srv; echo $?", port)); strings.TrimSpace(res.Output) != "0" {
			t.Skipf("cannot start the master image's httpd on port %d: %s", port, res.Output)
		}
	}
	master := r.httpdLeft(net.JoinHostPort(r.ip, "80"), net.JoinHostPort(r.ip, strconv.Itoa(busy)))

	// The first port fetch picks is taken; it must try another.
	picks := []int{busy}
	old := pickPort
	pickPort = func(r *mrand.Rand) int {
		if len(picks) > 0 {
			p := picks[0]
			picks = picks[1:]
			return p
		}
		return old(r)
	}
	t.Cleanup(func() { pickPort = old })

	var got bytes.Buffer
	f, err := r.tgt.Fetch(r.context(), "/root/result.txt", "", &got)
	if err != nil {
		t.Fatalf("Fetch with the master's httpd on ports 80 and %d = %v", busy, err)
	}
	if got.String() != string(data) || f.SHA256 != sha(data) {
		t.Errorf("Fetch = %+v and %q, want %q", f, got.String(), data)
	}
	starts := r.httpdLeft(master...)
	if len(starts) != len(master)+1 {
		t.Errorf("httpd started on %v, want the master's %v and one of fetch's own", starts, master)
	}
	// The master's httpd still serves its own root.
	resp, err := http.Get("http://" + net.JoinHostPort(r.ip, "80") + "/index.html")
	if err != nil {
		t.Fatalf("the master's httpd: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "master image web root\n" {
		t.Errorf("the master's httpd answers %q after the fetch, want its own index", body)
	}
}

// cutter makes the connections of an HTTP client to host; the first one
// whose answer passes limit bytes is cut there.
type cutter struct {
	host  string
	limit int64
	cut   atomic.Bool
	dials atomic.Int32
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil || !strings.HasPrefix(addr, c.host+":") {
		return conn, err
	}
	c.dials.Add(1)
	return &cutConn{Conn: conn, c: c}, nil
}

type cutConn struct {
	net.Conn
	c *cutter
	n int64
}

func (cc *cutConn) Read(p []byte) (int, error) {
	if cc.c.cut.Load() && cc.n >= cc.c.limit {
		return 0, io.ErrUnexpectedEOF
	}
	if left := cc.c.limit - cc.n; left > 0 && int64(len(p)) > left && !cc.c.cut.Load() {
		p = p[:left]
	}
	n, err := cc.Conn.Read(p)
	cc.n += int64(n)
	if cc.n >= cc.c.limit && cc.c.cut.CompareAndSwap(false, true) {
		cc.Conn.Close() // both ends see the connection end mid-body
		cc.n = cc.c.limit
	}
	return n, err
}

func TestFetchResumesAfterDrop(t *testing.T) {
	var c *cutter
	r := newRig(t, withConfig(func(cfg *Config) {
		// Every connection of the dispatcher's client to the target's
		// httpd goes through c.
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.dial(ctx, network, addr)
		}, DisableKeepAlives: true}}
	}))
	c = &cutter{host: r.ip, limit: 100 << 10}

	data := randomBytes(t, 1<<20)
	r.putTargetFile("root/big.bin", data)
	var got bytes.Buffer
	f, err := r.tgt.Fetch(r.context(), "/root/big.bin", "", &got)
	if err != nil {
		t.Fatalf("Fetch through a cutting dialer = %v", err)
	}
	if !bytes.Equal(got.Bytes(), data) || f.Resumes < 1 {
		t.Errorf("Fetch = %+v with %d bytes, want %d exact bytes after at least one resume", f, got.Len(), len(data))
	}
	// The target's httpd saw the resume as a Range request.
	ranged := false
	for _, e := range r.eventsOf("sim.httpd") {
		if rg, ok := e["range"].(string); ok && rg != "" && e["status"] == http.StatusPartialContent {
			ranged = true
		}
	}
	if !ranged {
		t.Error("httpd saw no Range request answered with 206")
	}
	if !c.cut.Load() || c.dials.Load() < 3 {
		t.Errorf("cut %v after %d connections, want a cut and at least 3 connections (nonce, body, resume)", c.cut.Load(), c.dials.Load())
	}
}

func TestContentRange(t *testing.T) {
	tests := []struct {
		in         string
		from, size int64
		ok         bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		from, size, ok := artifact.ContentRange(tc.in)
		if from != tc.from || size != tc.size || ok != tc.ok {
			t.Errorf("contentRange(%q) = %d, %d, %v, want %d, %d, %v", tc.in, from, size, ok, tc.from, tc.size, tc.ok)
		}
	}
}

// cancelOnData is an HTTP transport that cancels the fetch's context as the
// download of the copy starts.
type cancelOnData struct {
	cancel context.CancelFunc
	seen   atomic.Bool
}

func (c *cancelOnData) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/data") {
		c.seen.Store(true)
		c.cancel()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestFetchCanceledCleansUp: a job canceled in the middle of a download
// leaves no httpd running and no copy on the target.
func TestFetchCanceledCleansUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &cancelOnData{cancel: cancel}
	r := newRig(t, withConfig(func(c *Config) { c.HTTPClient = &http.Client{Transport: tr} }))
	r.putTargetFile("root/big.bin", randomBytes(t, 1<<20))
	_, err := r.tgt.Fetch(ctx, "/root/big.bin", "", io.Discard)
	if !tr.seen.Load() || !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch canceled as the download started = %v (download seen: %v), want context.Canceled", err, tr.seen.Load())
	}
	if starts := r.httpdLeft(); len(starts) != 1 {
		t.Errorf("httpd started on %v, want once", starts)
	}
}
