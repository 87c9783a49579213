package artifact

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	cleanhttp "github.com/hashicorp/go-cleanhttp"
	retryablehttp "github.com/hashicorp/go-retryablehttp"
)

// Cache downloads URLs into Dir, once per URL. Its zero value has no Dir
// and refuses every URL. Any number of Caches, in one process or in
// several, may share a Dir: a download goes to a temporary file renamed
// into place, and one URL is downloaded by one of them at a time (flock on
// Dir/lock/<sha256 of the URL>); the others then find it in the index.
type Cache struct {
	Dir string
	// Client is the HTTP client under go-retryablehttp; default one with
	// no proxy (go-cleanhttp's defaults).
	Client *http.Client
	// Retries is go-retryablehttp's RetryMax per request; default 4. A
	// body that breaks off is resumed with a Range request, up to 5 times
	// in a row without a byte.
	Retries int
	// Emit receives "artifact_download" (url, sha256, bytes, duration_ms)
	// after each download, "artifact_cached" (url, sha256, bytes) when a
	// URL is served from the cache, and "artifact_resume" (url, offset).
	// nil discards them.
	Emit func(typ string, fields map[string]any)
	Log  *slog.Logger // nil discards
}

const maxStalls = 5

func (c *Cache) emit(typ string, fields map[string]any) {
	if c.Emit != nil {
		c.Emit(typ, fields)
	}
}

func (c *Cache) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Fetch returns the content of the http(s) URL u from the cache,
// downloading it first if the cache does not have it. want, when not "",
// is its sha256 in hex: a cached blob of that digest is used without
// asking the network, and a download with another digest is refused (an
// infrastructure error; nothing is cached). Errors name u.
func (c *Cache) Fetch(ctx context.Context, u, want string) (*File, error) {
	shown := redacted(u)
	want, err := normSum(want)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %w", shown, err))
	}
	if !IsURL(u) {
		return nil, builtins.Job(fmt.Errorf("%s: not an http or https URL", shown))
	}
	if c.Dir == "" {
		return nil, builtins.Infra(fmt.Errorf("download %s: no cache directory configured", shown))
	}
	blobs, index, locks := filepath.Join(c.Dir, "sha256"), filepath.Join(c.Dir, "url"), filepath.Join(c.Dir, "lock")
	for _, d := range []string{blobs, index, locks} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, builtins.Infra(fmt.Errorf("download %s: %w", shown, err))
		}
	}
	uh := sha256.Sum256([]byte(u))
	key := hex.EncodeToString(uh[:])
	if f := c.cached(u, want, blobs, filepath.Join(index, key)); f != nil {
		return f, nil
	}
	unlock, err := LockFile(ctx, filepath.Join(locks, key))
	if err != nil {
		return nil, infraOrCanceled(ctx, fmt.Errorf("download %s: lock the cache: %w", shown, err))
	}
	defer unlock()
	// Another run may have downloaded it while we waited for the lock.
	if f := c.cached(u, want, blobs, filepath.Join(index, key)); f != nil {
		return f, nil
	}
	return c.download(ctx, u, want, blobs, filepath.Join(index, key))
}

// cached opens the blob the index (or want) names for u, or returns nil.
func (c *Cache) cached(u, want, blobs, indexFile string) *File {
	shown := redacted(u)
	sum := want
	if sum == "" {
		b, err := os.ReadFile(indexFile)
		if err != nil {
			return nil
		}
		if sum, err = normSum(string(b)); err != nil || sum == "" {
			return nil
		}
	}
	f, err := openBlob(filepath.Join(blobs, sum), u, sum)
	if err != nil {
		return nil
	}
	if want != "" {
		// Remember which content the URL gave, for later runs without want.
		writeFileAtomic(indexFile, []byte(sum+"\n"))
	}
	c.log().Debug("artifact cache hit", "url", shown, "sha256", sum)
	c.emit("artifact_cached", map[string]any{"url": shown, "sha256": sum, "bytes": f.Size})
	return f
}

func (c *Cache) download(ctx context.Context, u, want, blobs, indexFile string) (*File, error) {
	shown := redacted(u)
	start := time.Now()
	tmp, err := os.CreateTemp(blobs, ".download-*")
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", shown, err))
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	defer tmp.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, h), 1<<20)
	n, err := c.get(ctx, u, bw)
	if err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: store: %w", shown, err))
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return nil, builtins.Infra(fmt.Errorf("download %s: sha256 is %s, want %s", shown, sum, want))
	}
	if err := tmp.Close(); err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: store: %w", shown, err))
	}
	blob := filepath.Join(blobs, sum)
	if err := os.Rename(tmp.Name(), blob); err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: store: %w", shown, err))
	}
	if err := writeFileAtomic(indexFile, []byte(sum+"\n")); err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: index: %w", shown, err))
	}
	d := time.Since(start)
	c.log().Info("artifact downloaded", "url", shown, "bytes", n, "sha256", sum, "duration", d)
	c.emit("artifact_download", map[string]any{"url": shown, "sha256": sum, "bytes": n, "duration_ms": d.Milliseconds()})
	f, err := openBlob(blob, u, sum)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", shown, err))
	}
	return f, nil
}

