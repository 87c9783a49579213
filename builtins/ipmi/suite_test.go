package ipmi_test

import (
	"errors"
	"regexp"
	"sync"
	"testing"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/ipmi/ipmitest"
)

// TestControllerSuite holds every Controller to the rules on the
// interface: the Client against the sim BMC and against OpenIPMI's
// ipmi_sim (an independent BMC; skipped only where it is not installed),
// and the Fake other packages' tests rely on.
func TestControllerSuite(t *testing.T) {
	t.Run("Client/bmcsim", func(t *testing.T) {
		ipmitest.TestController(t, func(t *testing.T) (ipmi.Controller, ipmitest.BMC) {
			b := startBMC(t, bmcsim.Config{})
			return newClient(t, b.IPMI(), nil), simBMC{b}
		})
	})
	t.Run("Client/ipmi_sim", func(t *testing.T) {
		ipmitest.TestController(t, func(t *testing.T) (ipmi.Controller, ipmitest.BMC) {
			s := startIPMISim(t, true)
			cfg := s.cfg
			cfg.CipherSuites = []int{3} // ipmi_sim has no 17
			return newClient(t, cfg, nil), &ipmiSimBMC{t: t, s: s}
		})
	})
	t.Run("Fake", func(t *testing.T) {
		ipmitest.TestController(t, func(t *testing.T) (ipmi.Controller, ipmitest.BMC) {
			f := &ipmi.Fake{}
			return f, fakeBMC{f}
		})
	})
}

// simBMC shows the suite what the sim BMC was told.
type simBMC struct{ b *bmcsim.BMC }

func (s simBMC) Boot() (ipmi.Device, bool, bool) {
	dev, p := s.b.BootDevice()
	return ipmi.Device(dev), p, true
}
func (s simBMC) Silence()                { s.b.SetLoss(1) }
func (s simBMC) Secret() string          { return s.b.Password() }
func (s simBMC) Quirks() ipmitest.Quirks { return ipmitest.Quirks{} }

// ipmiSimBMC asks ipmi_sim, through ipmitool, for its boot flags (Get
// System Boot Options parameter 5, IPMI v2.0 §28.13).
type ipmiSimBMC struct {
	t    *testing.T
	s    *simProc
	once sync.Once
}

var (
	bootSelector = regexp.MustCompile(`Boot Device Selector : (.*)`)
	bootDevices  = map[string]ipmi.Device{
		"Force PXE": ipmi.PXE, "Force Boot from default Hard-Drive": ipmi.Disk,
		"Force Boot into BIOS Setup": ipmi.BIOS, "Force Boot from CD/DVD": ipmi.CDROM,
	}
)

func (s *ipmiSimBMC) Boot() (ipmi.Device, bool, bool) {
	out, err := ipmitool(s.s.cfg, "3", "chassis", "bootparam", "get", "5")
	if err != nil {
		s.t.Errorf("ipmitool chassis bootparam get 5: %v", err)
		return "", false, false
	}
	m := bootSelector.FindStringSubmatch(out)
	if m == nil {
		s.t.Errorf("bootparam 5 without a boot device selector:\n%s", out)
		return "", false, false
	}
	// ipmi_sim reads back the valid and persistent bits clear (see
	// Quirks.SelectorOnly): the selector is all there is.
	return bootDevices[m[1]], false, true
}

func (s *ipmiSimBMC) Silence() {
	s.once.Do(func() {
		s.s.cmd.Process.Kill() // by PID: the process this test started
		s.s.cmd.Wait()
	})
}

func (s *ipmiSimBMC) Secret() string { return s.s.cfg.Password.Value() }

// Quirks: OpenIPMI's ipmi_sim (openipmi 2.0) stores boot flags through its
// chassis_control program, which knows only the selector, and answers
// soft shutdown with FFh; ipmitool sees the same ("chassis bootdev disk
// options=persistent" reads back "Boot Flag Invalid", "chassis power soft"
// fails with "Unspecified error").
func (s *ipmiSimBMC) Quirks() ipmitest.Quirks {
	return ipmitest.Quirks{SelectorOnly: true, NoSoft: true}
}

// fakeBMC shows the suite the Fake's own fields. The suite reads them
// only while no call runs.
type fakeBMC struct{ f *ipmi.Fake }

func (b fakeBMC) Boot() (ipmi.Device, bool, bool) { return b.f.Boot, b.f.BootPersistent, true }
func (b fakeBMC) Silence()                        { b.f.Err = errors.New("the BMC does not answer") }
func (b fakeBMC) Secret() string                  { return "" }
func (b fakeBMC) Quirks() ipmitest.Quirks         { return ipmitest.Quirks{} }
