package bundle

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// consoleStream returns about n bytes of kernel log lines with the secret
// echoed once every 64 KiB, like a console on which a password is typed.
func consoleStream(n int, secret string) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "[%5d.%06d] usb 1-1: new high-speed USB device number %d using ehci-pci\r\n", i/1000, i%1000*997, i)
		if i%800 == 0 {
			fmt.Fprintf(&b, "Password: %s\r\n", secret)
		}
	}
	return b.Bytes()[:n]
}

// BenchmarkStreamWriter masks a 16 MiB console stream written in 4 KiB
// chunks (the console reader's read size): with no secret, a plain one
// (one form) and a hostile one whose escaped forms all differ.
func BenchmarkStreamWriter(b *testing.B) {
	for _, tc := range []struct{ name, secret string }{
		{"none", ""},
		{"plain", "hunter2-s3cr3t"},
		{"hostile", `p"a\ss<w>&'rd`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			data := consoleStream(16<<20, tc.secret)
			r := NewRedactor(tc.secret)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				w := NewStreamWriter(r, io.Discard)
				for p := data; len(p) > 0; {
					n := min(4096, len(p))
					w.Write(p[:n])
					p = p[n:]
				}
				w.Flush()
			}
		})
	}
}
