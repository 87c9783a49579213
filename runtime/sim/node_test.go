package sim

import (
	"context"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/lab"
)

// A sim device file that sets ipmi_timeout_ms or ipmi_retries away from the
// lab defaults keeps them; otherwise the sim's loopback figures apply.
func TestNodeIPMITiming(t *testing.T) {
	for _, tc := range []struct {
		name        string
		timeout     time.Duration
		retries     int
		wantTimeout time.Duration
		wantRetries int
	}{
		{"lab defaults", lab.DefaultIPMITimeout, lab.DefaultIPMIRetries, 500 * time.Millisecond, 4},
		{"unset", 0, 0, 500 * time.Millisecond, 4},
		{"device file", 300 * time.Millisecond, 2, 300 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := lab.BuiltinSim("sim")
			dev.IPMI.Timeout, dev.IPMI.Retries = tc.timeout, tc.retries
			n, err := Start(context.Background(), Config{Device: dev, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			got := n.IPMI()
			if got.Timeout != tc.wantTimeout || got.Retries != tc.wantRetries {
				t.Errorf("IPMI() with timeout %s, retries %d = %s, %d, want %s, %d",
					tc.timeout, tc.retries, got.Timeout, got.Retries, tc.wantTimeout, tc.wantRetries)
			}
			if got.Port == 0 || got.Password.Value() == "" {
				t.Errorf("IPMI() = port %d, password set %t; want the BMC's", got.Port, got.Password.Value() != "")
			}
		})
	}
}
