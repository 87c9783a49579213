package target

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	cleanhttp "github.com/hashicorp/go-cleanhttp"
	retryablehttp "github.com/hashicorp/go-retryablehttp"
)

// Fetched is a file fetched from the target.
type Fetched struct {
	Path    string // the target path
	SHA256  string // hex
	Size    int64
	Resumes int // connections that dropped and were resumed with Range
}

// ChecksumError is a file whose bytes do not have the sha256 they must
// have: a fetched file, a pushed file or a disk read back after a deploy.
type ChecksumError struct {
	What      string
	Got, Want string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: sha256 is %s, want %s", e.What, e.Got, e.Want)
}

// maxStalls is how many resumes in a row may bring no byte before a
// download gives up.
const maxStalls = 5

// Fetch copies the target file at path (absolute) to w over HTTP: it
// starts `busybox httpd -p PORT -h /` on the target unless something already
// answers on the port, downloads http://IP:PORT/path with go-retryablehttp,
// resumes with a Range request after a dropped connection, and checks the
// sha256 of what it wrote against want (hex), which is computed on the
// target with sha256sum when "". A mismatch is a *ChecksumError (class
// device); w should discard what it got then.
func (t *Target) Fetch(ctx context.Context, p, want string, w io.Writer) (Fetched, error) {
	if !path.IsAbs(p) || path.Clean(p) == "/" {
		return Fetched{}, builtins.Job(fmt.Errorf("%q: want the absolute path of a file on the target", p))
	}
	p = path.Clean(p)
	want = strings.ToLower(strings.TrimSpace(want))
	if want != "" && !isSHA256(want) {
		return Fetched{}, builtins.Job(fmt.Errorf("sha256 %q: want 64 hex digits", want))
	}
	t.mu.Lock()
	u, err := t.prepareFetch(ctx, p, &want)
	t.mu.Unlock()
	if err != nil {
		return Fetched{}, err
	}
	start := time.Now()
	h := sha256.New()
	n, resumes, err := t.download(ctx, u, io.MultiWriter(w, h))
	if err != nil {
		return Fetched{}, err
	}
	got := hex.EncodeToString(h.Sum(nil))
	t.emit("target_fetch", map[string]any{"path": p, "bytes": n, "sha256": got, "resumes": resumes, "duration_ms": time.Since(start).Milliseconds()})
	if got != want {
		return Fetched{}, builtins.Device(&ChecksumError{What: "fetched " + p, Got: got, Want: want})
	}
	return Fetched{Path: p, SHA256: got, Size: n, Resumes: resumes}, nil
}

// prepareFetch computes the file's sha256 on the target when *want is
// empty, makes sure httpd serves it, and returns its URL. t.mu is held.
func (t *Target) prepareFetch(ctx context.Context, p string, want *string) (string, error) {
	if *want == "" {
		res, err := t.run(ctx, "sha256sum "+shellQuote(p), true)
		if err != nil {
			return "", err
		}
		f := strings.Fields(res.Output)
		if len(f) == 0 || !isSHA256(f[0]) {
			return "", builtins.Device(fmt.Errorf("sha256sum %s printed %q, want a digest", p, tail(res.Output, 200)))
		}
		*want = strings.ToLower(f[0])
	}
	ip, err := t.addr(ctx)
	if err != nil {
		return "", err
	}
	hostPort := net.JoinHostPort(ip, strconv.Itoa(t.httpPort()))
	if err := t.ensureHTTPD(ctx, hostPort); err != nil {
		return "", err
	}
	return "http://" + hostPort + (&url.URL{Path: p}).EscapedPath(), nil
}

