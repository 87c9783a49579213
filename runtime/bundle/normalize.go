package bundle

import (
	"net/netip"
	"regexp"
	"strings"
)

// What Normalize replaces, in this order. Each pattern stands for a value
// that differs between two runs of the same job on the same board: the
// clock, the addresses a DHCP server or a test harness hands out, the
// nonces basalt and its libraries draw, and the addresses the kernel
// loads things at.
var (
	// The kernel's printk timing prefix, "[    1.234567] " (CONFIG_PRINTK_TIME),
	// after an optional "<6>" log level.
	kernelTime = regexp.MustCompile(`^(<\d>)?\[\s*\d+\.\d+\]\s?`)
	// 8-4-4-4-12 hex digits (RFC 4122's text form).
	uuidRE = regexp.MustCompile(`\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b`)
	// Dates and times: RFC 3339 / ISO 8601, then a time of day.
	dateTimeRE = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?`)
	clockRE    = regexp.MustCompile(`\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b`)
	// IPv6 candidates, checked with netip.ParseAddr.
	ip6RE = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]+)?`)
	// basalt's own nonces, which may hold no letter: the markers
	// target.run frames output with (BASALT-1a2b3c4d-1-S, typed as
	// BAS""ALT-...), basalt.nonce=, basalt-fetch- directories.
	basaltNonceRE = regexp.MustCompile(`(?i)(BAS(?:""|'')?ALT[-.a-z]*[-=])[0-9a-f]{8,}\b`)
	// MAC and IPv4 addresses, durations and rates, hex words (0x with 8
	// or more digits: pointers; 8 or more hex digits with a letter among
	// them: nonces, kernel pointers printed without 0x, digests) are
	// found by the byte scanners below, several times faster than
	// regexps that backtrack on every digit.
)

// MaxNormalizedLine is how much of a console line Normalize reads: a line
// longer than that (a binary blob) is compared on its first bytes.
const MaxNormalizedLine = 4096

// Normalize returns a console line as basalt diff compares it: what a
// terminal would show of it (the text after its last carriage return,
// without escape sequences or control characters), with the kernel's
// timing prefix removed and the values that change from run to run
// replaced by a placeholder — <UUID>, <TIME>, <DUR>, <MAC>, <IP6>,
// <IP4>[:<PORT>], 0x<HEX>, <HEX> — and runs of blanks made one. A line
// that holds nothing else is "".
func Normalize(line string) string {
	if len(line) > MaxNormalizedLine {
		line = line[:MaxNormalizedLine]
	}
	line = strings.TrimRight(line, "\r\n")
	if i := strings.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	line = cleanLine(line, MaxNormalizedLine)
	line = squeeze(line)
	// Each pattern only where the bytes it needs are (a cheap test first:
	// a 50 MB console is 600 000 lines).
	if line != "" && (line[0] == '[' || line[0] == '<') {
		line = kernelTime.ReplaceAllString(line, "")
	}
	colons, dashes := strings.Count(line, ":"), strings.Count(line, "-")
	if dashes >= 4 {
		line = uuidRE.ReplaceAllString(line, "<UUID>")
	}
	if dashes >= 2 && colons >= 1 {
		line = dateTimeRE.ReplaceAllString(line, "<TIME>")
	}
	line = replaceMACs(line)
	if colons >= 2 {
		line = replaceIP6(line)
	}
	if colons >= 2 {
		line = clockRE.ReplaceAllString(line, "<TIME>")
	}
	if strings.Count(line, ".") >= 3 {
		line = replaceIP4(line)
	}
	if mayHaveDuration(line) {
		line = replaceDurations(line)
	}
	if strings.Contains(line, "ALT") || strings.Contains(line, "alt") {
		line = basaltNonceRE.ReplaceAllString(line, "${1}<HEX>")
	}
	line = replaceHexWords(line)
	return strings.TrimSpace(squeeze(line))
}

