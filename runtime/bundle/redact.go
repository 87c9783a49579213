package bundle

import (
	"bytes"
	"io"
	"sort"
	"sync"
)

// Mask replaces a secret wherever it would be written.
const Mask = "******"

// Redactor removes secret values from text. Its zero value redacts nothing.
// Secrets may be added while a job runs (a secret typed on the console).
type Redactor struct {
	mu      sync.RWMutex
	secrets []string // longest first, so a secret containing another is masked whole
}

// NewRedactor returns a redactor for the given secret values; empty values
// are ignored.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secret values.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if s != "" && !contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// String returns s with every secret masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	out, _ := r.scan([]byte(s), true)
	return string(out)
}

// scan masks the secrets of b. Unless final, it stops at the first position
// where a secret may begin but b ends first, and returns the rest to be
// scanned again with more bytes. Secrets are matched longest first at each
// position, left to right, so a chunked stream is masked exactly like the
// whole text.
func (r *Redactor) scan(b []byte, final bool) (out, rest []byte) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return b, nil
	}
	var first [256]bool
	for _, sec := range r.secrets {
		first[sec[0]] = true
	}
	out = make([]byte, 0, len(b))
	i := 0
next:
	for i < len(b) {
		if !first[b[i]] {
			j := i + 1
			for j < len(b) && !first[b[j]] {
				j++
			}
			out = append(out, b[i:j]...)
			i = j
			continue
		}
		for _, sec := range r.secrets { // longest first
			if bytes.HasPrefix(b[i:], []byte(sec)) {
				out = append(out, Mask...)
				i += len(sec)
				continue next
			}
		}
		if !final {
			for _, sec := range r.secrets {
				if len(b)-i < len(sec) && bytes.HasPrefix([]byte(sec), b[i:]) {
					return out, b[i:]
				}
			}
		}
		out = append(out, b[i])
		i++
	}
	return out, nil
}

// StreamWriter redacts a byte stream in which a secret may be split across
// writes: it holds back bytes that may begin a secret until more arrive or
// Flush is called.
type StreamWriter struct {
	mu   sync.Mutex
	r    *Redactor
	w    io.Writer
	hold []byte
}

// NewStreamWriter returns a writer that redacts r's secrets before writing to w.
func NewStreamWriter(r *Redactor, w io.Writer) *StreamWriter {
	return &StreamWriter{r: r, w: w}
}

// Write redacts and forwards p. It always reports len(p) written unless the
// underlying writer fails.
func (s *StreamWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := p
	if len(s.hold) > 0 {
		buf = append(s.hold, p...)
	}
	out, rest := s.r.scan(buf, false)
	if len(out) > 0 {
		if _, err := s.w.Write(out); err != nil {
			return 0, err
		}
	}
	s.hold = append([]byte(nil), rest...)
	return len(p), nil
}

// Flush writes the held-back bytes.
func (s *StreamWriter) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hold) == 0 {
		return nil
	}
	b, _ := s.r.scan(s.hold, true)
	s.hold = nil
	_, err := s.w.Write(b)
	return err
}
