package target

import (
	"io"
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

// BenchmarkFetch measures a whole fetch of a 1 MiB file from the sim
// target: the copy and its sha256sum on the target, the httpd started on a
// free port and proven by its nonce, the download, the httpd stopped.
func BenchmarkFetch(b *testing.B) {
	r := newRig(b)
	data := randomBytes(b, 1<<20)
	r.putTargetFile("root/bench.bin", data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := r.tgt.Fetch(r.ctx, "/root/bench.bin", "", io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
