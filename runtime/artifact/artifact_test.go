package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
)

func TestIsURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"http://example.org/vmlinuz", true},
		{"https://example.org/a/b.img.xz", true},
		{"HTTP://example.org/x", true},
		{"http://", false},
		{"http:///x", false},
		{"ftp://example.org/x", false},
		{"file:///etc/passwd", false},
		{"vmlinuz", false},
		{"http-kernel/vmlinuz", false},
		{"", false},
	} {
		if got := IsURL(c.in); got != c.want {
			t.Errorf("IsURL(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job")
	outside := filepath.Join(dir, "secret")
	for _, d := range []string{filepath.Join(job, "boot"), filepath.Join(job, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{filepath.Join(job, "boot", "vmlinuz"): "kernel", outside: "secret"} {
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(job, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("boot/vmlinuz", filepath.Join(job, "in")); err != nil {
		t.Fatal(err)
	}
	realKernel, _ := filepath.EvalSymlinks(filepath.Join(job, "boot", "vmlinuz"))
	for _, c := range []struct {
		name   string
		path   string // wanted File.Path, when it resolves
		reason string // wanted PathError.Reason, when it does not
	}{
		{name: "boot/vmlinuz", path: realKernel},
		{name: "./sub/../boot/vmlinuz", path: realKernel},
		{name: "in", path: realKernel}, // a symlink that stays inside
		{name: filepath.Join(job, "boot", "vmlinuz"), reason: "absolute paths are refused; name a file relative to the job's directory"},
		{name: "../secret", reason: "escapes the job's directory"},
		{name: "sub/../../secret", reason: "escapes the job's directory"},
		{name: "out", reason: "refused: path escapes from parent"},
		{name: "missing", reason: "no such file under the job's directory"},
		{name: "boot", reason: "not a regular file"},
		{name: "ftp://example.org/vmlinuz", reason: "only http and https URLs are fetched"},
		{name: "", reason: "empty path"},
	} {
		f, err := Resolve(job, c.name)
		if c.reason == "" {
			if err != nil {
				t.Errorf("Resolve(%q) = %v, want %s", c.name, err, c.path)
				continue
			}
			if f.Path != c.path || f.Size != int64(len("kernel")) {
				t.Errorf("Resolve(%q) = %s (%d bytes), want %s (6 bytes)", c.name, f.Path, f.Size, c.path)
			}
			f.Close()
			continue
		}
		var pe *PathError
		if !errors.As(err, &pe) || pe.Reason != c.reason || pe.Path != c.name || builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("Resolve(%q) = %v (class %s), want a job error %q", c.name, err, builtins.ClassOf(err), c.name+": "+c.reason)
		}
		if f != nil {
			f.Close()
		}
	}
}

func TestOpenJobFileSum(t *testing.T) {
	job := t.TempDir()
	os.WriteFile(filepath.Join(job, "k"), []byte("kernel"), 0o644)
	good := sum([]byte("kernel"))
	f, err := Open(context.Background(), nil, job, "k", strings.ToUpper(good))
	if err != nil {
		t.Fatalf("Open(k, its sha256) = %v", err)
	}
	f.Close()
	_, err = Open(context.Background(), nil, job, "k", sum([]byte("other")))
	if err == nil || builtins.ClassOf(err) != builtins.ClassJob || !strings.Contains(err.Error(), "k: sha256 is "+good) {
		t.Errorf("Open(k, wrong sha256) = %v, want a job error naming k and its digest", err)
	}
	_, err = Open(context.Background(), nil, job, "k", "00")
	if err == nil || builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("Open(k, \"00\") = %v, want a job error", err)
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// counter is a loopback HTTP server counting the GETs of each path.
type counter struct {
	*httptest.Server
	mu   sync.Mutex
	gets map[string]int
}

func newCounter(t *testing.T, h http.HandlerFunc) *counter {
	c := &counter{gets: map[string]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.gets[r.URL.Path]++
		c.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *counter) count(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[p]
}

func TestFetchOnceAcrossCaches(t *testing.T) {
	data := []byte(strings.Repeat("initrd bytes\n", 5000))
	release := make(chan struct{})
	srv := newCounter(t, func(w http.ResponseWriter, r *http.Request) {
		<-release // hold the first download so that the others must wait for it
		w.Write(data)
	})
	dir := t.TempDir()
	var events atomic.Int32
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	sums := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A Cache each: as separate runs sharing a cache directory.
			c := &Cache{Dir: dir, Emit: func(typ string, _ map[string]any) {
				if typ == "artifact_download" {
					events.Add(1)
				}
			}}
			f, err := c.Fetch(context.Background(), srv.URL+"/initrd.gz", "")
			errs[i] = err
			if err == nil {
				sums[i] = f.SHA256
				f.Close()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || sums[i] != sum(data) {
			t.Errorf("Fetch #%d = %s, %v, want sha256 %s", i, sums[i], errs[i], sum(data))
		}
	}
	if got := srv.count("/initrd.gz"); got != 1 {
		t.Errorf("%d concurrent Fetches of one URL sent %d GETs, want 1", n, got)
	}
	if got := events.Load(); got != 1 {
		t.Errorf("artifact_download events = %d, want 1", got)
	}
	blob := filepath.Join(dir, "sha256", sum(data))
	if b, err := os.ReadFile(blob); err != nil || string(b) != string(data) {
		t.Errorf("cache blob %s: %d bytes, %v; want the content", blob, len(b), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "sha256", ".download-*")); len(left) > 0 {
		t.Errorf("temporary files left in the cache: %v", left)
	}
}

func TestFetchErrors(t *testing.T) {
	data := []byte("the real kernel")
	srv := newCounter(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	})
	dir := t.TempDir()
	c := &Cache{Dir: dir, Retries: 1}
	ctx := context.Background()

	_, err := c.Fetch(ctx, srv.URL+"/missing", "")
	if err == nil || builtins.ClassOf(err) != builtins.ClassInfra || !strings.Contains(err.Error(), srv.URL+"/missing") || !strings.Contains(err.Error(), "404") {
		t.Errorf("Fetch(404) = %v (class %s), want an infrastructure error naming the URL and 404", err, builtins.ClassOf(err))
	}

	// A password in the URL shows in no message.
	withPass := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/missing"
	_, err = c.Fetch(ctx, withPass, "")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "user:xxxxx@") {
		t.Errorf("Fetch(URL with a password) = %v, want the password masked", err)
	}

	wrong := sum([]byte("another kernel"))
	_, err = c.Fetch(ctx, srv.URL+"/vmlinuz", wrong)
	if err == nil || builtins.ClassOf(err) != builtins.ClassInfra || !strings.Contains(err.Error(), srv.URL+"/vmlinuz") ||
		!strings.Contains(err.Error(), "sha256 is "+sum(data)+", want "+wrong) {
		t.Errorf("Fetch(wrong sha256) = %v (class %s), want an infrastructure error naming the URL and both digests", err, builtins.ClassOf(err))
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "sha256")); len(ents) != 0 {
		t.Errorf("a download with the wrong sha256 left %d files in the cache, want none", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "url")); len(ents) != 0 {
		t.Errorf("a download with the wrong sha256 was indexed")
	}

	// With the right sha256 it downloads, and then neither a Fetch with the
	// sha256 nor one without asks the server again.
	for _, want := range []string{sum(data), "", sum(data)} {
		f, err := c.Fetch(ctx, srv.URL+"/vmlinuz", want)
		if err != nil {
			t.Fatalf("Fetch(vmlinuz, %q) = %v", want, err)
		}
		f.Close()
	}
	if got := srv.count("/vmlinuz"); got != 2 { // the refused one and the first good one
		t.Errorf("GETs of /vmlinuz = %d, want 2", got)
	}

	if _, err := (&Cache{}).Fetch(ctx, srv.URL+"/vmlinuz", ""); err == nil || builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("Fetch without a cache directory = %v, want an infrastructure error", err)
	}
}

// TestFetchResumes: a body that breaks off is resumed with a Range request.
func TestFetchResumes(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 10000))
	var first atomic.Bool
	var ranges []string
	var mu sync.Mutex
	srv := newCounter(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if !first.Swap(true) {
			// Announce it all, send a third, and drop the connection.
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:len(data)/3])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		http.ServeContent(w, r, "image", time.Time{}, strings.NewReader(string(data)))
	})
	c := &Cache{Dir: t.TempDir()}
	f, err := c.Fetch(context.Background(), srv.URL+"/image", sum(data))
	if err != nil {
		t.Fatalf("Fetch after a dropped body = %v", err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != string(data) {
		t.Errorf("Fetch after a dropped body gave %d bytes, want %d", len(b), len(data))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 2 || ranges[1] != fmt.Sprintf("bytes=%d-", len(data)/3) {
		t.Errorf("Range headers = %q, want [\"\" \"bytes=%d-\"]", ranges, len(data)/3)
	}
}