// ensureHTTPD starts busybox httpd on the target unless hostPort already
// accepts connections. t.mu is held.
func (t *Target) ensureHTTPD(ctx context.Context, hostPort string) error {
	if t.listening(ctx, hostPort) {
		return nil
	}
	port := strconv.Itoa(t.httpPort())
	res, err := t.run(ctx, "busybox httpd -p "+port+" -h /", false)
	if err != nil {
		return err
	}
	// "Address already in use": one is running, perhaps not reachable yet.
	if res.ExitCode != 0 && !strings.Contains(strings.ToLower(res.Output), "in use") {
		return builtins.Device(fmt.Errorf("start httpd on the target: status %d: %s", res.ExitCode, tail(res.Output, 300)))
	}
	// busybox httpd binds before it daemonizes; allow a slow target a moment.
	for i := 0; i < 20; i++ {
		if t.listening(ctx, hostPort) {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return builtins.Device(fmt.Errorf("httpd started on the target but %s does not accept connections", hostPort))
}

// listening reports whether hostPort accepts TCP connections.
func (t *Target) listening(ctx context.Context, hostPort string) bool {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", hostPort)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (t *Target) client() *retryablehttp.Client {
	c := retryablehttp.NewClient()
	if t.cfg.HTTPClient != nil {
		c.HTTPClient = t.cfg.HTTPClient
	} else {
		c.HTTPClient = cleanhttp.DefaultClient()
	}
	c.RetryMax = 4
	if t.cfg.HTTPRetries > 0 {
		c.RetryMax = t.cfg.HTTPRetries
	}
	c.RetryWaitMin = 100 * time.Millisecond
	c.RetryWaitMax = 2 * time.Second
	c.Logger = slogLeveled{t.log}
	return c
}

// download GETs u into w, resuming with "Range: bytes=N-" when the body
// breaks off. It returns the bytes written and how many resumes it took.
// Failures are infrastructure errors, but for HTTP statuses, which come
// from the target's httpd (class device).
func (t *Target) download(ctx context.Context, u string, w io.Writer) (int64, int, error) {
	c := t.client()
	var have, total int64 = 0, -1
	resumes, stalls := 0, 0
	for {
		req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return have, resumes, builtins.Job(fmt.Errorf("GET %s: %w", u, err))
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return have, resumes, ctxErr(ctx, fmt.Errorf("GET %s", u))
			}
			return have, resumes, builtins.Infra(fmt.Errorf("GET %s: %w", u, err))
		}
		body := resp.Body
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
			from, size, ok := contentRange(resp.Header.Get("Content-Range"))
			if !ok || from != have {
				body.Close()
				return have, resumes, builtins.Infra(fmt.Errorf("GET %s: asked for bytes from %d, got Content-Range %q", u, have, resp.Header.Get("Content-Range")))
			}
			if size >= 0 {
				total = size
			}
		case resp.StatusCode == http.StatusOK:
			if resp.ContentLength >= 0 {
				total = resp.ContentLength
			}
			if have > 0 {
				// No Range support: skip what we have.
				if _, err := io.CopyN(io.Discard, body, have); err != nil {
					body.Close()
					stalls++
					if stalls > maxStalls {
						return have, resumes, builtins.Infra(fmt.Errorf("GET %s: %w", u, err))
					}
					continue
				}
			}
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0 && have == total:
			body.Close()
			return have, resumes, nil
		default:
			body.Close()
			return have, resumes, builtins.Device(fmt.Errorf("GET %s: %s", u, resp.Status))
		}
		n, err := io.Copy(errWriter{w}, ctxReader{ctx, body})
		body.Close()
		have += n
		var werr *writeError
		switch {
		case errors.As(err, &werr):
			return have, resumes, builtins.Infra(fmt.Errorf("store %s: %w", u, werr.err))
		case err == nil && (total < 0 || have == total):
			return have, resumes, nil
		case err == nil && have > total:
			return have, resumes, builtins.Infra(fmt.Errorf("GET %s: got %d bytes, more than the %d announced", u, have, total))
		case ctx.Err() != nil:
			return have, resumes, ctxErr(ctx, fmt.Errorf("GET %s after %d bytes", u, have))
		}
		if n == 0 {
			stalls++
		} else {
			stalls = 0
		}
		if stalls > maxStalls {
			return have, resumes, builtins.Infra(fmt.Errorf("GET %s: connection keeps dropping at byte %d: %v", u, have, err))
		}
		resumes++
		t.log.Info("download interrupted; resuming", "url", u, "have", have, "total", total, "error", err)
		t.emit("target_resume", map[string]any{"url": u, "offset": have, "total": total})
		if err := sleep(ctx, time.Duration(stalls)*100*time.Millisecond); err != nil {
			return have, resumes, err
		}
	}
}

// contentRange parses "bytes FROM-TO/SIZE" (SIZE may be "*": -1).
func contentRange(s string) (from, size int64, ok bool) {
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

// ctxReader stops a copy when ctx ends; it lets a body read be told
// apart from a write error.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// writeError marks an error of the destination of a copy.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// errWriter wraps the errors of w in *writeError.
type errWriter struct{ w io.Writer }

func (e errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// ctxErr classes the end of ctx: a transfer that ran out of time is an
// infrastructure error; a cancellation stays a cancellation.
func ctxErr(ctx context.Context, what error) error {
	err := fmt.Errorf("%w: %w", what, ctx.Err())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return builtins.Infra(err)
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// slogLeveled adapts slog to go-retryablehttp's LeveledLogger; its chatty
// per-request Info goes to Debug.
type slogLeveled struct{ l *slog.Logger }

func (s slogLeveled) Error(msg string, kv ...any) { s.l.Error(msg, kv...) }
func (s slogLeveled) Info(msg string, kv ...any)  { s.l.Debug(msg, kv...) }
func (s slogLeveled) Debug(msg string, kv ...any) { s.l.Debug(msg, kv...) }
func (s slogLeveled) Warn(msg string, kv ...any)  { s.l.Warn(msg, kv...) }
