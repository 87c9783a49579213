package ipmi

import (
	"fmt"
	"strings"
)

// CompletionCode is the first byte of every IPMI response (IPMI v2.0
// §5.2, Table 5-2). 00h is success.
type CompletionCode uint8

// Generic completion codes (Table 5-2). Codes 80h-BEh are command-specific:
// see specificText.
var completionText = map[CompletionCode]string{
	0x00: "success",
	0xC0: "node busy",
	0xC1: "invalid command",
	0xC2: "command invalid for given LUN",
	0xC3: "timeout while processing command",
	0xC4: "out of space",
	0xC5: "reservation canceled or invalid reservation ID",
	0xC6: "request data truncated",
	0xC7: "request data length invalid",
	0xC8: "request data field length limit exceeded",
	0xC9: "parameter out of range",
	0xCA: "cannot return number of requested data bytes",
	0xCB: "requested sensor, data, or record not present",
	0xCC: "invalid data field in request",
	0xCD: "command illegal for specified sensor or record type",
	0xCE: "command response could not be provided",
	0xCF: "cannot execute duplicated request",
	0xD0: "SDR repository in update mode",
	0xD1: "device in firmware update mode",
	0xD2: "BMC initialization in progress",
	0xD3: "destination unavailable",
	0xD4: "insufficient privilege level",
	0xD5: "command not supported in present state",
	0xD6: "command sub-function disabled or unavailable",
	0xFF: "unspecified error",
}

// String returns the code in words, e.g. "D5h (command not supported in
// present state)".
func (c CompletionCode) String() string {
	if t, ok := completionText[c]; ok {
		return fmt.Sprintf("%02Xh (%s)", uint8(c), t)
	}
	switch {
	case c >= 0x01 && c <= 0x7E:
		return fmt.Sprintf("%02Xh (OEM code)", uint8(c))
	case c >= 0x80 && c <= 0xBE:
		return fmt.Sprintf("%02Xh (command-specific error)", uint8(c))
	}
	return fmt.Sprintf("%02Xh (reserved code)", uint8(c))
}

// specificText names the command-specific codes of the commands basalt
// sends, keyed by the command names the Client uses.
var specificText = map[string]map[CompletionCode]string{
	// Set System Boot Options (IPMI v2.0 §28.12).
	"set boot device": {
		0x80: "parameter not supported",
		0x81: "set in progress by another party",
		0x82: "parameter is read-only",
	},
	// Activate Payload (IPMI v2.0 §24.1, Table 24-2).
	"activate SOL": {
		0x80: "payload already active on another session",
		0x81: "payload type is disabled",
		0x82: "payload activation limit reached",
		0x83: "cannot activate payload with encryption",
		0x84: "cannot activate payload without encryption",
	},
}

// describe returns code in words as an answer to command.
func describe(command string, code CompletionCode) string {
	for prefix, t := range specificText {
		if strings.HasPrefix(command, prefix) {
			if s, ok := t[code]; ok {
				return fmt.Sprintf("%02Xh (%s)", uint8(code), s)
			}
		}
	}
	return code.String()
}

// transient reports whether a command that failed with c may succeed if
// sent again shortly.
func (c CompletionCode) transient() bool {
	switch c {
	case 0xC0, 0xC3, 0xCE, 0xD2:
		return true
	}
	return false
}
