package target

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
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

// Fetch copies the target file at path (absolute) to w over HTTP, served
// by an httpd of its own so that nothing the master image already runs (an
// httpd on port 80 with another document root) can answer in its place:
//
//  1. On the target, it copies the file into a directory of this fetch
//     (/tmp/basalt-fetch-TOKEN-N), beside a nonce file. The copy is what is
//     served and checksummed: procfs and sysfs files stat to size 0, which
//     busybox httpd would send as Content-Length, and a file that changes
//     while it is read would never match a digest taken apart.
//  2. It starts `busybox httpd -f -p PORT -h DIR` in the background on a
//     port it picked; busybox httpd exits at once ("bind: Address already
//     in use") when the port is taken, and then another port is tried.
//  3. It GETs the nonce file: only the httpd it started can answer it.
//  4. It downloads the copy with go-retryablehttp, resumes with a Range
//     request after a dropped connection, and checks the sha256 of what it
//     wrote against want (hex), or else against the digest sha256sum gives
//     on the target for the copy.
//  5. Whatever happened, it kills that httpd and removes the directory.
//
// A mismatch is a *ChecksumError (class device); w should discard what it
// got then. A missing path, a directory or a file that cannot be read is a
// device error naming the path.
func (t *Target) Fetch(ctx context.Context, p, want string, w io.Writer) (Fetched, error) {
	if !path.IsAbs(p) || path.Clean(p) == "/" {
		return Fetched{}, builtins.Job(fmt.Errorf("%q: want the absolute path of a file on the target", p))
	}
	p = path.Clean(p)
	want = strings.ToLower(strings.TrimSpace(want))
	if want != "" && !isSHA256(want) {
		return Fetched{}, builtins.Job(fmt.Errorf("sha256 %q: want 64 hex digits", want))
	}
	// The console is needed before and after the download: hold it
	// throughout, so no other command runs between.
	t.mu.Lock()
	defer t.mu.Unlock()
	ip, err := t.addr(ctx)
	if err != nil {
		return Fetched{}, err
	}
	snap, err := t.snapshot(ctx, p)
	if snap.dir != "" {
		defer t.unserve(ctx, &snap)
	}
	if err != nil {
		return Fetched{}, err
	}
	if want == "" {
		want = snap.sha256
	}
	u, err := t.serve(ctx, ip, &snap)
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
	t.emit("target_fetch", map[string]any{"path": p, "bytes": n, "sha256": got, "resumes": resumes, "port": snap.port, "duration_ms": time.Since(start).Milliseconds()})
	if got != want {
		return Fetched{}, builtins.Device(&ChecksumError{What: "fetched " + p, Got: got, Want: want})
	}
	return Fetched{Path: p, SHA256: got, Size: n, Resumes: resumes}, nil
}

// fetchSnap is a fetch's directory on the target and the httpd serving it.
type fetchSnap struct {
	path   string // the target file
	dir    string // the fetch's directory on the target; "" before it exists
	nonce  string // content of dir/nonce
	sha256 string // of dir/data, as sha256sum computed it on the target
	port   int    // where its httpd listens, 0 while none runs
	pid    string // its httpd's $!
}

// fetchTag starts the lines fetch's scripts print for it to parse.
const fetchTag = "basalt-fetch:"

// snapshot copies p into a fresh directory on the target, writes the nonce
// beside it and computes the copy's sha256. t.mu is held.
func (t *Target) snapshot(ctx context.Context, p string) (fetchSnap, error) {
	t.seq++
	s := fetchSnap{path: p, dir: fmt.Sprintf("/tmp/basalt-fetch-%s-%d", t.token, t.seq), nonce: t.randomHex(16)}
	q, d := shellQuote(p), shellQuote(s.dir)
	// One line: test what p is, copy it with cat (which reads to EOF,
	// whatever stat says), and sum the copy.
	script := "if [ ! -e " + q + " ]; then echo " + fetchTag + " missing; " +
		"elif [ -d " + q + " ]; then echo " + fetchTag + " directory; " +
		"elif ! mkdir -p " + d + "; then echo " + fetchTag + " mkdir; " +
		"elif ! cat " + q + " > " + d + "/data; then echo " + fetchTag + " unreadable; " +
		"else echo " + s.nonce + " > " + d + "/nonce && sha256sum " + d + "/data && echo " + fetchTag + " ok; fi"
	res, err := t.run(ctx, script, false)
	if err != nil {
		return s, err
	}
	what, rest := tagged(res.Output)
	switch what {
	case "ok":
	case "missing":
		return fetchSnap{}, builtins.Device(fmt.Errorf("%s: no such file on the target", p))
	case "directory":
		return fetchSnap{}, builtins.Device(fmt.Errorf("%s: is a directory on the target, want a file", p))
	case "unreadable":
		return s, builtins.Device(fmt.Errorf("%s: cannot be read on the target: %s", p, tail(rest, 300)))
	case "mkdir":
		return fetchSnap{}, builtins.Device(fmt.Errorf("create %s on the target: %s", s.dir, tail(rest, 300)))
	default:
		return s, builtins.Device(fmt.Errorf("copy %s on the target: status %d: %s", p, res.ExitCode, tail(res.Output, 300)))
	}
	for _, line := range strings.Split(rest, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == s.dir+"/data" && isSHA256(f[0]) {
			s.sha256 = strings.ToLower(f[0])
		}
	}
	if s.sha256 == "" {
		return s, builtins.Device(fmt.Errorf("sha256sum of the copy of %s printed %q, want a digest", p, tail(rest, 200)))
	}
	return s, nil
}

