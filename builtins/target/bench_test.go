package target

import (
	"testing"
)

// BenchmarkRun measures framed commands through the real console code and
// the sim shell.
func BenchmarkRun(b *testing.B) {
	r := newRig(b)
	for b.Loop() {
		if _, err := r.tgt.Run(r.ctx, "echo hello", true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
}

// BenchmarkOutput measures the parsing of a command's output with kernel
// messages in it.
func BenchmarkOutput(b *testing.B) {
	f := newFrame("bench", 1)
	stream := consoleStream(f, "seq 1 10000", seqOutput(10000), 0, 0x8000000080000000)
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		if _, ok := parseStream(b, f, stream, 4096); !ok {
			b.Fatal("no match")
		}
	}
}