// replaceMACs replaces MAC addresses: aa:bb:cc:dd:ee:ff, aa-bb-... and
// the six bytes apart that PXE ROMs print ("CLIENT MAC ADDR: 02 42 DD 30
// 25 94"). A run of 6 bytes, one separator throughout, standing as a word
// of its own, is a MAC; of 7, pxelinux's BOOTIF (the ARP hardware type,
// then the MAC: 01-<MAC>); a longer run is a hex dump, left alone.
func replaceMACs(line string) string {
	var b strings.Builder
	last := 0
	for i := 0; i+17 <= len(line); i++ {
		if i > 0 && isWordByte(line[i-1]) || !isHex(line[i]) || !isHex(line[i+1]) {
			continue
		}
		sep := line[i+2]
		if sep != ':' && sep != '-' && sep != ' ' {
			continue
		}
		n, j := 1, i+2
		for j+2 < len(line) && line[j] == sep && isHex(line[j+1]) && isHex(line[j+2]) {
			n, j = n+1, j+3
		}
		if j < len(line) && isWordByte(line[j]) || n < 6 || n > 7 || (n == 7 && sep == ' ') {
			i = j - 1
			continue
		}
		b.WriteString(line[last:i])
		if n == 7 {
			b.WriteString(line[i : i+3])
		}
		b.WriteString("<MAC>")
		last, i = j, j-1
	}
	if last == 0 {
		return line
	}
	b.WriteString(line[last:])
	return b.String()
}

// replaceHexWords replaces words (runs of [0-9A-Za-z_]) of 8 or more hex
// digits with a letter among them by <HEX>, and 0x with 8 or more hex
// digits by 0x<HEX>.
func replaceHexWords(line string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(line); {
		if !isWordByte(line[i]) || line[i] == '<' || line[i] == '>' {
			i++
			continue
		}
		j, hex, letter := i, true, false
		for j < len(line) && isWordByte(line[j]) && line[j] != '<' && line[j] != '>' {
			c := line[j]
			hex = hex && isHex(c)
			letter = letter || c > '9'
			j++
		}
		switch {
		case hex && letter && j-i >= 8:
			b.WriteString(line[last:i])
			b.WriteString("<HEX>")
			last = j
		case j-i >= 10 && line[i] == '0' && (line[i+1] == 'x' || line[i+1] == 'X') && allHex(line[i+2:j]):
			b.WriteString(line[last:i])
			b.WriteString("0x<HEX>")
			last = j
		}
		i = j
	}
	if last == 0 {
		return line
	}
	b.WriteString(line[last:])
	return b.String()
}

// mayHaveDuration reports whether line has a digit followed, maybe after
// a blank, by a letter a duration or rate unit starts with.
func mayHaveDuration(line string) bool {
	for i := 0; i+1 < len(line); i++ {
		if line[i] < '0' || line[i] > '9' {
			continue
		}
		c := line[i+1]
		if c == ' ' && i+2 < len(line) {
			c = line[i+2]
		}
		if strings.IndexByte("nuµmskKMGTb", c) >= 0 || c == 0xc2 {
			return true
		}
	}
	return false
}

// replaceIP4 replaces dotted-quad IPv4 addresses (netip parses them)
// standing as words of their own by <IP4>, and one with a port by
// <IP4>:<PORT>.
func replaceIP4(line string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(line); i++ {
		if !isDigit(line[i]) || i > 0 && isWordByte(line[i-1]) {
			continue
		}
		j, parts := i, 0
		for parts < 4 {
			k := j
			for k < len(line) && isDigit(line[k]) && k-j < 4 {
				k++
			}
			if k == j || k-j > 3 {
				break
			}
			parts, j = parts+1, k
			if parts < 4 {
				if j >= len(line) || line[j] != '.' {
					break
				}
				j++
			}
		}
		if parts != 4 || j < len(line) && (isWordByte(line[j]) || line[j] == '.' && j+1 < len(line) && isDigit(line[j+1])) {
			for i+1 < len(line) && (isWordByte(line[i+1]) || line[i+1] == '.') {
				i++
			}
			continue
		}
		if _, err := netip.ParseAddr(line[i:j]); err != nil {
			i = j - 1
			continue
		}
		b.WriteString(line[last:i])
		b.WriteString("<IP4>")
		if k := j + 1; j < len(line) && line[j] == ':' && k < len(line) && isDigit(line[k]) {
			for k < len(line) && isDigit(line[k]) && k-j <= 5 {
				k++
			}
			if k == len(line) || !isWordByte(line[k]) {
				b.WriteString(":<PORT>")
				j = k
			}
		}
		last, i = j, j-1
	}
	if last == 0 {
		return line
	}
	b.WriteString(line[last:])
	return b.String()
}

