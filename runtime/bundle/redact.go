package bundle

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"html"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.starlark.net/starlark"
)

// Mask replaces a secret wherever it would be written.
const Mask = "******"

// Redactor removes secret values from text: the raw value and the forms in
// which a program escapes it when it quotes or encodes it (see Forms). Its
// zero value redacts nothing. Secrets may be added while a job runs (a
// secret typed on the console); one Redactor is shared by every output of
// a run — the bundle's files, the log, stdout and stderr — so a secret
// learned late is masked everywhere from then on.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string
	// forms[c] are the forms that begin with byte c, longest first.
	forms [256][][]byte
	// next[c] has bit d set if a form begins with c then d, or is c
	// alone: most bytes that begin a form are rejected by the next one.
	next [256][4]uint64
	// firsts are the distinct bytes forms begin with; while there are
	// few (one per secret whose first character no escaper changes), the
	// scan jumps between their occurrences with bytes.IndexByte.
	firsts []byte
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
		if s == "" || contains(r.secrets, s) {
			continue
		}
		r.secrets = append(r.secrets, s)
		for _, f := range Forms(s) {
			c := f[0]
			if len(r.forms[c]) == 0 {
				r.firsts = append(r.firsts, c)
			}
			if !containsBytes(r.forms[c], f) {
				r.forms[c] = append(r.forms[c], []byte(f))
			}
			if len(f) == 1 {
				r.next[c] = [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
			} else {
				r.next[c][f[1]>>6] |= 1 << (f[1] & 63)
			}
		}
	}
	for c := range r.forms {
		sort.SliceStable(r.forms[c], func(i, j int) bool { return len(r.forms[c][i]) > len(r.forms[c][j]) })
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsBytes(list [][]byte, s string) bool {
	for _, x := range list {
		if string(x) == s {
			return true
		}
	}
	return false
}

// escapers are the ways the programs that write basalt's outputs escape a
// string, each returning the escaped text without surrounding quotes:
// Go's %q and %+q (errors, slog's text handler), encoding/json with and
// without its HTML escaping (events.jsonl, result.json, slog's JSON
// handler), a Starlark string's repr (print, fail, Starlark error
// messages), and XML/HTML character escaping (junit.xml; encoding/xml
// escapes newlines in attributes, html.EscapeString does not; named
// entities for other writers).
var escapers = []func(string) string{
	func(s string) string { return unquote(strconv.Quote(s)) },
	func(s string) string { return unquote(strconv.QuoteToASCII(s)) },
	func(s string) string { b, _ := json.Marshal(s); return unquote(string(b)) },
	func(s string) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		return unquote(strings.TrimSuffix(buf.String(), "\n"))
	},
	func(s string) string { return unquote(starlark.String(s).String()) },
	func(s string) string { var b strings.Builder; xml.EscapeText(&b, []byte(s)); return b.String() },
	html.EscapeString,
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace,
}

const (
	maxNested = 1024
	maxJump   = 4
)

func unquote(q string) string {
	if len(q) >= 2 {
		return q[1 : len(q)-1]
	}
	return q
}

// Forms returns the distinct forms in which s is masked: s itself, each
// escaping of it, and each escaping of an escaping — an error quoting the
// console with %q ends up JSON-encoded in result.json and XML-escaped in
// junit.xml. Every escaper works one character at a time, so a form of a
// secret that a message embeds is still found inside the escaped message.
// A secret longer than maxNested bytes (no BMC password is: IPMI v2.0
// passwords are at most 20 bytes; typed text may be) gets the single
// escapings only, so that its forms stay a few times its size.
func Forms(s string) []string {
	if s == "" {
		return nil
	}
	seen := map[string]bool{s: true}
	out := []string{s}
	level := []string{s}
	depths := 2
	if len(s) > maxNested {
		depths = 1
	}
	for depth := 0; depth < depths; depth++ {
		var next []string
		for _, f := range level {
			for _, esc := range escapers {
				e := esc(f)
				if e != "" && !seen[e] {
					seen[e] = true
					out = append(out, e)
					next = append(next, e)
				}
			}
		}
		level = append(level, next...)
	}
	return out
}