// tagged returns the word after the last fetchTag line of out and the
// other lines.
func tagged(out string) (what, rest string) {
	var other []string
	for _, line := range strings.Split(out, "\n") {
		if w, ok := strings.CutPrefix(strings.TrimSpace(line), fetchTag); ok {
			what = strings.TrimSpace(w)
			continue
		}
		other = append(other, line)
	}
	return what, strings.TrimSpace(strings.Join(other, "\n"))
}

// portTries is how many ports serve tries before it gives up.
const portTries = 5

// pickPort returns a port to try for the fetch's httpd: above the
// registered services most master images run, below Linux's default
// ephemeral range (32768-60999), where the target's own connections take
// their ports.
var pickPort = func(r *mrand.Rand) int { return 20000 + r.IntN(12768) }

// serve starts the fetch's httpd on the target and returns the URL of the
// copy once the httpd has answered the nonce. t.mu is held.
func (t *Target) serve(ctx context.Context, ip string, s *fetchSnap) (string, error) {
	d := shellQuote(s.dir)
	var last error
	for try := 0; try < portTries; try++ {
		port := pickPort(t.rng)
		// -f keeps httpd in the foreground of a background job, so $! is
		// its pid; a taken port makes it exit at once.
		script := "busybox httpd -f -p " + strconv.Itoa(port) + " -h " + d + " > " + d + "/httpd.log 2>&1 & basalt_httpd=$!; " +
			"sleep 0.2 2>/dev/null || sleep 1; " +
			"if kill -0 $basalt_httpd 2>/dev/null; then echo " + fetchTag + " pid $basalt_httpd; " +
			"else wait $basalt_httpd; echo " + fetchTag + " exited $?; cat " + d + "/httpd.log; fi"
		res, err := t.run(ctx, script, false)
		if err != nil {
			return "", err
		}
		what, rest := tagged(res.Output)
		hostPort := net.JoinHostPort(ip, strconv.Itoa(port))
		switch f := strings.Fields(what); {
		case len(f) == 2 && f[0] == "pid":
			s.port, s.pid = port, f[1]
		case len(f) == 2 && f[0] == "exited" && strings.Contains(strings.ToLower(rest), "in use"):
			t.log.Info("port taken on the target; trying another", "port", port)
			last = fmt.Errorf("port %d is taken on the target", port)
			continue
		default:
			return "", builtins.Device(fmt.Errorf("start httpd on the target: %s %s", what, tail(rest, 300)))
		}
		err = t.own(ctx, "http://"+hostPort+"/nonce", s.nonce)
		if err == nil {
			return "http://" + hostPort + "/data", nil
		}
		if ctx.Err() != nil {
			return "", ctxErr(ctx, fmt.Errorf("wait for httpd on %s", hostPort))
		}
		// Someone else answers on that port (on another address family,
		// say), or ours does not: stop ours and try another port.
		last = err
		t.log.Info("httpd on the target is not ours; trying another port", "port", port, "error", err)
		t.stopHTTPD(ctx, s)
	}
	return "", builtins.Device(fmt.Errorf("serve %s from the target: no port of %d tried worked; last: %w", s.path, portTries, last))
}

// own polls u until it answers with nonce (nil), with something else (an
// error saying what), or a few seconds have passed.
func (t *Target) own(ctx context.Context, u, nonce string) error {
	c := t.cfg.HTTPClient
	if c == nil {
		c = cleanhttp.DefaultClient()
	}
	deadline := time.Now().Add(5 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
		resp, err := c.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			cancel()
			switch {
			case rerr != nil:
				last = fmt.Errorf("GET %s: %w", u, rerr)
			case resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == nonce:
				return nil
			default:
				return fmt.Errorf("GET %s: %s with %q, not this fetch's nonce", u, resp.Status, tail(string(b), 60))
			}
		} else {
			cancel()
			last = fmt.Errorf("GET %s: %w", u, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return last
}

// stopHTTPD kills the fetch's httpd, if one runs. t.mu is held.
func (t *Target) stopHTTPD(ctx context.Context, s *fetchSnap) {
	if s.pid == "" {
		return
	}
	pid := shellQuote(s.pid)
	if _, err := t.run(ctx, "kill "+pid+" 2>/dev/null; wait "+pid+" 2>/dev/null", false); err != nil {
		t.log.Warn("could not stop httpd on the target", "pid", s.pid, "error", err)
		return
	}
	s.pid, s.port = "", 0
}

// unserve stops the fetch's httpd and removes its directory; it runs when
// ctx has ended too, with a few seconds of its own. t.mu is held.
func (t *Target) unserve(ctx context.Context, s *fetchSnap) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	t.stopHTTPD(cctx, s)
	if _, err := t.run(cctx, "rm -rf "+shellQuote(s.dir), false); err != nil {
		t.log.Warn("could not remove the fetch's directory on the target", "dir", s.dir, "error", err)
	}
}

// randomHex draws n bytes from the target's generator, seeded from its
// token: a fetch's nonce is unique per target and fetch, and a replay with
// the recorded token types the same one. t.mu is held.
func (t *Target) randomHex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(t.rng.Uint32())
	}
	return hex.EncodeToString(b)
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
			from, size, ok := artifact.ContentRange(resp.Header.Get("Content-Range"))
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
