package target

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

// markerWord starts every marker. The typed line only ever holds it cut in
// two by an empty shell string ("BAS""ALT"), so the echo of the line, a
// shell redrawing it, or a `set -x` trace cannot contain a whole marker.
const markerWord = "BASALT"

// frame is the framing of one command: the line to type and the patterns
// that find its start, its end and exit status in the console stream.
type frame struct {
	id string // "<token>-<n>", unique per command of a Target
}

func newFrame(token string, n uint64) frame {
	return frame{id: token + "-" + strconv.FormatUint(n, 10)}
}

// marker returns the marker as printed: BASALT-<token>-<n>.
func (f frame) marker() string { return markerWord + "-" + f.id }

// line returns the text typed for cmd. The command runs under eval, so a
// comment or a syntax error in cmd cannot swallow the end marker, and its
// output goes between two markers, printed by echo and printf:
//
//	echo BAS""ALT-tok-1-S;eval 'CMD'</dev/null;printf '\nBAS''ALT-tok-1-E:%d\n' $?
//
// The line is as short as it can be: the guest echoes every character
// typed, one at a time (on a TCG guest each costs a fraction of a
// millisecond; at 115200 baud 87 µs), so each character saved comes off
// every command's round trip. The marker (letters, digits and "-" only)
// needs no quoting beyond the cut.
//
// A newline is printed before the end marker so that the marker starts a
// line even after output that does not end with one; [output] removes it.
// Standard input is /dev/null: a command reading its input would otherwise
// eat the next line typed.
func (f frame) line(cmd string) string {
	id := markerWord[3:] + "-" + f.id
	return "echo " + markerWord[:3] + `""` + id + "-S;eval " + shellQuote(cmd) +
		"</dev/null;printf '\\n" + markerWord[:3] + "''" + id + "-E:%d\\n' $?"
}

// startPattern matches the start marker line.
func (f frame) startPattern() expect.Pattern {
	return expect.MustRegexp(regexp.QuoteMeta(f.marker()+"-S") + `\r*\n`)
}

// endPattern matches the end marker line; group 1 is the exit status.
// The newline printed before the marker stays in the output, where
// [output] removes it once the kernel's lines are out: a printk line
// between the output and the marker ends with a newline of its own.
func (f frame) endPattern() expect.Pattern {
	return expect.MustRegexp(regexp.QuoteMeta(f.marker()+"-E:") + `([0-9]+)\r*\n`)
}

// status parses the exit status of an end marker match.
func status(groups []string) (int, error) {
	if len(groups) < 1 {
		return 0, fmt.Errorf("end marker without a status")
	}
	n, err := strconv.Atoi(groups[0])
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("end marker with status %q", groups[0])
	}
	return n, nil
}

// output turns what the console showed between the two markers into the
// command's output: "\r\n" (the tty's onlcr) becomes "\n", lines that
// kernel matches whole (printk lines the kernel wrote to the console while
// the command ran) are removed, and so is the newline printed before the
// end marker. kernel may be nil.
func output(between string, kernel *regexp.Regexp) string {
	s := strings.ReplaceAll(between, "\r\n", "\n")
	if kernel != nil && s != "" {
		var b strings.Builder
		b.Grow(len(s))
		for len(s) > 0 {
			line, rest, nl := strings.Cut(s, "\n")
			s = rest
			if nl && kernel.MatchString(line) {
				continue // only whole lines: a printk always ends its line
			}
			b.WriteString(line)
			if nl {
				b.WriteByte('\n')
			}
		}
		s = b.String()
	}
	return strings.TrimSuffix(s, "\n")
}

// DefaultKernelMessage matches a console line printed by the kernel's printk
// ("[   12.345678] usb 1-1: new device"), possibly with a "<6>" level.
const DefaultKernelMessage = `^(<[0-9]>)?\[ *[0-9]+\.[0-9]+\] `

// shellQuote quotes s for a POSIX shell as one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tail returns the last lines of s, at most max bytes, for error messages.
func tail(s string, max int) string {
	s = strings.TrimRight(s, "\n")
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return "..." + s
}
