package sol_test

import (
	"os/exec"
	"testing"

	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
	"github.com/basalt-lab/basalt/builtins/sol/soltest"
)

// TestTransportSuite holds every console transport of this package to the
// rules on sol.Transport (package ipmi runs the suite over IPMI SOL).
func TestTransportSuite(t *testing.T) {
	t.Run("TCP", func(t *testing.T) {
		soltest.TestTransport(t, func(t *testing.T) (sol.Transport, soltest.Peer) {
			addr, p := soltest.TCPPeer(t)
			return sol.TCP{Addr: addr}, p
		})
	})
	t.Run("Command", func(t *testing.T) {
		// socat is a connection command users run (socat - TCP:host:port)
		// for a console server; its argument here stands for a password
		// on a command line, which String must not show.
		if _, err := exec.LookPath("socat"); err != nil {
			t.Skip("socat not installed (Debian package socat)")
		}
		soltest.TestTransport(t, func(t *testing.T) (sol.Transport, soltest.Peer) {
			const secret = "pw-on-the-command-line"
			addr, p := soltest.TCPPeer(t, secret)
			return sol.Command{Argv: []string{"sh", "-c", `exec socat - "TCP:$1"`, secret, addr}}, p
		})
	})
	t.Run("serialsim", func(t *testing.T) {
		soltest.TestTransport(t, func(t *testing.T) (sol.Transport, soltest.Peer) {
			line := serialsim.New(serialsim.Config{})
			t.Cleanup(func() { line.Close() })
			port := serialsim.Transport(line)
			return port, soltest.LinePeer(t, line, port.DropNow)
		})
	})
}