// String returns s with every secret masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	out, _, _ := r.scan([]byte(s), 0, true)
	return string(out)
}

// scan masks the secrets of b. The bytes covered by any form of any secret
// are replaced, one Mask for each run of overlapping matches (the longest
// form at each position, every position tried), so a form that begins
// inside another match is masked too.
//
// b[:cover] continues a run whose Mask is already written. Unless final,
// scan stops at the first position where a form may begin but b ends
// first, and returns the rest to be scanned again with more bytes, and how
// much of the rest the current run already covers. A chunked stream is
// therefore masked exactly like the whole text, holding back at most the
// longest form.
func (r *Redactor) scan(b []byte, cover int, final bool) (out, rest []byte, restCover int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return b[min(cover, len(b)):], nil, 0
	}
	// out stays nil, and b is returned as it is, until a form is found.
	lit := cover         // b[lit:] is not written yet
	end := cover         // the current run covers b[:end]
	var pos [maxJump]int // of the next firsts[k] at or after i, if >= i
	jump := len(r.firsts) <= maxJump
	for k := range pos {
		pos[k] = -1
	}
	for i := 0; i < len(b); i++ {
		if jump {
			m := len(b)
			for k, c := range r.firsts {
				if pos[k] < i {
					if j := bytes.IndexByte(b[i:], c); j < 0 {
						pos[k] = len(b)
					} else {
						pos[k] = i + j
					}
				}
				m = min(m, pos[k])
			}
			if m == len(b) {
				break
			}
			i = m
		}
		c := b[i]
		cands := r.forms[c]
		if len(cands) == 0 {
			continue
		}
		if i+1 < len(b) && r.next[c][b[i+1]>>6]&(1<<(b[i+1]&63)) == 0 {
			continue
		}
		n, open := longest(cands, b[i:], final)
		if open {
			if end > i {
				return out, b[i:], end - i
			}
			return appendLit(out, b[lit:i]), b[i:], 0
		}
		if n == 0 {
			continue
		}
		if i < end {
			end = max(end, i+n)
		} else {
			if out == nil {
				out = make([]byte, 0, len(b))
			}
			out = append(out, b[lit:i]...)
			out = append(out, Mask...)
			end = i + n
		}
		lit = end
	}
	return appendLit(out, b[lit:]), nil, 0
}

// appendLit appends p to out, or returns p itself while out is nil.
func appendLit(out, p []byte) []byte {
	if out == nil {
		return p
	}
	return append(out, p...)
}

// longest returns the length of the longest of forms (longest first) that
// p begins with, or open if p may begin a longer one that p is too short
// to show (unless final).
func longest(forms [][]byte, p []byte, final bool) (n int, open bool) {
	for _, f := range forms {
		if len(p) >= len(f) {
			if bytes.Equal(p[:len(f)], f) {
				return len(f), false
			}
		} else if !final && bytes.HasPrefix(f, p) {
			return 0, true
		}
	}
	return 0, false
}

// StreamWriter redacts a byte stream in which a secret may be split across
// writes: it holds back bytes that may begin a secret until more arrive or
// Flush is called.
type StreamWriter struct {
	mu    sync.Mutex
	r     *Redactor
	w     io.Writer
	hold  []byte
	cover int // of hold, already masked
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
	out, rest, cover := s.r.scan(buf, s.cover, false)
	s.hold = append([]byte(nil), rest...)
	s.cover = cover
	if len(out) > 0 {
		if _, err := s.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes the held-back bytes.
func (s *StreamWriter) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hold) == 0 {
		return nil
	}
	b, _, _ := s.r.scan(s.hold, s.cover, true)
	s.hold, s.cover = nil, 0
	if len(b) == 0 {
		return nil
	}
	_, err := s.w.Write(b)
	return err
}

// Unwrap returns the writer s writes to (a terminal check looks through it).
func (s *StreamWriter) Unwrap() io.Writer { return s.w }
