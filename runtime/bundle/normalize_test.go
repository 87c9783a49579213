package bundle

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// The kernel's printk time, with and without a log level.
		{"[    1.234567] Freeing unused kernel memory: 412K", "Freeing unused kernel memory: 412K"},
		{"<6>[12345.000001] eth0: link up", "eth0: link up"},
		// Addresses, as firmware, the kernel and wget print them.
		{"CLIENT IP: 192.0.2.10  MASK: 255.255.255.0  DHCP IP: 127.0.0.1", "CLIENT IP: <IP4> MASK: <IP4> DHCP IP: <IP4>"},
		{"Connecting to 127.0.0.1:39919... connected.", "Connecting to <IP4>:<PORT>... connected."},
		{"inet6 fe80::42:acff:fe11:2/64 scope link", "inet6 <IP6>/64 scope link"},
		{"ping ::1 and 2001:db8::8a2e:370:7334", "ping <IP6> and <IP6>"},
		{"std::vector<int> at 12:34", "std::vector<int> at 12:34"},
		{"BOOTIF=01-02-42-dd-30-25-94 hw 02:42:DD:30:25:94", "BOOTIF=01-<MAC> hw <MAC>"},
		{"CLIENT MAC ADDR: 02 42 DD 30 25 94  GUID: 00000000-0000-0000-0000-0242DD302594", "CLIENT MAC ADDR: <MAC> GUID: <UUID>"},
		// A hex dump is no MAC address.
		{"0000: 00 11 22 33 44 55 66 77 88", "0000: 00 11 22 33 44 55 66 77 88"},
		// Times and durations.
		{"Wed Dec  2 03:18:40 UTC 2026", "Wed Dec 2 <TIME> UTC 2026"},
		{"started 2026-12-02T03:18:40.123Z ok", "started <TIME> ok"},
		{"4194304 bytes (4.0MB) copied, 0.004576 seconds, 874.1MB/s", "4194304 bytes (4.0MB) copied, <DUR>, <DUR>"},
		{"stage deploy: pass (253ms)", "stage deploy: pass (<DUR>)"},
		// Nonces, digests and pointers; decimal numbers stay.
		{"Loading f41e8a56fe98e11a/vmlinuz...ok", "Loading <HEX>/vmlinuz...ok"},
		{"BASALT-f9a04a90-1-E:0", "BASALT-<HEX>-1-E:0"},
		{"PC is at 0xffff800010a1b2c4 [<ffffffff81234567>]", "PC is at 0x<HEX> [<<HEX>>]"},
		{"BASALT-32658368-1-S; echo BAS\"\"ALT-32658368-2-S; /tmp/basalt-fetch-12345678-5 basalt.nonce=1234567890123456", "BASALT-<HEX>-1-S; echo BAS\"\"ALT-<HEX>-2-S; /tmp/basalt-fetch-<HEX>-5 basalt.nonce=<HEX>"},
		{"4194304 records 12345678", "4194304 records 12345678"},
		// What a terminal shows: after the last CR, no escapes.
		{"10%\r50%\r100% done\r\n", "100% done"},
		{"\x1b[1;32mOK\x1b[0m   mounted", "OK mounted"},
		{"   \t  ", ""},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNotable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"WARNING: CPU: 0 PID: 1 at kernel/foo.c:12", true},
		{"Internal error: Oops: 96000004 [#1] SMP", true},
		{"Call Trace:", true},
		{"BUG: unable to handle page fault", true},
		{"Kernel panic - not syncing: VFS", true},
		{"mmc0: error -110 whilst initialising", true},
		{"Freeing unused kernel memory", false},
		{"warnings=0 terrors", false},
	} {
		if got := Notable(Normalize(tc.in)); got != tc.want {
			t.Errorf("Notable(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// Normalize never panics, returns one line of valid UTF-8 without control
// characters, no longer than it reads, and is idempotent (for lines it reads whole): a normalised
// line normalises to itself, so both sides of a diff compare alike
// whatever they held.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"[    1.234567] Freeing unused kernel memory: 412K",
		"CLIENT MAC ADDR: 02 42 DD 30 25 94  GUID: 00000000-0000-0000-0000-0242DD302594",
		"inet6 fe80::42:acff:fe11:2/64 scope link",
		"Connecting to 127.0.0.1:39919",
		"10%\r50%\r100% done\r\n",
		"\x1b[1;32mOK\x1b[0m \xff\xfe",
		"0.004576 seconds, 874.1MB/s 2026-12-02T03:18:40Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Normalize(s)
		if strings.ContainsAny(got, "\n\r\x1b\x00") || !utf8.ValidString(got) {
			t.Fatalf("Normalize(%q) = %q: a control character or invalid UTF-8", s, got)
		}
		if len(got) > 4*MaxNormalizedLine {
			t.Fatalf("Normalize(%q) is %d bytes, more than it reads", s, len(got))
		}
		// (A line that grew past what Normalize reads, with invalid bytes
		// made U+FFFD, is cut again the second time.)
		if again := Normalize(got); len(got) <= MaxNormalizedLine && again != got {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q: not idempotent", s, got, got, again)
		}
	})
}

// BenchmarkNormalize measures a kernel console line: a 50 MB console is
// about 600 000 of them.
func BenchmarkNormalize(b *testing.B) {
	line := "[ 1997.082044] eth0: rx packet 400000 from 192.0.2.46 at 0x52bae0fa814a526a len 1000 in 0.004 seconds"
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		Normalize(line)
	}
}