func (c *Cache) client() *retryablehttp.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = c.Client
	if rc.HTTPClient == nil {
		rc.HTTPClient = cleanhttp.DefaultClient()
	}
	rc.RetryMax = 4
	if c.Retries > 0 {
		rc.RetryMax = c.Retries
	}
	rc.RetryWaitMin = 100 * time.Millisecond
	rc.RetryWaitMax = 2 * time.Second
	rc.Logger = slogLeveled{c.log()}
	return rc
}

// get GETs u into w, resuming with "Range: bytes=N-" (RFC 9110 section
// 14.2) when the body breaks off; a server that answers 200 to it is
// skipped forward. Every failure is an infrastructure error naming u.
func (c *Cache) get(ctx context.Context, u string, w io.Writer) (int64, error) {
	shown := redacted(u)
	rc := c.client()
	var have, total int64 = 0, -1
	stalls := 0
	for {
		req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return have, builtins.Job(fmt.Errorf("download %s: %w", shown, err))
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := rc.Do(req)
		if err != nil {
			return have, infraOrCanceled(ctx, fmt.Errorf("download %s: %w", shown, err))
		}
		body := resp.Body
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
			from, size, ok := ContentRange(resp.Header.Get("Content-Range"))
			if !ok || from != have {
				body.Close()
				return have, builtins.Infra(fmt.Errorf("download %s: asked for bytes from %d, got Content-Range %q", shown, have, resp.Header.Get("Content-Range")))
			}
			total = size
		case resp.StatusCode == http.StatusOK:
			total = resp.ContentLength
			if have > 0 {
				if _, err := io.CopyN(io.Discard, body, have); err != nil {
					body.Close()
					if stalls++; stalls > maxStalls {
						return have, infraOrCanceled(ctx, fmt.Errorf("download %s: %w", shown, err))
					}
					continue
				}
			}
		default:
			body.Close()
			return have, builtins.Infra(fmt.Errorf("download %s: %s", shown, resp.Status))
		}
		ew := &errWriter{w: w}
		n, err := io.Copy(ew, body)
		body.Close()
		have += n
		switch {
		case ew.err != nil:
			return have, builtins.Infra(fmt.Errorf("download %s: store: %w", shown, ew.err))
		case err == nil && (total < 0 || have == total):
			return have, nil
		case err == nil && have > total:
			return have, builtins.Infra(fmt.Errorf("download %s: got %d bytes, more than the %d announced", shown, have, total))
		case ctx.Err() != nil:
			return have, infraOrCanceled(ctx, fmt.Errorf("download %s after %d bytes: %w", shown, have, ctx.Err()))
		}
		if n == 0 {
			stalls++
		} else {
			stalls = 0
		}
		if stalls > maxStalls {
			return have, builtins.Infra(fmt.Errorf("download %s: the connection keeps dropping at byte %d: %v", shown, have, err))
		}
		c.log().Info("download interrupted; resuming", "url", shown, "have", have, "total", total, "error", err)
		c.emit("artifact_resume", map[string]any{"url": shown, "offset": have, "total": total})
		select {
		case <-ctx.Done():
			return have, infraOrCanceled(ctx, fmt.Errorf("download %s after %d bytes: %w", shown, have, ctx.Err()))
		case <-time.After(time.Duration(stalls) * 100 * time.Millisecond):
		}
	}
}

// redacted is u as messages and events show it: a password in it is
// replaced by "xxxxx" (url.URL.Redacted).
func redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Redacted()
}

// infraOrCanceled classes err: canceled when ctx was (a signal), else
// infrastructure (a deadline that ran out during a download included).
func infraOrCanceled(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return &builtins.Error{Class: builtins.ClassCanceled, Err: err}
	}
	return builtins.Infra(err)
}

// errWriter tells the store's errors from the body's.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// ContentRange parses an HTTP Content-Range value, "bytes FROM-TO/SIZE"
// (RFC 9110 §14.4; SIZE may be "*": -1). Resumed downloads use it.
func ContentRange(s string) (from, size int64, ok bool) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, sz, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	f, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	from, err := strconv.ParseInt(f, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return from, size, true
}

// LockFile takes an exclusive flock on name, polling so that ctx can stop
// the wait; the lock goes with the process if it dies. Every user of the
// cache (downloads here, git repositories in runtime/repo) locks with it.
func LockFile(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func openBlob(p, src, sum string) (*File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	return &File{File: f, Src: src, Path: p, Size: st.Size(), SHA256: sum}, nil
}

func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// slogLeveled adapts slog to go-retryablehttp's LeveledLogger; its chatty
// per-request Info lines go to Debug.
type slogLeveled struct{ l *slog.Logger }

func (s slogLeveled) Error(msg string, kv ...any) { s.l.Error(msg, kv...) }
func (s slogLeveled) Info(msg string, kv ...any)  { s.l.Debug(msg, kv...) }
func (s slogLeveled) Debug(msg string, kv ...any) { s.l.Debug(msg, kv...) }
func (s slogLeveled) Warn(msg string, kv ...any)  { s.l.Warn(msg, kv...) }
