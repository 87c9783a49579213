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
	// Durations and rates as dd, wget and benchmarks print them.
	durationRE = regexp.MustCompile(`\b\d+(\.\d+)?\s?(ns|us|µs|ms|s|sec|secs|seconds?|[kKMGT]i?B/s|[kMG]?bit/s|[kMG]b/s)\b`)
	// MAC addresses: aa:bb:cc:dd:ee:ff and aa-bb-..., and the six bytes
	// apart that PXE ROMs print ("CLIENT MAC ADDR: 02 42 DD 30 25 94").
	// Runs of 6 bytes are a MAC; of 7, pxelinux's BOOTIF (the ARP
	// hardware type, then the MAC); longer ones a hex dump, left alone.
	macRE      = regexp.MustCompile(`\b(?:[0-9A-Fa-f]{2}[:-]){5,}[0-9A-Fa-f]{2}\b`)
	macSpaceRE = regexp.MustCompile(`\b(?:[0-9A-Fa-f]{2} ){5,}[0-9A-Fa-f]{2}\b`)
	// IPv6 candidates, checked with netip.ParseAddr; IPv4 with a port.
	ip6RE = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]+)?`)
	ip4RE = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}(:\d{1,5})?\b`)
	// Hex: 0x with 8 or more digits (pointers), and words of 8 or more hex
	// digits with a letter among them (nonces, kernel pointers printed
	// without 0x, digests).
	// basalt's own nonces, which may hold no letter: the markers
	// target.run frames output with (BASALT-1a2b3c4d-1-S, typed as
	// BAS""ALT-...), basalt.nonce=, basalt-fetch- directories.
	basaltNonceRE = regexp.MustCompile(`(?i)(BAS(?:""|'')?ALT[-.a-z]*[-=])[0-9a-f]{8,}\b`)
	hex0xRE       = regexp.MustCompile(`\b0[xX][0-9A-Fa-f]{8,}\b`)
	hexRE         = regexp.MustCompile(`\b[0-9A-Fa-f]{8,}\b`)
	spacesRE      = regexp.MustCompile(`[ \t]+`)
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
	line = spacesRE.ReplaceAllString(line, " ")
	line = kernelTime.ReplaceAllString(line, "")
	line = uuidRE.ReplaceAllString(line, "<UUID>")
	line = dateTimeRE.ReplaceAllString(line, "<TIME>")
	mac := func(s string) string {
		switch len(s) {
		case 17:
			return "<MAC>"
		case 20:
			return s[:3] + "<MAC>"
		}
		return s
	}
	line = macRE.ReplaceAllStringFunc(line, mac)
	line = macSpaceRE.ReplaceAllStringFunc(line, mac)
	line = replaceIP6(line)
	line = clockRE.ReplaceAllString(line, "<TIME>")
	line = ip4RE.ReplaceAllStringFunc(line, func(s string) string {
		addr, port, ok := strings.Cut(s, ":")
		if _, err := netip.ParseAddr(addr); err != nil {
			return s
		}
		if ok && port != "" {
			return "<IP4>:<PORT>"
		}
		return "<IP4>"
	})
	line = durationRE.ReplaceAllString(line, "<DUR>")
	line = basaltNonceRE.ReplaceAllString(line, "${1}<HEX>")
	line = hex0xRE.ReplaceAllString(line, "0x<HEX>")
	line = hexRE.ReplaceAllStringFunc(line, func(s string) string {
		if strings.IndexFunc(s, func(r rune) bool { return (r >= 'a' && r <= 'f') || (r >= 'A' && r <= 'F') }) < 0 {
			return s // a decimal number
		}
		return "<HEX>"
	})
	return strings.TrimSpace(spacesRE.ReplaceAllString(line, " "))
}

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
func Notable(norm string) bool { return notableRE.MatchString(norm) }
