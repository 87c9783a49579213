// Package ipmitest checks that an [ipmi.Controller] keeps the rules written
// on the interface, in the style of testing/fstest.TestFS and
// golang.org/x/net/nettest.TestConn: [TestController] runs the same checks
// over any implementation, so a new driver (or a change to one) is held to
// the contract by one call.
//
// package ipmi runs it over its Client against the sim BMC (bmcsim) and
// against OpenIPMI's ipmi_sim, and over Fake.
package ipmitest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/ipmi"
)

// BMC is the far end of a Controller under test: what the suite can ask
// of it beyond the Controller itself.
type BMC interface {
	// Boot returns the boot override the BMC holds for the next boot (""
	// for none: the node's own boot order) and whether it is persistent.
	// ok is false when this BMC cannot report it; the suite then skips
	// the checks that need it.
	Boot() (dev ipmi.Device, persistent, ok bool)
	// Silence makes the BMC stop answering for the rest of the test (it
	// drops every datagram, or its process is gone).
	Silence()
	// Secret is the password the Controller holds: no error may hold it.
	// "" when there is none.
	Secret() string
	// Quirks lists what this BMC, within IPMI v2.0, does not do.
	Quirks() Quirks
}

// Quirks are the ways a real BMC may fall short of the whole of IPMI
// v2.0 while a Controller keeps its rules; each names the peer it comes
// from. The zero value is a BMC that does everything the suite checks.
type Quirks struct {
	// SelectorOnly: the BMC keeps the boot device selector but neither the
	// valid bit nor the persistent bit of the boot flags (IPMI v2.0 Table
	// 28-14), so Boot reports the device last set and persistent=false,
	// used up or not. OpenIPMI's ipmi_sim keeps only what its
	// chassis_control program stores ("boot:pxe").
	SelectorOnly bool
	// NoSoft: the BMC refuses chassis control 5, soft shutdown (IPMI v2.0
	// Table 28-4), of an on node; Power(ctx, Soft) then fails as an
	// infrastructure error. ipmi_sim answers FFh.
	NoSoft bool
}

// NewController returns a fresh Controller over a BMC whose node is off,
// both cleaned up at the end of t.
type NewController func(t *testing.T) (ipmi.Controller, BMC)

// grace bounds how long past its context's end a call may take before the
// suite calls it a hang. It is not a speed check: a call that keeps its
// deadline returns far sooner.
const grace = 5 * time.Second

// callTimeout is the deadline of each call the suite makes.
const callTimeout = 30 * time.Second

