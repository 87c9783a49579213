package ipmi_test

import (
	"testing"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
	"github.com/basalt-lab/basalt/builtins/sol/soltest"
)

// TestSOLTransportSuite holds IPMI SOL to the rules on sol.Transport,
// against the sim BMC whose serial port is a simulated line.
func TestSOLTransportSuite(t *testing.T) {
	soltest.TestTransport(t, func(t *testing.T) (sol.Transport, soltest.Peer) {
		line := serialsim.New(serialsim.Options{})
		t.Cleanup(func() { line.Close() })
		b := startBMC(t, bmcsim.Config{Serial: line.Host()})
		tr := ipmi.NewSOL("sim", b.IPMI(), ipmi.SOLOptions{})
		return tr, soltest.LinePeer(t, line, b.DropSOL, b.Password())
	})
}
