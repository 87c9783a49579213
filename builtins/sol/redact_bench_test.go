package sol

import (
	"context"
	"io"
	"testing"

	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/runtime/bundle"
)

// BenchmarkConsoleCaptureRedacted is BenchmarkConsole's basalt-100MB run
// with the capture a run has: console.log through the bundle's streaming
// redactor, holding a secret whose escaped forms all differ — the cost the
// redactor adds to the console path.
func BenchmarkConsoleCaptureRedacted(b *testing.B) {
	block := kernelLog(1 << 20)
	const size = 100 << 20
	r := bundle.NewRedactor(`p"a\ss<w>&'rd`, "hunter2-s3cr3t")
	measure(b, size, func() {
		pr, pw := io.Pipe()
		go feedStream(pw, block, size)
		capture := bundle.NewStreamWriter(r, io.Discard)
		c := New(pipeTransport{pr}, Options{ErrorPatterns: lavaErrors, Capture: capture})
		if err := c.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		m, err := c.Expect(context.Background(), expect.Literal(benchMarker))
		if err != nil || m.Text != benchMarker {
			b.Fatalf("Expect = %q, %v", m.Text, err)
		}
		c.Close()
		pr.Close()
		capture.Flush()
	})
}
