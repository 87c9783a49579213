package ipmi_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"go.starlark.net/starlark"
)

// refusedCode is the completion code of a power on the chassis refused.
func refusedCode(t *testing.T, c *ipmi.Client) ipmi.CompletionCode {
	t.Helper()
	err := c.Power(ctxT(t, 30*time.Second), ipmi.On)
	var e *ipmi.Error
	if !errors.As(err, &e) || !e.Answered {
		t.Fatalf("Power(on) of a chassis that refuses = %v, want a completion code", err)
	}
	if e.Code == 0 {
		t.Fatalf("Power(on) of a chassis that refuses answered completion code 00h")
	}
	return e.Code
}

// TestBMCRefusedPowerOn: a node that refuses power on makes the sim BMC
// fail the Chassis Control request with a completion code, which the
// client sees and ipmi.power("on") names; the chassis stays off and the
// next-boot override stays for the next try.
func TestBMCRefusedPowerOn(t *testing.T) {
	n := &node{refuseOn: errors.New("power supply failed")}
	b := startBMC(t, bmcsim.Config{Node: n})
	c := newClient(t, b.IPMI(), nil)
	ctx := ctxT(t, 30*time.Second)
	if err := c.SetBootDevice(ctx, ipmi.PXE, ipmi.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if code := refusedCode(t, c); code != 0xff {
		t.Errorf("completion code of a refused power on = %02Xh, want FFh (unspecified, as ipmi_sim answers)", uint8(code))
	}
	if b.PowerState() {
		t.Error("chassis on after the node refused power on")
	}
	if dev, _ := b.BootDevice(); dev != bmcsim.BootPXE {
		t.Errorf("boot device after a refused power on = %s, want pxe (not consumed)", dev)
	}

	thread := newThread(t, ctx, c)
	_, err := starlark.Call(thread, ipmi.Table.Module().Members["power"], starlark.Tuple{starlark.String("on")}, nil)
	if err == nil {
		t.Fatal(`ipmi.power("on") of a chassis that refuses succeeded`)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "ipmi.power: ") || !strings.Contains(msg, "chassis control (power on): BMC answered completion code FFh") {
		t.Errorf(`ipmi.power("on") = %q, want it to name the command and completion code FFh`, msg)
	}
	if c := builtins.ClassOf(err); c != builtins.ClassInfra {
		t.Errorf(`class of ipmi.power("on") refused by the BMC = %s, want infra (a BMC's answer, README "Exit codes")`, c)
	}

	// The chassis powers on once the node accepts.
	n.mu.Lock()
	n.refuseOn = nil
	n.mu.Unlock()
	if err := c.Power(ctx, ipmi.On); err != nil {
		t.Fatalf("Power(on) after the node accepts = %v", err)
	}
	if !b.PowerState() {
		t.Error("chassis off after an accepted power on")
	}
}

// TestBMCRefusedPowerOnLikeIPMISim: OpenIPMI's ipmi_sim, whose
// chassis_control program fails to power on, answers the same completion
// code as the sim BMC whose node refuses.
func TestBMCRefusedPowerOnLikeIPMISim(t *testing.T) {
	cfg, dir := ipmiSim(t, true)
	if err := os.WriteFile(filepath.Join(dir, "refuse_power_on"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	want := refusedCode(t, newClient(t, cfg, nil))

	b := startBMC(t, bmcsim.Config{Node: &node{refuseOn: errors.New("power supply failed")}})
	if got := refusedCode(t, newClient(t, b.IPMI(), nil)); got != want {
		t.Errorf("sim BMC answers a refused power on with %02Xh, ipmi_sim with %02Xh", uint8(got), uint8(want))
	}
	t.Logf("ipmi_sim and the sim BMC refuse power on with %02Xh", uint8(want))
}
