package expect

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"regexp/syntax"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// reference matches as the package doc defines it, naively: one byte at a
// time, searching the whole unconsumed input each time.
func reference(pats []Pattern, data []byte) []Match {
	var out []Match
	cs := 0
	for e := cs + 1; e <= len(data); e++ {
		for i, p := range pats {
			loc := p.find(data[cs:e])
			if loc == nil {
				continue
			}
			m := Match{Index: i, Text: string(data[cs+loc[0] : cs+loc[1]]), Before: string(data[cs : cs+loc[0]]), Offset: int64(cs + loc[0])}
			for g := 2; g+1 < len(loc); g += 2 {
				if loc[g] < 0 {
					m.Groups = append(m.Groups, "")
				} else {
					m.Groups = append(m.Groups, string(data[cs+loc[g]:cs+loc[g+1]]))
				}
			}
			out = append(out, m)
			cs += loc[1]
			e = cs
			break
		}
	}
	return out
}

// feed writes chunks to a matcher and collects every match, starting a new
// search after each one as a console does.
func feed(t testing.TB, window int, pats []Pattern, chunks [][]byte) []Match {
	m := New(window)
	s, err := m.Search(pats...)
	if err != nil {
		t.Fatal(err)
	}
	var out []Match
	for _, c := range chunks {
		m.Write(c)
		for {
			r, ok := s.Next()
			if !ok {
				break
			}
			out = append(out, r)
			if s, err = m.Search(pats...); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func cut(data []byte, sizes ...int) [][]byte {
	var out [][]byte
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

func lit(s string) Pattern { return Literal(s) }
func re(s string) Pattern  { return MustRegexp(s) }

func TestSearch(t *testing.T) {
	tests := []struct {
		name   string
		pats   []Pattern
		chunks []string
		want   []Match
	}{
		{
			name:   "literal across chunks",
			pats:   []Pattern{lit("login:")},
			chunks: []string{"boot...\nlog", "in: "},
			want:   []Match{{Index: 0, Text: "login:", Before: "boot...\n", Offset: 8}},
		},
		{
			name:   "first to complete wins over list order",
			pats:   []Pattern{lit("panic here"), lit("pan")},
			chunks: []string{"xx panic here"},
			want:   []Match{{Index: 1, Text: "pan", Before: "xx ", Offset: 3}},
		},
		{
			name:   "tie goes to earlier pattern",
			pats:   []Pattern{lit("b"), lit("ab")},
			chunks: []string{"ab"},
			want:   []Match{{Index: 0, Text: "b", Before: "a", Offset: 1}},
		},
		{
			name:   "greedy regexp matches as if byte by byte",
			pats:   []Pattern{re(`ab+`)},
			chunks: []string{"xabbb"},
			want:   []Match{{Index: 0, Text: "ab", Before: "x", Offset: 1}},
		},
		{
			name:   "groups",
			pats:   []Pattern{re(`ip=(\d+)\.(\d+)\n`), re(`(x)|(y)z`)},
			chunks: []string{"got ip=10.", "42\nyz"},
			want: []Match{
				{Index: 0, Text: "ip=10.42\n", Groups: []string{"10", "42"}, Before: "got ", Offset: 4},
				{Index: 1, Text: "yz", Groups: []string{"", "y"}, Offset: 13},
			},
		},
		{
			name:   "rest stays for the next search",
			pats:   []Pattern{lit("# ")},
			chunks: []string{"a# b# c"},
			want: []Match{
				{Index: 0, Text: "# ", Before: "a", Offset: 1},
				{Index: 0, Text: "# ", Before: "b", Offset: 4},
			},
		},
		{
			name:   "multiline anchor",
			pats:   []Pattern{re(`(?m)^root@\w+:`)},
			chunks: []string{"xroot@a: no\nroot", "@b: yes"},
			want:   []Match{{Index: 0, Text: "root@b:", Before: "xroot@a: no\n", Offset: 12}},
		},
		{
			name:   "unbounded regexp across lines",
			pats:   []Pattern{re(`(?s)begin.*?end`)},
			chunks: []string{"begin\n", "middle\n", "end"},
			want:   []Match{{Index: 0, Text: "begin\nmiddle\nend", Offset: 0}},
		},
		{
			name:   "case folded literal",
			pats:   []Pattern{re(`(?i)kernel PANIC`)},
			chunks: []string{"KERNEL pa", "nic"},
			want:   []Match{{Index: 0, Text: "KERNEL panic", Offset: 0}},
		},
		{
			name:   "no match",
			pats:   []Pattern{lit("zzz"), re(`q+r`)},
			chunks: []string{"zz", "z"[:0], "qqq"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var chunks [][]byte
			for _, c := range tt.chunks {
				chunks = append(chunks, []byte(c))
			}
			got := feed(t, 0, tt.pats, chunks)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("matches of %q (-want +got):\n%s", tt.chunks, diff)
			}
		})
	}
}

func TestRegexpRefused(t *testing.T) {
	for _, expr := range []string{`a*`, `x?`, `^`, `\b`, `(a|)`, `[`} {
		if _, err := Regexp(expr); err == nil {
			t.Errorf("Regexp(%q) = nil error, want one", expr)
		}
	}
}

func TestPatternBounds(t *testing.T) {
	tests := []struct {
		expr    string
		maxLen  int
		oneLine bool
	}{
		{`abc`, 3, true},
		{`a.c`, 2 + 4, true},
		{`a[bc]{2,3}`, 4, true},
		{`a\s`, 2, false},
		{`x.*y`, unbounded, true},
		{`(?s)x.*y`, unbounded, false},
		{`é|ab`, 2, true},
	}
	for _, tt := range tests {
		p := MustRegexp(tt.expr)
		if p.maxLen != tt.maxLen || p.oneLine != tt.oneLine {
			t.Errorf("Regexp(%q) bounds = (%d, %v), want (%d, %v)", tt.expr, p.maxLen, p.oneLine, tt.maxLen, tt.oneLine)
		}
	}
}

func TestWindowBoundsMemory(t *testing.T) {
	const window = 64 << 10
	m := New(window)
	s, err := m.Search(lit("marker"), re(`(?s)never.*matches`))
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("[    1.000000] some kernel line\n", 100))
	for i := 0; i < 1000; i++ {
		m.Write(line)
		if _, ok := s.Next(); ok {
			t.Fatalf("match in filler")
		}
		if m.Buffered() > window || cap(m.buf) > 2*window {
			t.Fatalf("after %d writes: buffered %d, cap %d; want <= %d, <= %d", i, m.Buffered(), cap(m.buf), window, 2*window)
		}
	}
	m.Write([]byte("the marker\n"))
	r, ok := s.Next()
	if !ok || r.Index != 0 || r.Dropped == 0 || len(r.Before) > window {
		t.Fatalf("Next() = index %d, dropped %d, before %d bytes, %v; want index 0, dropped > 0, before <= %d", r.Index, r.Dropped, len(r.Before), ok, window)
	}
	if got, want := r.Offset, int64(1000*len(line)+4); got != want {
		t.Errorf("match offset = %d, want %d", got, want)
	}
}

func TestNothingLostAfterMatch(t *testing.T) {
	var data bytes.Buffer
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&data, "line %05d\n", i)
	}
	got := feed(t, 0, []Pattern{re(`line \d{5}\n`)}, cut(data.Bytes(), 7, 4096, 1, 333))
	var seen strings.Builder
	for _, m := range got {
		seen.WriteString(m.Before + m.Text)
	}
	if seen.String() != data.String() || len(got) != 2000 {
		t.Errorf("matches cover %d bytes in %d matches, want %d bytes in 2000", seen.Len(), len(got), data.Len())
	}
}

