// Package expect is a streaming multi-pattern matcher for serial consoles.
//
// A [Matcher] holds the unconsumed part of a byte stream, at most a window
// of it (default 1 MiB), whatever the length of the stream. A [Search]
// looks for a list of patterns ([Literal] strings or [Regexp]s) in it and
// is advanced each time bytes arrive; a match consumes the stream up to its
// end, and what follows stays for the next search.
//
// Which match wins is defined as if the stream arrived one byte at a time:
// the match that is complete first, i.e. the pattern that matches in the
// shortest prefix of the unconsumed input (ties go to the earlier pattern
// in the list), and within that prefix its leftmost match. So the result
// does not depend on how the stream was cut into chunks, and a greedy
// regexp such as `ab+` matches "ab" even if "abbb" arrives at once.
//
// Each arriving chunk is scanned from a bounded look-back only: len-1 bytes
// for a literal, the maximum match length for a bounded regexp, and the
// start of the current line for a regexp that cannot match a newline. Only
// an unbounded regexp that can match a newline (`(?s).*`, `\s+`, `[^x]*`)
// is rescanned from the start of the unconsumed input, which the window
// caps. Bytes that fall out of the window before a search scans them are
// not matched.
package expect

import (
	"bytes"
)

// DefaultWindow is the window of a Matcher made with window <= 0.
const DefaultWindow = 1 << 20

// Match is a successful search.
type Match struct {
	Index  int      // index of the pattern that matched
	Text   string   // the matched text
	Groups []string // submatches of a regexp; "" for a group that took no part
	// Before is the text between the end of the previous match (or the
	// start of the stream) and the start of this one, less the first
	// Dropped bytes, which fell out of the window.
	Before  string
	Dropped int64
	// Offset is the stream offset of the first byte of Text.
	Offset int64
}

// Matcher buffers the unconsumed input of a stream. It is not safe for
// concurrent use; at most one Search should be in use at a time.
type Matcher struct {
	window  int
	buf     []byte // buf[start:] is the unconsumed input
	start   int
	off     int64 // stream offset of buf[start]
	dropped int64 // unconsumed bytes dropped since the last match
}

// New returns a matcher keeping at most window unconsumed bytes
// (DefaultWindow if window <= 0).
func New(window int) *Matcher {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Matcher{window: window}
}

// Window returns the matcher's window in bytes.
func (m *Matcher) Window() int { return m.window }

// Write appends p to the stream. When the unconsumed input exceeds the
// window, its oldest bytes are dropped. It never fails.
func (m *Matcher) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > m.window {
		skip := len(p) - m.window
		m.drop(len(m.buf) - m.start)
		m.off += int64(skip)
		m.dropped += int64(skip)
		p = p[skip:]
	}
	if over := len(m.buf) - m.start + len(p) - m.window; over > 0 {
		m.drop(over)
	}
	if len(m.buf)+len(p) > cap(m.buf) {
		u := m.buf[m.start:]
		need := len(u) + len(p)
		if need > cap(m.buf)/2 || cap(m.buf) == 0 {
			c := min(max(2*cap(m.buf), 4096, 2*need), 2*m.window)
			nb := make([]byte, len(u), max(c, need))
			copy(nb, u)
			m.buf = nb
		} else {
			m.buf = m.buf[:copy(m.buf, u)]
		}
		m.start = 0
	}
	m.buf = append(m.buf, p...)
	return n, nil
}

func (m *Matcher) drop(n int) {
	m.start += n
	m.off += int64(n)
	m.dropped += int64(n)
}

// End returns the stream offset just after the last byte written.
func (m *Matcher) End() int64 { return m.off + int64(len(m.buf)-m.start) }

// Discard consumes all the unconsumed input, as a match ending at the last
// byte written would, and returns how many bytes it consumed. A search in
// progress goes on with the input written after it.
func (m *Matcher) Discard() int {
	n := len(m.buf) - m.start
	m.off += int64(n)
	m.buf, m.start = m.buf[:0], 0
	m.dropped = 0
	return n
}

// Buffered returns the number of unconsumed bytes held.
func (m *Matcher) Buffered() int { return len(m.buf) - m.start }

// Since returns the unconsumed bytes from stream offset off on (all of
// them if off is older). The slice is valid until the next Write.
func (m *Matcher) Since(off int64) []byte { return m.slice(max(off, m.off), m.End()) }

