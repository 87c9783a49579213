// Package sol is the Starlark module "sol": the device's serial console,
// whatever the transport, with expect-style matching.
//
// Starlark functions:
//
//	sol.expect(pattern_or_list, timeout=None) -> struct(index, text, groups, before)
//	sol.send(text, delay_ms=None, secret=False)
//	sol.sendline(text, delay_ms=None, verify_echo=False, secret=False)
//	sol.mode(name)                  # "bootloader" | "shell": the default typing delay
//	sol.regex(pattern)              # a regular expression pattern for expect
//
// A string pattern is a literal; sol.regex("...") is a regular expression
// (RE2). There is no prefix convention: a literal may start with anything.
//
// The Go side is a [Console] over a [Transport] (TCP, Command under a pty,
// serialsim's Port, and builtins/ipmi's SOL). One reader goroutine captures
// every byte (Options.Capture), feeds the streaming matcher of package
// expect and reconnects with backoff when the transport is lost, recording
// a console_gap event; an Expect in progress goes on across the gap. The
// device type's error patterns end any Expect with a *DeviceErrorMatch.
package sol