// durationUnits are the units of the durations and rates that dd, wget
// and benchmarks print, longest first where one starts another.
var durationUnits = []string{"seconds", "second", "secs", "sec", "ns", "us", "µs", "ms", "s",
	"KiB/s", "MiB/s", "GiB/s", "TiB/s", "kB/s", "KB/s", "MB/s", "GB/s", "TB/s",
	"kbit/s", "Mbit/s", "Gbit/s", "bit/s", "kb/s", "Mb/s", "Gb/s"}

// replaceDurations replaces a number (digits, maybe a fraction) that
// stands as a word of its own and is followed, maybe after a blank, by a
// duration or rate unit that ends a word, by <DUR>.
func replaceDurations(line string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(line); i++ {
		if !isDigit(line[i]) || i > 0 && isWordByte(line[i-1]) {
			continue
		}
		j := i
		for j < len(line) && isDigit(line[j]) {
			j++
		}
		if j+1 < len(line) && line[j] == '.' && isDigit(line[j+1]) {
			j++
			for j < len(line) && isDigit(line[j]) {
				j++
			}
		}
		u := j
		if u < len(line) && line[u] == ' ' {
			u++
		}
		end := -1
		for _, unit := range durationUnits {
			if strings.HasPrefix(line[u:], unit) && (u+len(unit) == len(line) || !isWordByte(line[u+len(unit)])) {
				end = u + len(unit)
				break
			}
		}
		if end < 0 {
			i = j - 1
			for i+1 < len(line) && isWordByte(line[i+1]) {
				i++
			}
			continue
		}
		b.WriteString(line[last:i])
		b.WriteString("<DUR>")
		last, i = end, end-1
	}
	if last == 0 {
		return line
	}
	b.WriteString(line[last:])
	return b.String()
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// squeeze makes each run of blanks (spaces, tabs) one space.
func squeeze(s string) string {
	if !strings.Contains(s, "  ") && !strings.Contains(s, "\t") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	blank := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' {
			if !blank {
				b.WriteByte(' ')
			}
			blank = true
			continue
		}
		blank = false
		b.WriteByte(c)
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// replaceIP6 replaces the IPv6 addresses in line (RFC 4291 section 2.2's
// text forms, as netip parses them) that stand as words of their own: the
// "::" of "std::vector" is not one.
func replaceIP6(line string) string {
	var b strings.Builder
	last := 0
	for _, m := range ip6RE.FindAllStringIndex(line, -1) {
		s := line[m[0]:m[1]]
		if strings.Count(s, ":") < 2 || !strings.ContainsAny(s, "0123456789abcdefABCDEF") ||
			(m[0] > 0 && isWordByte(line[m[0]-1])) || (m[1] < len(line) && isWordByte(line[m[1]])) {
			continue
		}
		if a, err := netip.ParseAddr(s); err != nil || !a.Is6() {
			continue
		}
		b.WriteString(line[last:m[0]])
		b.WriteString("<IP6>")
		last = m[1]
	}
	if last == 0 {
		return line
	}
	b.WriteString(line[last:])
	return b.String()
}

func isWordByte(c byte) bool {
	return c == '_' || c == '<' || c == '>' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// notableRE marks the console lines basalt diff lists when only one side
// has them: warnings, errors, Oopses, call traces, BUG: lines and panics.
var notableRE = regexp.MustCompile(`(?i)\bwarn(ing)?\b|\berrors?\b|\boops\b|call trace|\bbug:|panic`)

// Notable reports whether a normalised console line is a warning, an
// error, an Oops, a call trace, a BUG: or a panic.
func Notable(norm string) bool {
	// The words first, cheaply; the regexp then checks they are words.
	lower := strings.ToLower(norm)
	for _, w := range []string{"warn", "error", "oops", "call trace", "bug:", "panic"} {
		if strings.Contains(lower, w) {
			return notableRE.MatchString(norm)
		}
	}
	return false
}
