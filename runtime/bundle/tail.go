package bundle

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// TailLines returns the last n lines of console bytes as a person should
// read them: "\r\n" and lone "\r" ends dropped, terminal escape sequences
// and other control characters removed, invalid UTF-8 replaced, each line
// cut to width runes. A first line that data starts in the middle of is
// dropped when partial is true.
func TailLines(data []byte, n, width int, partial bool) []string {
	if partial {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		} else {
			data = nil
		}
	}
	text := strings.TrimRight(string(data), "\r\n")
	if text == "" || n <= 0 {
		return nil
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = cleanLine(l, width)
	}
	return lines
}

// cleanLine removes what a console prints that is not text: ANSI escape
// sequences (ECMA-48 CSI and two-byte escapes), carriage returns and other
// C0/C1 controls but tabs.
func cleanLine(s string, width int) string {
	var b strings.Builder
	runes := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0x1b {
			i++
			if i < len(s) && s[i] == '[' {
				// CSI: parameters and intermediates, then a final byte
				// 0x40-0x7e (ECMA-48 section 5.4).
				i++
				for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
					i++
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == '\t' {
			r = ' '
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			continue
		}
		if runes == width {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		runes++
	}
	return b.String()
}
