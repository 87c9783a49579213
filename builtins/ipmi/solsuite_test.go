package ipmi_test

import (
	"fmt"
	"syscall"
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
		line := serialsim.New(serialsim.Config{})
		t.Cleanup(func() { line.Close() })
		b := startBMC(t, bmcsim.Config{Serial: line.Host()})
		tr := ipmi.NewSOL("sim", b.IPMI(), ipmi.SOLOptions{})
		return tr, silentSim{soltest.LinePeer(t, line, b.DropSOL, b.Password()), b}
	})
}

// silentSim is the sim BMC's serial line; Silence makes the BMC drop
// every datagram.
type silentSim struct {
	soltest.Peer
	b *bmcsim.BMC
}

func (s silentSim) Silence() { s.b.SetLoss(1) }

// TestSOLTransportSuiteIPMISim holds IPMI SOL to the same rules against
// OpenIPMI's ipmi_sim, an independent BMC, whose serial device is a TCP
// console ("sol tcp:..." in lan.conf, ipmi_lan(5)). The peer drops the
// session as another console taking over does: `ipmitool sol deactivate`.
func TestSOLTransportSuiteIPMISim(t *testing.T) {
	soltest.TestTransport(t, func(t *testing.T) (sol.Transport, soltest.Peer) {
		addr, serialEnd := soltest.TCPPeer(t)
		s := startIPMISimWith(t, true, fmt.Sprintf("  sol \"tcp:%s\" 115200\n", addr))
		cfg := s.cfg
		cfg.CipherSuites = []int{3} // ipmi_sim has no 17
		tr := ipmi.NewSOL("ipmi_sim", cfg, ipmi.SOLOptions{})
		return tr, &deactivatingPeer{Peer: serialEnd, t: t, s: s}
	})
}

// deactivatingPeer is ipmi_sim's serial device, whose Drop deactivates the
// SOL payload through a second session, as ipmitool does for a user.
type deactivatingPeer struct {
	soltest.Peer
	t *testing.T
	s *simProc
}

func (p *deactivatingPeer) Drop() {
	if out, err := ipmitool(p.s.cfg, "3", "sol", "deactivate"); err != nil {
		p.t.Errorf("ipmitool sol deactivate: %v: %s", err, out)
	}
}

// Silence stops ipmi_sim (SIGSTOP, by PID: the process this test
// started); the cleanup's SIGKILL ends it.
func (p *deactivatingPeer) Silence() {
	if err := p.s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Errorf("stop ipmi_sim: %v", err)
	}
}

func (p *deactivatingPeer) Secrets() []string { return []string{p.s.cfg.Password.Value()} }
