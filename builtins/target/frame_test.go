package target

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

// console renders what a tty shows for a framed command: the echo of the
// typed line, the markers and the output with onlcr, and the prompt; a
// kernel message follows the i-th "\r\n" when bit i%64 of inject is set.
func consoleStream(f frame, cmd, out string, code int, inject uint64) string {
	onlcr := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	s := "root@sim:~# " + onlcr(f.line(cmd)) + "\r\n" +
		f.marker() + "-S\r\n" + onlcr(out) + "\r\n" + f.marker() + "-E:" + strconv.Itoa(code) + "\r\n" + "root@sim:~# "
	if inject == 0 {
		return s
	}
	var b strings.Builder
	for i := 0; ; i++ {
		j := strings.Index(s, "\r\n")
		if j < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:j+2])
		s = s[j+2:]
		if inject&(1<<(uint(i)%64)) != 0 {
			b.WriteString(kernelLine)
		}
	}
	return b.String()
}

// parseStream finds the command's output and status in stream, fed to the
// console's matcher in chunks of size chunk.
func parseStream(t testing.TB, f frame, stream string, chunk int) (Result, bool) {
	m := expect.New(0)
	feed := func(s *expect.Search) (expect.Match, bool) {
		if mt, ok := s.Next(); ok {
			return mt, true
		}
		for len(stream) > 0 {
			n := min(chunk, len(stream))
			m.Write([]byte(stream[:n]))
			stream = stream[n:]
			if mt, ok := s.Next(); ok {
				return mt, true
			}
		}
		return expect.Match{}, false
	}
	s, err := m.Search(f.startPattern())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := feed(s); !ok {
		return Result{}, false
	}
	if s, err = m.Search(f.endPattern()); err != nil {
		t.Fatal(err)
	}
	end, ok := feed(s)
	if !ok {
		return Result{}, false
	}
	code, err := status(end.Groups)
	if err != nil {
		t.Fatalf("status(%q): %v", end.Groups, err)
	}
	return Result{Output: output(end.Before, regexp.MustCompile(DefaultKernelMessage)), ExitCode: code}, true
}

func TestFrame(t *testing.T) {
	f := newFrame("0a1b2c3d", 7)
	line := f.line("echo it's")
	if strings.Contains(line, f.marker()) {
		t.Errorf("typed line %q holds the marker %q", line, f.marker())
	}
	tests := []struct {
		out    string
		code   int
		inject uint64
	}{
		{"", 0, 0},
		{"hello\n", 0, 0},
		{"no newline", 1, 0},
		{"a\n\nb\n", 255, ^uint64(0)},
		{"x\r\ny\r", 2, ^uint64(0)},
		{"\n\n", 0, 0b1010101},
	}
	for _, tc := range tests {
		stream := consoleStream(f, "cmd", tc.out, tc.code, tc.inject)
		for _, chunk := range []int{1, 3, 4096} {
			got, ok := parseStream(t, f, stream, chunk)
			if !ok || got.Output != tc.out || got.ExitCode != tc.code {
				t.Errorf("parse(%q, chunk %d) = %q, %d, %v, want %q, %d", stream, chunk, got.Output, got.ExitCode, ok, tc.out, tc.code)
			}
		}
	}
}

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"":          "''",
		"abc":       "'abc'",
		"it's":      `'it'\''s'`,
		`a"b$c\d`:   `'a"b$c\d'`,
		"two\nline": "'two\nline'",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzFrame checks that any output, with kernel messages between its
// lines, comes back exact from the console stream, cut anywhere.
func FuzzFrame(f *testing.F) {
	f.Add("echo hi", "hi\n", uint8(0), uint64(0), uint8(1))
	f.Add("printf x", "x", uint8(1), uint64(5), uint8(7))
	f.Add("ls\necho", "a\r\n\r\nb", uint8(127), ^uint64(0), uint8(200))
	f.Add("", "[ 1.0] not a printk\n", uint8(3), uint64(2), uint8(2))
	kernel := regexp.MustCompile(DefaultKernelMessage)
	f.Fuzz(func(t *testing.T, cmd, out string, code uint8, inject uint64, chunk uint8) {
		if strings.Contains(cmd, markerWord) || strings.Contains(out, markerWord) {
			t.Skip("a command printing the marker itself is out of scope")
		}
		for _, l := range strings.Split(out, "\n") {
			if kernel.MatchString(l) {
				t.Skip("output that looks like a kernel message is dropped by design")
			}
		}
		fr := newFrame("fuzz", uint64(code)+1)
		stream := consoleStream(fr, cmd, out, int(code), inject)
		got, ok := parseStream(t, fr, stream, int(chunk)+1)
		if !ok || got.Output != out || got.ExitCode != int(code) {
			t.Errorf("parse(%q) = %q, %d, %v, want %q, %d", stream, got.Output, got.ExitCode, ok, out, code)
		}
	})
}
