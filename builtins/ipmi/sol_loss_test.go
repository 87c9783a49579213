package ipmi_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
)

// gapEvents records the console_gap events a SOL transport emits.
type gapEvents struct {
	mu   sync.Mutex
	gaps []map[string]any
}

func (e *gapEvents) emit(typ string, f map[string]any) {
	if typ != "console_gap" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gaps = append(e.gaps, f)
}

func (e *gapEvents) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.gaps)
}

// TestSOLLossLosesNothing streams console output and keystrokes through a
// BMC that drops datagrams. With sequence numbers, acknowledgements and
// retransmission on both sides (IPMI v2.0 §15.9-§15.11), loss only slows
// the console down: every byte arrives once, in order, and no gap is seen.
func TestSOLLossLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name          string
		loss, solLoss float64
	}{
		{"udp_loss=0.05", 0.05, 0},
		{"udp_loss=0.2", 0.2, 0},
		{"sol_loss=0.3", 0, 0.3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := newSerial(t)
			b := startBMC(t, bmcsim.Config{Serial: line, Loss: tc.loss, SOLLoss: tc.solLoss})
			ev := &gapEvents{}
			cfg := b.IPMI()
			cfg.Timeout = 100 * time.Millisecond
			cfg.Retries = 10
			tr := ipmi.NewSOL("sim", cfg, ipmi.SOLOptions{Emit: ev.emit})
			ctx := ctxT(t, 60*time.Second)
			var conn interface {
				Read([]byte) (int, error)
				Write([]byte) (int, error)
				Close() error
			}
			var err error
			for range 5 { // activation itself may be lost
				if conn, err = tr.Open(ctx); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			var want strings.Builder
			for i := range 300 {
				fmt.Fprintf(&want, "line %04d of the node's console output\r\n", i)
			}
			want.WriteString("END\r\n")
			line.Print(want.String())
			got := readUntil(t, conn, "END\r\n")
			if got != want.String() {
				t.Errorf("console output differs: got %d bytes, want %d; first difference at byte %d",
					len(got), want.Len(), firstDiff(got, want.String()))
			}

			var typed strings.Builder
			for i := range 40 {
				s := fmt.Sprintf("k%02d ", i)
				typed.WriteString(s)
				if _, err := conn.Write([]byte(s)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			waitFor(t, "all keystrokes on the serial line", func() bool { return len(line.Typed()) >= typed.Len() })
			if got := line.Typed(); got != typed.String() {
				t.Errorf("serial line got keystrokes %q, want %q", got, typed.String())
			}
			if g, ok := conn.(interface{ Gaps() uint64 }); !ok {
				t.Errorf("SOL connection does not report gaps")
			} else if n := g.Gaps(); n != 0 {
				t.Errorf("Gaps() = %d, want 0", n)
			}
			if n := ev.count(); n != 0 {
				t.Errorf("%d console_gap events, want 0", n)
			}
		})
	}
}

func firstDiff(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}

// TestSOLKeepsOutputBeyondBuffer: what the node prints while no console
// is attached, more than the sim BMC's buffer holds, all reaches the next
// console: the BMC stops reading the line when its buffer is full (flow
// control, as ipmi_sim) instead of dropping output nobody will hear of.
func TestSOLKeepsOutputBeyondBuffer(t *testing.T) {
	line := newSerial(t)
	b := startBMC(t, bmcsim.Config{Serial: line})
	tr := ipmi.NewSOL("sim", b.IPMI(), ipmi.SOLOptions{})
	ctx := ctxT(t, 60*time.Second)
	conn, err := tr.Open(ctx) // the BMC starts reading its serial port
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	var want strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&want, "line %05d printed while no console listens\r\n", i)
	}
	want.WriteString("END\r\n")
	line.Print(want.String()) // about 230 KB, more than the BMC's 64 KiB
	time.Sleep(200 * time.Millisecond)

	conn, err = tr.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := readUntil(t, conn, "END\r\n")
	if got != want.String() {
		t.Errorf("console output differs: got %d bytes, want %d; first difference at byte %d",
			len(got), want.Len(), firstDiff(got, want.String()))
	}
}
