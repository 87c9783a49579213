package pxe

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PublishPrefix is the HTTP directory of files published with Publish.
const PublishPrefix = "files/"

// Publish serves the dispatcher file at path over HTTP under
// PublishPrefix+name and returns its URL. The file is opened per request
// and sent with http.ServeContent, so Range requests work and large files
// go out with sendfile. Publishing a name again replaces it.
func (s *Server) Publish(name, path string) (string, error) {
	n, err := ValidName(name)
	if err != nil {
		return "", fmt.Errorf("pxe: publish: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("pxe: publish %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("pxe: publish %s: %s is not a regular file", name, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("pxe: publish %s: %w", name, err)
	}
	s.mu.Lock()
	s.published[n] = abs
	s.mu.Unlock()
	u := s.HTTPURL() + "/" + PublishPrefix + n
	// What the target was given to download (basalt replay answers with it).
	s.emit("publish", map[string]any{"name": n, "url": u})
	return u, nil
}

// Unpublish stops serving a name given to Publish.
func (s *Server) Unpublish(name string) {
	s.mu.Lock()
	delete(s.published, name)
	s.mu.Unlock()
}

// countingWriter counts body bytes and keeps http.ResponseWriter's
// io.ReaderFrom (sendfile) reachable.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
	// progress, when set, is called after each progressChunk bytes of a
	// large body (deploys of disk images), with the bytes sent so far.
	progress func(sent int64)
}

// progressChunk is how often a large transfer reports progress.
const progressChunk = 16 << 20

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	rf := w.ResponseWriter.(io.ReaderFrom)
	lr, ok := r.(*io.LimitedReader)
	if w.progress == nil || !ok || lr.N <= progressChunk {
		n, err := rf.ReadFrom(r)
		w.n += n
		return n, err
	}
	// Send in chunks, each still a LimitedReader over the file itself so
	// that the kernel's sendfile keeps doing the copying.
	var total int64
	for lr.N > 0 {
		chunk := &io.LimitedReader{R: lr.R, N: min(lr.N, progressChunk)}
		n, err := rf.ReadFrom(chunk)
		lr.N -= n
		total += n
		w.n += n
		if err != nil || n == 0 {
			return total, err
		}
		w.progress(w.n)
	}
	return total, nil
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w}
	raw := strings.TrimPrefix(r.URL.Path, "/")
	var size int64
	kind := ""
	defer func() {
		f := map[string]any{
			"client": r.RemoteAddr, "method": r.Method, "file": clip(raw),
			"status": cw.status, "bytes": cw.n, "duration_ms": time.Since(start).Milliseconds(),
		}
		if rg := r.Header.Get("Range"); rg != "" {
			f["range"] = clip(rg)
		}
		if kind != "" {
			f["kind"] = kind
		}
		if size > 0 {
			f["size"] = size
		}
		s.emit("http", f)
		fetched := ""
		if kind == "published_data" && r.Method == http.MethodGet && cw.status == http.StatusOK && cw.n == size {
			fetched = strings.TrimPrefix(raw, PublishPrefix)
		}
		s.record(Request{Proto: "http", File: clip(raw), Client: r.RemoteAddr, Status: cw.status}, fetched)
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(cw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, err := ValidName(raw)
	if err != nil {
		s.refused("http", r.RemoteAddr, raw, err)
		http.Error(cw, "forbidden", http.StatusForbidden)
		return
	}
	if pub, ok := strings.CutPrefix(name, PublishPrefix); ok {
		if data, ok := s.publishedData(pub); ok {
			kind, size = "published_data", int64(len(data))
			http.ServeContent(cw, r, filepath.Base(pub), time.Time{}, strings.NewReader(string(data)))
			return
		}
		kind = "published"
		s.mu.Lock()
		p, ok := s.published[pub]
		s.mu.Unlock()
		if !ok {
			http.NotFound(cw, r)
			return
		}
		f, err := os.Open(p)
		if err != nil {
			s.log.Warn("pxe published file unreadable", "file", pub, "err", err)
			http.NotFound(cw, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(cw, "stat failed", http.StatusInternalServerError)
			return
		}
		size = st.Size()
		cw.progress = func(sent int64) {
			s.emit("http_progress", map[string]any{"client": r.RemoteAddr, "file": clip(raw), "bytes": sent, "size": size,
				"duration_ms": time.Since(start).Milliseconds()})
		}
		http.ServeContent(cw, r, filepath.Base(pub), st.ModTime(), f)
		return
	}
	rs, sz, closer, role, err := s.open(name)
	kind = role
	if errors.Is(err, errNotFound) {
		http.NotFound(cw, r)
		return
	}
	if closer != nil {
		defer closer.Close()
	}
	size = sz
	http.ServeContent(cw, r, filepath.Base(name), time.Time{}, rs)
	if r.Method == http.MethodGet && cw.n == sz &&
		(cw.status == http.StatusOK || (cw.status == http.StatusPartialContent && r.Header.Get("Range") == "bytes=0-")) {
		s.markFetched(name)
	}
}
