package pxe

import (
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
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	retryablehttp "github.com/hashicorp/go-retryablehttp"
)

// artifact is one resolved job file, open for reading.
type artifact struct {
	src  string // as the job gave it (path or URL)
	path string // where it lives on disk
	f    *os.File
	size int64
	sha  string
}

// isURL reports whether src names an HTTP(S) URL rather than a job path.
func isURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// baseName is the last element of a path or URL path, used in served names.
func baseName(src string) string {
	if isURL(src) {
		if u, err := url.Parse(src); err == nil {
			src = u.Path
		}
	}
	b := path.Base(filepath.ToSlash(src))
	if b == "." || b == "/" || b == "" {
		return "file"
	}
	return b
}

// resolve opens src: a path under jobDir (confined with os.Root: no ".."
// or symlink escapes) or a URL fetched into the cache. want, when not "",
// is the expected sha256 in hex. Errors are classed: a bad path is a job
// error, a failed download an infrastructure error naming the URL.
func (s *Server) resolve(ctx context.Context, src, jobDir, want string) (*artifact, error) {
	want = strings.ToLower(strings.TrimSpace(want))
	var a *artifact
	var err error
	if isURL(src) {
		a, err = s.download(ctx, src, want)
	} else {
		a, err = openJobFile(src, jobDir)
	}
	if err != nil {
		return nil, err
	}
	if a.sha == "" {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(a.f, 0, a.size)); err != nil {
			a.f.Close()
			return nil, builtins.Infra(fmt.Errorf("hash %s: %w", src, err))
		}
		a.sha = hex.EncodeToString(h.Sum(nil))
	}
	if want != "" && a.sha != want {
		a.f.Close()
		return nil, builtins.Job(fmt.Errorf("%s: sha256 is %s, want %s", src, a.sha, want))
	}
	return a, nil
}

func openJobFile(src, jobDir string) (*artifact, error) {
	if jobDir == "" {
		return nil, builtins.Job(fmt.Errorf("%s: no job directory to resolve a relative path against", src))
	}
	rel := src
	if filepath.IsAbs(src) {
		r, err := filepath.Rel(jobDir, src)
		if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return nil, builtins.Job(fmt.Errorf("%s: outside the job directory %s", src, jobDir))
		}
		rel = r
	}
	root, err := os.OpenRoot(jobDir)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("open job directory: %w", err))
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		// os.Root reports escapes ("path escapes from parent") and missing
		// files alike as the job's mistake.
		return nil, builtins.Job(fmt.Errorf("%s: %w", src, err))
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, builtins.Job(fmt.Errorf("%s: not a regular file", src))
	}
	return &artifact{src: src, path: filepath.Join(jobDir, rel), f: f, size: st.Size()}, nil
}

// download fetches u into the cache, once: the content lives at
// CacheDir/sha256/<hex>, and CacheDir/url/<sha256 of the URL> remembers
// which content a URL gave. With want set, a cached copy is used without
// asking the network at all.
func (s *Server) download(ctx context.Context, u, want string) (*artifact, error) {
	if s.cfg.CacheDir == "" {
		return nil, builtins.Infra(fmt.Errorf("download %s: no cache directory configured", u))
	}
	blobDir := filepath.Join(s.cfg.CacheDir, "sha256")
	urlDir := filepath.Join(s.cfg.CacheDir, "url")
	for _, d := range []string{blobDir, urlDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
		}
	}
	uh := sha256.Sum256([]byte(u))
	urlKey := filepath.Join(urlDir, hex.EncodeToString(uh[:]))
	known := want
	if known == "" {
		if b, err := os.ReadFile(urlKey); err == nil {
			known = strings.TrimSpace(string(b))
		}
	}
	if isHex(known, false) && len(known) == 64 {
		if a, err := openCached(filepath.Join(blobDir, known), u, known); err == nil {
			s.log.Debug("pxe cache hit", "url", u, "sha256", known)
			return a, nil
		}
	}

	start := time.Now()
	tmp, err := os.CreateTemp(blobDir, ".download-*")
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	defer tmp.Close()

	c := retryablehttp.NewClient()
	c.RetryMax = s.cfg.DownloadRetries
	c.RetryWaitMin = 200 * time.Millisecond
	c.RetryWaitMax = 5 * time.Second
	c.Logger = slogLeveled{s.log}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("download %s: %w", u, err))
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, builtins.Infra(fmt.Errorf("download %s: %s", u, resp.Status))
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return nil, builtins.Infra(fmt.Errorf("download %s: got %d bytes, want %d", u, n, resp.ContentLength))
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return nil, builtins.Infra(fmt.Errorf("download %s: sha256 is %s, want %s", u, sum, want))
	}
	if err := tmp.Close(); err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
	}
	blob := filepath.Join(blobDir, sum)
	if err := os.Rename(tmp.Name(), blob); err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
	}
	if err := writeFileAtomic(urlKey, []byte(sum+"\n")); err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
	}
	s.log.Info("pxe downloaded", "url", u, "bytes", n, "sha256", sum, "duration", time.Since(start))
	a, err := openCached(blob, u, sum)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("download %s: %w", u, err))
	}
	return a, nil
}

func openCached(p, src, sum string) (*artifact, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	return &artifact{src: src, path: p, f: f, size: st.Size(), sha: sum}, nil
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

// slogLeveled adapts slog to retryablehttp's LeveledLogger.
type slogLeveled struct{ l *slog.Logger }

func (s slogLeveled) Error(msg string, kv ...any) { s.l.Error(msg, kv...) }
func (s slogLeveled) Info(msg string, kv ...any)  { s.l.Debug(msg, kv...) }
func (s slogLeveled) Debug(msg string, kv ...any) { s.l.Debug(msg, kv...) }
func (s slogLeveled) Warn(msg string, kv ...any)  { s.l.Warn(msg, kv...) }