// fuzzPatterns turns spec into patterns: lines "l<text>" are literals and
// "r<expr>" regexps; invalid ones and regexps whose meaning depends on the
// end of the received text are skipped.
func fuzzPatterns(spec string) []Pattern {
	var pats []Pattern
	for _, s := range strings.Split(spec, "\x00") {
		if len(s) < 2 || len(pats) == 8 {
			continue
		}
		switch s[0] {
		case 'l':
			pats = append(pats, Literal(s[1:]))
		case 'r':
			tree, err := syntax.Parse(s[1:], syntax.Perl)
			if err != nil {
				continue
			}
			endSensitive := false
			walk(tree, func(r *syntax.Regexp) {
				switch r.Op {
				case syntax.OpEndText, syntax.OpEndLine, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
					endSensitive = true
				}
			})
			if p, err := Regexp(s[1:]); err == nil && !endSensitive {
				pats = append(pats, p)
			}
		}
	}
	return pats
}

func FuzzMatcher(f *testing.F) {
	f.Add([]byte("U-Boot 2013\nHit any key\nKernel panic - not syncing: x\nlogin: "), "lKernel panic\x00r(?m)^login: \x00rHit any \\w+", uint64(1))
	f.Add([]byte("abcabcabd xyz\naaab"), "rab+\x00labd\x00r(?s)c.*x\x00ra{2,3}b", uint64(7))
	f.Add([]byte("root@sim:~# ls\r\nfoo bar\r\nroot@sim:~# "), "r[a-z]+@\\w+:~# \x00lbar\x00r(foo|ba)[r ]", uint64(3))
	f.Add([]byte("\x00\xff\xfe é ü \n\n\n"), "r[^a]\\n\x00l\n\n\x00r.\\n", uint64(11))
	f.Fuzz(func(t *testing.T, data []byte, spec string, seed uint64) {
		if len(data) > 4096 {
			return
		}
		pats := fuzzPatterns(spec)
		if len(pats) == 0 {
			return
		}
		want := reference(pats, data)
		whole := feed(t, len(data)+1, pats, [][]byte{data})
		if diff := cmp.Diff(want, whole); diff != "" {
			t.Fatalf("whole text vs one byte at a time (-want +got):\n%s", diff)
		}
		r := rand.New(rand.NewPCG(seed, seed>>7))
		var sizes []int
		for range 16 {
			sizes = append(sizes, 1+r.IntN(64))
		}
		chunked := feed(t, len(data)+1, pats, cut(data, sizes...))
		if diff := cmp.Diff(whole, chunked); diff != "" {
			t.Fatalf("chunks of %v vs whole text (-whole +chunked):\n%s", sizes, diff)
		}
	})
}

func TestDiscard(t *testing.T) {
	m := New(64)
	m.Write([]byte("old login: "))
	s, err := m.Search(Literal("login: "))
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Discard(); n != len("old login: ") {
		t.Errorf("Discard() = %d, want %d", n, len("old login: "))
	}
	if _, ok := s.Next(); ok {
		t.Errorf("Next() after Discard matched the discarded input")
	}
	m.Write([]byte("new login: "))
	got, ok := s.Next()
	if !ok || got.Before != "new " || got.Offset != int64(len("old login: new ")) || got.Dropped != 0 {
		t.Errorf("Next() = %+v, %v; want the new login with Before \"new \"", got, ok)
	}
}