// slice returns the bytes between stream offsets from and to, both within
// the unconsumed input.
func (m *Matcher) slice(from, to int64) []byte {
	i := m.start + int(from-m.off)
	return m.buf[i : i+int(to-from)]
}

// Search starts looking for patterns in the unconsumed input. It fails if
// patterns is empty or holds a zero Pattern.
func (m *Matcher) Search(patterns ...Pattern) (*Search, error) {
	if len(patterns) == 0 {
		return nil, errNoPatterns
	}
	for _, p := range patterns {
		if !p.valid() {
			return nil, errInvalidPattern
		}
	}
	return &Search{m: m, pats: patterns, scanned: m.off, lineStart: m.off}, nil
}

// Search is one expect in progress over a Matcher.
type Search struct {
	m    *Matcher
	pats []Pattern
	// No pattern matches within the stream between the matcher's
	// consumed offset and scanned.
	scanned int64
	// lineStart follows the last newline before scanned (or is the
	// consumed offset).
	lineStart int64
	done      bool
}

// Patterns returns the patterns searched for.
func (s *Search) Patterns() []Pattern { return s.pats }

// Next scans the input that arrived since the last call. On a match it
// consumes the input up to the match's end and returns it; the search is
// then over and Next returns false from then on.
func (s *Search) Next() (Match, bool) {
	m := s.m
	cs, end := m.off, m.End()
	if s.done || end <= max(s.scanned, cs) {
		return Match{}, false
	}
	s.scanned = max(s.scanned, cs)
	s.lineStart = max(s.lineStart, cs)

	best, bestEnd, bestLB := -1, int64(0), int64(0)
	for i, p := range s.pats {
		lb := s.lowerBound(p)
		limit := end
		if best >= 0 {
			// Only an earlier end can beat the best so far.
			limit = bestEnd - 1
			if limit <= s.scanned {
				break
			}
		}
		loc := p.find(m.slice(lb, limit))
		if loc == nil {
			continue
		}
		// The leftmost match need not end first ("abcd|c" in "abcd");
		// find the shortest prefix in which p matches.
		lo, hi := s.scanned, lb+int64(loc[1])
		if hi <= lo {
			lo = hi - 1 // only possible with end-of-text assertions
		}
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			if p.contains(m.slice(lb, mid)) {
				hi = mid
			} else {
				lo = mid
			}
		}
		best, bestEnd, bestLB = i, hi, lb
	}
	if best < 0 {
		if i := bytes.LastIndexByte(m.slice(s.scanned, end), '\n'); i >= 0 {
			s.lineStart = s.scanned + int64(i) + 1
		}
		s.scanned = end
		return Match{}, false
	}

	hay := m.slice(bestLB, bestEnd)
	loc := s.pats[best].find(hay)
	res := Match{
		Index:   best,
		Text:    string(hay[loc[0]:loc[1]]),
		Before:  string(m.slice(cs, bestLB+int64(loc[0]))),
		Dropped: m.dropped,
		Offset:  bestLB + int64(loc[0]),
	}
	for g := 2; g+1 < len(loc); g += 2 {
		if loc[g] < 0 {
			res.Groups = append(res.Groups, "")
		} else {
			res.Groups = append(res.Groups, string(hay[loc[g]:loc[g+1]]))
		}
	}
	consumed := int(bestLB + int64(loc[1]) - cs)
	m.start += consumed
	m.off += int64(consumed)
	m.dropped = 0
	if m.start == len(m.buf) {
		m.buf, m.start = m.buf[:0], 0
	}
	s.done = true
	return res, true
}

// lowerBound returns the stream offset from which p must be searched so
// that every match ending after s.scanned is found, and the text before the
// offset that p's assertions look at is present.
func (s *Search) lowerBound(p Pattern) int64 {
	cs := s.m.off
	if p.beginText {
		return cs
	}
	lb := cs
	if p.maxLen != unbounded {
		lb = max(lb, s.scanned-int64(p.maxLen)+1)
	}
	if p.oneLine {
		lb = max(lb, s.lineStart)
	}
	if p.beginLine && lb > cs {
		if lb >= s.lineStart {
			lb = s.lineStart
		} else if i := bytes.LastIndexByte(s.m.slice(cs, lb), '\n'); i >= 0 {
			lb = cs + int64(i) + 1
		} else {
			lb = cs
		}
	}
	if p.wordBoundary && lb > cs {
		lb-- // \b is an ASCII word boundary: one byte of context suffices
	}
	return lb
}
