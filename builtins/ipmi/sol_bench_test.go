package ipmi_test

import (
	"io"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
)

// echoLine is a serial line whose node echoes every keystroke, as a tty
// in canonical mode does.
type echoLine struct {
	r    *io.PipeReader
	w    *io.PipeWriter
	keys chan []byte
}

func newEchoLine(b *testing.B) *echoLine {
	r, w := io.Pipe()
	l := &echoLine{r: r, w: w, keys: make(chan []byte, 1024)}
	go func() {
		for k := range l.keys {
			w.Write(k)
		}
	}()
	b.Cleanup(func() { close(l.keys); w.Close() })
	return l
}

func (l *echoLine) Read(p []byte) (int, error) { return l.r.Read(p) }
func (l *echoLine) Write(p []byte) (int, error) {
	l.keys <- append([]byte(nil), p...)
	return len(p), nil
}

// BenchmarkSOLEcho is the round trip of one keystroke over SOL through the
// sim BMC and back as its echo: what every console exchange costs on top
// of the device. It was bounded below by go-ipmi's 100 ms poll.
func BenchmarkSOLEcho(b *testing.B) {
	bmc := startBMC(b, bmcsim.Config{Serial: newEchoLine(b)})
	ctx := ctxT(b, time.Minute)
	conn, err := ipmi.NewSOL("sim", bmc.IPMI(), ipmi.SOLOptions{}).Open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 16)
	start := time.Now()
	for b.Loop() {
		if _, err := conn.Write([]byte("x")); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf[:1]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/echo")
}