// TestController checks every rule of [ipmi.Controller] over controllers
// made by newController, one per subtest.
func TestController(t *testing.T, newController NewController) {
	t.Run("PowerIdempotent", func(t *testing.T) { testPowerIdempotent(t, newController) })
	t.Run("ResetCycleBoot", func(t *testing.T) { testResetCycle(t, newController) })
	t.Run("Soft", func(t *testing.T) { testSoft(t, newController) })
	t.Run("BootDevice", func(t *testing.T) { testBootDevice(t, newController) })
	t.Run("UnknownIsJobError", func(t *testing.T) { testUnknown(t, newController) })
	t.Run("CanceledContext", func(t *testing.T) { testCanceled(t, newController) })
	t.Run("SilentBMC", func(t *testing.T) { testSilent(t, newController) })
	t.Run("Close", func(t *testing.T) { testClose(t, newController) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newController) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func power(t *testing.T, ctx context.Context, c ipmi.Controller, a ipmi.Action) {
	t.Helper()
	if err := c.Power(ctx, a); err != nil {
		t.Fatalf("Power(%s) = %v, want nil", a, err)
	}
}

func status(t *testing.T, ctx context.Context, c ipmi.Controller) bool {
	t.Helper()
	on, err := c.PowerStatus(ctx)
	if err != nil {
		t.Fatalf("PowerStatus() = %v", err)
	}
	return on
}

// waitStatus polls PowerStatus until it reports want: after a cycle or a
// soft off the chassis takes its own time (IPMI v2.0 §28.3).
func waitStatus(t *testing.T, ctx context.Context, c ipmi.Controller, want bool, after string) {
	t.Helper()
	builtinstest.WaitFor(t, "PowerStatus() = "+onOff(want)+" after "+after, func() bool {
		on, err := c.PowerStatus(ctx)
		return err == nil && on == want
	})
}

// describe words an error and its class for a failure message.
func describe(err error) string {
	if err == nil {
		return "nil"
	}
	return fmt.Sprintf("%q (class %s)", err, builtins.ClassOf(err))
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// Power on of an on node and off of an off node do not fail, and the
// status follows each action.
func testPowerIdempotent(t *testing.T, newController NewController) {
	c, _ := newController(t)
	ctx := ctxFor(t)
	for _, step := range []struct {
		a    ipmi.Action
		want bool
	}{
		{ipmi.On, true}, {ipmi.On, true}, {ipmi.Off, false}, {ipmi.Off, false}, {ipmi.Soft, false}, {ipmi.On, true},
	} {
		power(t, ctx, c, step.a)
		if got := status(t, ctx, c); got != step.want {
			t.Errorf("after Power(%s): PowerStatus() = %s, want %s", step.a, onOff(got), onOff(step.want))
		}
	}
}

// Reset and Cycle leave the node booting from whatever state: an off node
// is powered on.
func testResetCycle(t *testing.T, newController NewController) {
	c, _ := newController(t)
	ctx := ctxFor(t)
	for _, a := range []ipmi.Action{ipmi.Reset, ipmi.Cycle} {
		for _, from := range []ipmi.Action{ipmi.Off, ipmi.On} {
			power(t, ctx, c, from)
			power(t, ctx, c, a)
			waitStatus(t, ctx, c, true, string(a)+" from "+string(from))
		}
	}
}

// Soft returns once the request is delivered, from on and from off.
func testSoft(t *testing.T, newController NewController) {
	c, bmc := newController(t)
	ctx := ctxFor(t)
	power(t, ctx, c, ipmi.On)
	if bmc.Quirks().NoSoft {
		err := c.Power(ctx, ipmi.Soft)
		if err == nil || builtins.ClassOf(err) != builtins.ClassInfra || !strings.Contains(err.Error(), "soft") {
			t.Errorf("Power(soft) to a BMC that refuses it = %s, want an infrastructure error naming the command", describe(err))
		}
	} else {
		power(t, ctx, c, ipmi.Soft)
	}
	// The node's OS decides when it goes off, so nothing more is
	// asserted about an on node; one that is off stays off.
	power(t, ctx, c, ipmi.Off)
	power(t, ctx, c, ipmi.Soft)
	if status(t, ctx, c) {
		t.Errorf("after Power(soft) of an off node: PowerStatus() = on, want off")
	}
}

// SetBootDevice reaches the BMC; a next-boot setting is used up by the
// next boot, a persistent one stays.
func testBootDevice(t *testing.T, newController NewController) {
	c, bmc := newController(t)
	ctx := ctxFor(t)
	if _, _, ok := bmc.Boot(); !ok {
		t.Skip("this BMC cannot report its boot override")
	}
	check := func(when string, wantDev ipmi.Device, wantPersistent bool) {
		t.Helper()
		dev, persistent, _ := bmc.Boot()
		if dev != wantDev || persistent != wantPersistent {
			t.Errorf("%s: BMC boot override = %q persistent=%v, want %q persistent=%v", when, dev, persistent, wantDev, wantPersistent)
		}
	}
	selectorOnly := bmc.Quirks().SelectorOnly
	for _, d := range ipmi.Devices {
		for _, p := range []bool{false, true} {
			if err := c.SetBootDevice(ctx, d, ipmi.BootOptions{Persistent: p}); err != nil {
				t.Fatalf("SetBootDevice(%s, persistent=%v) = %v", d, p, err)
			}
			check("after SetBootDevice("+string(d)+")", d, p && !selectorOnly)
		}
	}
	if selectorOnly {
		t.Log("this BMC keeps only the boot device selector: next-boot and persistent lifetimes are not observable")
		return
	}
	power(t, ctx, c, ipmi.On)
	if err := c.SetBootDevice(ctx, ipmi.PXE, ipmi.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	power(t, ctx, c, ipmi.Reset)
	waitStatus(t, ctx, c, true, "reset")
	check("after a next-boot pxe setting and a reset", "", false)

	if err := c.SetBootDevice(ctx, ipmi.Disk, ipmi.BootOptions{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	power(t, ctx, c, ipmi.Reset)
	waitStatus(t, ctx, c, true, "reset")
	check("after a persistent disk setting and a reset", ipmi.Disk, true)
}

// An unknown action or device is the job's mistake.
func testUnknown(t *testing.T, newController NewController) {
	c, _ := newController(t)
	ctx := ctxFor(t)
	// ClassOf(nil) is job too: the error must exist.
	if err := c.Power(ctx, "sideways"); err == nil || builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("Power(sideways) = %s, want a job error", describe(err))
	}
	if err := c.SetBootDevice(ctx, "floppy", ipmi.BootOptions{}); err == nil || builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("SetBootDevice(floppy) = %s, want a job error", describe(err))
	}
}

// calls are the Controller's methods, by name, for checks that hold for
// each.
var calls = []struct {
	name string
	call func(context.Context, ipmi.Controller) error
}{
	{"Power(on)", func(ctx context.Context, c ipmi.Controller) error { return c.Power(ctx, ipmi.On) }},
	{"PowerStatus()", func(ctx context.Context, c ipmi.Controller) error { _, err := c.PowerStatus(ctx); return err }},
	{"SetBootDevice(pxe)", func(ctx context.Context, c ipmi.Controller) error {
		return c.SetBootDevice(ctx, ipmi.PXE, ipmi.BootOptions{})
	}},
}

// bounded runs call and fails the test if it has not returned grace after
// ctx ended.
func bounded(t *testing.T, ctx context.Context, what string, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return err
	case <-time.After(grace):
		t.Fatalf("%s still running %v after its context ended", what, grace)
		return nil
	}
}

// A call on a canceled context returns with the context's error, before
// and after a session exists.
func testCanceled(t *testing.T, newController NewController) {
	c, _ := newController(t)
	for _, warm := range []bool{false, true} {
		if warm {
			status(t, ctxFor(t), c)
		}
		for _, m := range calls {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := bounded(t, ctx, m.name, func() error { return m.call(ctx, c) })
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s on a canceled context (session open: %v) = %v, want context.Canceled", m.name, warm, err)
			}
		}
	}
}

// A BMC that stops answering gives infrastructure errors by the call's
// deadline, without the password.
func testSilent(t *testing.T, newController NewController) {
	c, bmc := newController(t)
	status(t, ctxFor(t), c) // a session the BMC then abandons
	bmc.Silence()
	for _, m := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := bounded(t, ctx, m.name, func() error { return m.call(ctx, c) })
		cancel()
		if err == nil {
			t.Errorf("%s against a silent BMC = nil, want an error", m.name)
			continue
		}
		if cl := builtins.ClassOf(err); cl != builtins.ClassInfra {
			t.Errorf("%s against a silent BMC = %s, want class %s", m.name, describe(err), builtins.ClassInfra)
		}
		if s := bmc.Secret(); s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("%s error holds the password: %v", m.name, err)
		}
	}
}

// Close is idempotent, and later calls fail as infrastructure errors.
func testClose(t *testing.T, newController NewController) {
	c, _ := newController(t)
	ctx := ctxFor(t)
	status(t, ctx, c)
	for i := range 2 {
		if err := c.Close(); err != nil {
			t.Errorf("Close() #%d = %v, want nil", i+1, err)
		}
	}
	for _, m := range calls {
		err := bounded(t, ctx, m.name, func() error { return m.call(ctx, c) })
		if err == nil || builtins.ClassOf(err) != builtins.ClassInfra {
			t.Errorf("%s after Close = %s, want an infrastructure error", m.name, describe(err))
		}
	}
}

// Methods may be called from several goroutines (run with -race).
func testConcurrent(t *testing.T, newController NewController) {
	c, _ := newController(t)
	ctx := ctxFor(t)
	power(t, ctx, c, ipmi.On)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				var err error
				if i%2 == 0 {
					var on bool
					if on, err = c.PowerStatus(ctx); err == nil && !on {
						err = errors.New("PowerStatus() = off while on")
					}
				} else {
					err = c.SetBootDevice(ctx, ipmi.Disk, ipmi.BootOptions{Persistent: true})
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
}
