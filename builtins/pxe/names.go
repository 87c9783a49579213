package pxe

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// MaxNameLen is the longest file name the server accepts. TFTP (RFC 1350)
// carries the name in one 512-byte request packet with the mode and options;
// pxelinux and iPXE never ask for more than a few dozen characters.
const MaxNameLen = 255

// RefusedError is returned for a requested file name the server will not
// even look up. Reason is a short machine-readable word for events.
type RefusedError struct {
	Name   string
	Reason string // empty | too_long | nul_byte | control_char | absolute | dotdot | backslash
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused file name %q: %s", clip(e.Name), e.Reason)
}

// clip shortens a hostile name before it reaches a log line.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// errNotFound is what a request for a name that exists nowhere in this job
// gets. pin/tftp sends the message as a TFTP ERROR packet (code 1).
var errNotFound = errors.New("file not found")

// ValidName checks a file name requested over TFTP or HTTP and returns it
// with a leading "./" removed. pin/tftp hands the handler the raw name from
// the request packet, so every check here is all that stands between a
// client and the file system; lookups are further confined with os.Root.
func ValidName(name string) (string, error) {
	refuse := func(reason string) (string, error) {
		return "", &RefusedError{Name: name, Reason: reason}
	}
	switch {
	case name == "":
		return refuse("empty")
	case len(name) > MaxNameLen:
		return refuse("too_long")
	case strings.IndexByte(name, 0) >= 0:
		return refuse("nul_byte")
	case strings.ContainsRune(name, '\\'):
		// Some Windows-flavoured ROMs send backslashes; none of our names
		// contain one, and accepting them would only widen the attack surface.
		return refuse("backslash")
	case name[0] == '/':
		return refuse("absolute")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return refuse("control_char")
		}
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return refuse("dotdot")
		}
	}
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	switch {
	case name == "" || name == ".":
		return refuse("empty")
	case name[0] == '/':
		return refuse("absolute") // ".//etc/passwd"
	}
	return name, nil
}

// ConfigKind says which step of pxelinux's configuration lookup a name
// under pxelinux.cfg/ belongs to.
type ConfigKind int

const (
	NotConfig     ConfigKind = iota // not under pxelinux.cfg/
	ConfigUUID                      // pxelinux.cfg/<client UUID>
	ConfigMAC                       // pxelinux.cfg/01-aa-bb-cc-dd-ee-ff
	ConfigIP                        // pxelinux.cfg/C0A8000 (a hex IP prefix)
	ConfigDefault                   // pxelinux.cfg/default
	ConfigOther                     // any other name under pxelinux.cfg/
)

var configKindNames = [...]string{"none", "uuid", "mac", "ip", "default", "other"}

func (k ConfigKind) String() string {
	if int(k) < len(configKindNames) {
		return configKindNames[k]
	}
	return fmt.Sprintf("ConfigKind(%d)", int(k))
}

// ConfigPrefix is the directory pxelinux reads its configuration from,
// relative to the directory of pxelinux.0.
const ConfigPrefix = "pxelinux.cfg/"

// ParseConfigName classifies a (valid) requested name in pxelinux's lookup
// order (syslinux doc/pxelinux.txt): the client UUID, "01-" and the MAC in
// lower-case hex with dashes, the client IP in upper-case hex shortened one
// digit at a time, then "default". For ConfigMAC it also returns the MAC.
func ParseConfigName(name string) (ConfigKind, net.HardwareAddr) {
	rest, ok := strings.CutPrefix(name, ConfigPrefix)
	if !ok {
		return NotConfig, nil
	}
	switch {
	case rest == "default":
		return ConfigDefault, nil
	case isUUID(rest):
		return ConfigUUID, nil
	case strings.HasPrefix(rest, "01-") && len(rest) == 3+17:
		mac, err := net.ParseMAC(strings.ReplaceAll(rest[3:], "-", ":"))
		// Only the canonical dashed form: ParseMAC also takes ':' and '.'.
		if err == nil && len(mac) == 6 && MACConfigName(mac) == strings.ToLower(name) {
			return ConfigMAC, mac
		}
	case len(rest) >= 1 && len(rest) <= 8 && isHex(rest, true):
		return ConfigIP, nil
	}
	return ConfigOther, nil
}

// MACConfigName is the pxelinux config name for mac: pxelinux.cfg/01-aa-bb-...
func MACConfigName(mac net.HardwareAddr) string {
	return ConfigPrefix + "01-" + strings.ReplaceAll(mac.String(), ":", "-")
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i:i+1], false) {
				return false
			}
		}
	}
	return true
}

// isHex reports whether s is all hex digits; upper restricts to A-F, as
// pxelinux writes IP prefixes.
func isHex(s string, upper bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'F':
		case !upper && c >= 'a' && c <= 'f':
		default:
			return false
		}
	}
	return s != ""
}
