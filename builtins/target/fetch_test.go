package target

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
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
	// httpd was started once, on the target's address and the port asked.
	starts := 0
	for _, e := range r.eventsOf("sim.httpd") {
		if e["event"] == "start" {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("httpd started %d times, want 1", starts)
	}

	// A wrong digest is the device's problem, and nothing is kept.
	_, err := r.tgt.Fetch(r.context(), "/var/log/data.bin", sha([]byte("other")), io.Discard)
	var ce *ChecksumError
	if !errors.As(err, &ce) || builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("Fetch with a wrong sha256 = %v, want a device *ChecksumError", err)
	}
	// A missing file fails on the target (sha256sum).
	if _, err := r.tgt.Fetch(r.context(), "/no/such/file", "", io.Discard); builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("Fetch of a missing file = %v, want a device error", err)
	}
	for _, p := range []string{"relative/path", "/", ""} {
		if _, err := r.tgt.Fetch(r.context(), p, "", io.Discard); builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("Fetch(%q) = %v, want a job error", p, err)
		}
	}
}

// cuttingProxy forwards TCP connections to target; the first one is cut
// after limit bytes of the answer.
type cuttingProxy struct {
	ln     net.Listener
	target string
	limit  int64
	conns  atomic.Int32
	wg     sync.WaitGroup
}

func newCuttingProxy(t *testing.T, target string, limit int64) *cuttingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, limit: limit}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cuttingProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		n := p.conns.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer up.Close()
			go io.Copy(up, c)
			if n == 1 {
				io.CopyN(c, up, p.limit) // then both ends close mid-body
				return
			}
			io.Copy(c, up)
		}()
	}
}

func TestFetchResumesAfterDrop(t *testing.T) {
	var proxy *cuttingProxy
	var httpd string
	r := newRig(t, withConfig(func(c *Config) {
		// Every connection of the dispatcher's client goes through the
		// proxy; the proxy forwards to the target's httpd.
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			if addr == httpd {
				return d.DialContext(ctx, network, proxy.ln.Addr().String())
			}
			return d.DialContext(ctx, network, addr)
		}
		c.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	}))
	httpd = net.JoinHostPort(r.ip, strconv.Itoa(r.httpPort))
	proxy = newCuttingProxy(t, httpd, 100<<10)

	data := randomBytes(t, 1<<20)
	r.putTargetFile("root/big.bin", data)
	var got bytes.Buffer
	f, err := r.tgt.Fetch(r.context(), "/root/big.bin", "", &got)
	if err != nil {
		t.Fatalf("Fetch through a cutting proxy = %v", err)
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
	if n := proxy.conns.Load(); n < 2 {
		t.Errorf("proxy saw %d connections, want at least 2", n)
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
		from, size, ok := contentRange(tc.in)
		if from != tc.from || size != tc.size || ok != tc.ok {
			t.Errorf("contentRange(%q) = %d, %d, %v, want %d, %d, %v", tc.in, from, size, ok, tc.from, tc.size, tc.ok)
		}
	}
}
