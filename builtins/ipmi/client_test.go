package ipmi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/google/go-cmp/cmp"
)

func TestClientPowerAndBoot(t *testing.T) {
	n := &node{}
	b := startBMC(t, bmcsim.Config{Node: n})
	ev := &events{}
	c := newClient(t, b.IPMI(), ev)
	ctx := ctxT(t, 30*time.Second)

	on, err := c.PowerStatus(ctx)
	if err != nil || on {
		t.Fatalf("PowerStatus() = %v, %v, want false, nil", on, err)
	}
	if err := c.SetBootDevice(ctx, ipmi.PXE, ipmi.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if dev, p := b.BootDevice(); dev != bmcsim.BootPXE || p {
		t.Errorf("BMC boot device = %v, %v, want pxe, false", dev, p)
	}
	for _, a := range []ipmi.Action{ipmi.On, ipmi.On, ipmi.Reset, ipmi.Off, ipmi.Off, ipmi.Cycle, ipmi.Cycle} {
		if err := c.Power(ctx, a); err != nil {
			t.Fatalf("Power(%s) = %v", a, err)
		}
	}
	want := []string{"on:pxe", "reset:default", "off", "on:default", "off", "on:default"}
	if diff := cmp.Diff(want, n.take()); diff != "" {
		t.Errorf("node events (-want +got):\n%s", diff)
	}
	on, err = c.PowerStatus(ctx)
	if err != nil || !on {
		t.Fatalf("PowerStatus() = %v, %v, want true, nil", on, err)
	}
	t.Log(ev.commands())
}

func TestClientReusesSessionAndReopens(t *testing.T) {
	b := startBMC(t, bmcsim.Config{})
	ev := &events{}
	cfg := b.IPMI()
	cfg.Timeout, cfg.Retries = 100*time.Millisecond, 1
	c := newClient(t, cfg, ev)
	ctx := ctxT(t, 30*time.Second)
	for range 3 {
		if _, err := c.PowerStatus(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The BMC restarts on the same port: it no longer knows the session.
	addr := b.Addr().String()
	b.Close()
	b2 := bmcsim.New(bmcsim.Config{User: b.User(), Password: b.Password()})
	if err := b2.Start(ctx, addr); err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := c.Power(ctx, ipmi.On); err != nil {
		t.Fatalf("Power(on) after BMC restart = %v", err)
	}
	if !b2.PowerState() {
		t.Errorf("restarted BMC power = off, want on")
	}
	want := []string{
		"open session=ok", "get chassis status=ok", "get chassis status=ok", "get chassis status=ok",
		"open session=ok", "chassis control (power on)=ok",
	}
	if diff := cmp.Diff(want, ev.commands()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	all := ev.Events("ipmi")
	last := all[len(all)-1]
	if last["attempts"] != 2 || last["completion_code"] != 0 || last["device"] != "sim" {
		t.Errorf("last event = %v, want attempts 2, completion_code 0, device sim", last)
	}
}

func TestClientWrongPassword(t *testing.T) {
	b := startBMC(t, bmcsim.Config{Password: "correct-horse"})
	cfg := b.IPMI()
	cfg.Password = lab.NewSecret("BMC_PW", "battery-staple")
	ev := &events{}
	c := newClient(t, cfg, ev)
	_, err := c.PowerStatus(ctxT(t, 10*time.Second))
	if err == nil {
		t.Fatal("PowerStatus with a wrong password succeeded")
	}
	msg := err.Error()
	for _, want := range []string{`device "sim"`, "authentication failed", "wrong user or password", `user "admin"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "battery-staple") || strings.Contains(ev.String(), "battery-staple") {
		t.Errorf("the password leaked: %q", msg)
	}
	if builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("class = %s, want infra", builtins.ClassOf(err))
	}
	var e *ipmi.Error
	if !errors.As(err, &e) || !e.Auth {
		t.Errorf("error %#v is not an authentication *ipmi.Error", err)
	}
}

func TestCompletionCodeString(t *testing.T) {
	tests := []struct {
		code ipmi.CompletionCode
		want string
	}{
		{0x00, "00h (success)"},
		{0xC0, "C0h (node busy)"},
		{0xC3, "C3h (timeout while processing command)"},
		{0xD4, "D4h (insufficient privilege level)"},
		{0xD5, "D5h (command not supported in present state)"},
		{0xFF, "FFh (unspecified error)"},
		{0x81, "81h (command-specific error)"},
		{0x01, "01h (OEM code)"},
		{0xE0, "E0h (reserved code)"},
	}
	for _, tt := range tests {
		if got := tt.code.String(); got != tt.want {
			t.Errorf("CompletionCode(%#x).String() = %q, want %q", uint8(tt.code), got, tt.want)
		}
	}
	e := &ipmi.Error{Device: "sim", Command: "set boot device pxe", Answered: true, Code: 0x80}
	want := `device "sim": set boot device pxe: BMC answered completion code 80h (parameter not supported)`
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestParse(t *testing.T) {
	for _, a := range ipmi.Actions {
		if got, err := ipmi.ParseAction(string(a)); got != a || err != nil {
			t.Errorf("ParseAction(%q) = %q, %v, want %q, nil", a, got, err, a)
		}
	}
	for _, d := range ipmi.Devices {
		if got, err := ipmi.ParseDevice(string(d)); got != d || err != nil {
			t.Errorf("ParseDevice(%q) = %q, %v, want %q, nil", d, got, err, d)
		}
	}
	if _, err := ipmi.ParseAction("ON"); err == nil {
		t.Errorf("ParseAction(%q) succeeded, want an error", "ON")
	}
	if _, err := ipmi.ParseDevice(""); err == nil {
		t.Errorf("ParseDevice(%q) succeeded, want an error", "")
	}
}

func TestClientDeadBMC(t *testing.T) {
	b := startBMC(t, bmcsim.Config{})
	c := newClient(t, b.IPMI(), nil)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.PowerStatus(ctx); err != nil {
		t.Fatal(err)
	}
	b.SetLoss(1) // the BMC stops answering, on an open session
	callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := c.Power(callCtx, ipmi.Off)
	if err == nil {
		t.Fatal("Power(off) on a silent BMC succeeded")
	}
	if builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("class of %q = %s, want infra", err, builtins.ClassOf(err))
	}
	if !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("error %q does not say the BMC did not answer", err)
	}
	// It heals: the next call opens a new session.
	b.SetLoss(0)
	if err := c.Power(ctx, ipmi.On); err != nil {
		t.Fatalf("Power(on) after the BMC came back = %v", err)
	}
}

// TestClientLossyNetwork runs 100 operations with 30 % of the datagrams
// lost each way.
func TestClientLossyNetwork(t *testing.T) {
	n := &node{}
	b := startBMC(t, bmcsim.Config{Node: n, Loss: 0.3})
	cfg := b.IPMI()
	cfg.Timeout, cfg.Retries = 30*time.Millisecond, 12
	c := newClient(t, cfg, nil)
	ctx := ctxT(t, 2*time.Minute)
	on := false
	for i := range 100 {
		var err error
		switch i % 4 {
		case 0:
			on = !on
			a := ipmi.Off
			if on {
				a = ipmi.On
			}
			err = c.Power(ctx, a)
		case 1, 3:
			var got bool
			got, err = c.PowerStatus(ctx)
			if err == nil && got != on {
				t.Fatalf("op %d: PowerStatus() = %v, want %v", i, got, on)
			}
		case 2:
			d := []ipmi.Device{ipmi.PXE, ipmi.Disk}[i/4%2]
			err = c.SetBootDevice(ctx, d, ipmi.BootOptions{Persistent: true})
			if got, _ := b.BootDevice(); err == nil && string(got) != string(d) {
				t.Fatalf("op %d: BMC boot device = %s, want %s", i, got, d)
			}
		}
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
}

// TestClientKeepsIdleSessionAlive: a BMC that forgets sessions silent for
// 4 s (ipmi_sim does after 30 s) keeps the Client's session through 9 s of
// idleness, because the Client keeps it alive.
func TestClientKeepsIdleSessionAlive(t *testing.T) {
	t.Parallel()
	b := startBMC(t, bmcsim.Config{SessionTimeout: 4 * time.Second})
	ev := &events{}
	cfg := b.IPMI()
	cfg.Keepalive = time.Second
	c := newClient(t, cfg, ev)
	ctx := ctxT(t, time.Minute)
	if err := c.Power(ctx, ipmi.On); err != nil {
		t.Fatal(err)
	}
	time.Sleep(9 * time.Second)
	if err := c.Power(ctx, ipmi.Off); err != nil {
		t.Fatal(err)
	}
	want := []string{"open session=ok", "chassis control (power on)=ok", "chassis control (power off)=ok"}
	if diff := cmp.Diff(want, ev.commands()); diff != "" {
		t.Errorf("events after 9 s idle (-want +got):\n%s", diff)
	}
}

// TestClientForgottenSession: without a keepalive, a session the BMC has
// forgotten — timed out, or lost in a BMC restart — costs the next call one
// datagram on it, then a new session; not the whole retry budget, nor even
// one datagram timeout: each call has half of one.
func TestClientForgottenSession(t *testing.T) {
	t.Parallel()
	b := startBMC(t, bmcsim.Config{SessionTimeout: 4 * time.Second})
	addr := b.Addr().String()
	r := newRelay(t, addr)
	ev := &events{}
	cfg := b.IPMI()
	cfg.Port, cfg.Keepalive, cfg.Timeout = r.Port(), -1, 3*time.Second
	c := newClient(t, cfg, ev)
	ctx := ctxT(t, time.Minute)
	if _, err := c.PowerStatus(ctx); err != nil {
		t.Fatal(err)
	}

	check := func(what string) {
		t.Helper()
		before := r.snapshot()
		ev.Reset()
		if err := c.Power(ctxT(t, cfg.Timeout/2), ipmi.On); err != nil {
			t.Fatalf("%s: Power(on) = %v", what, err)
		}
		checkForgotten(t, what, before, r.since(before))
		if want := []string{"open session=ok", "chassis control (power on)=ok"}; !cmp.Equal(want, ev.commands()) {
			t.Errorf("%s: events = %v, want %v", what, ev.commands(), want)
		}
	}

	time.Sleep(8 * time.Second) // the BMC forgets the session, silent for longer than a timeout
	check("after 8 s idle")

	// The BMC restarts on the same port and knows no session.
	b.Close()
	b2 := bmcsim.New(bmcsim.Config{User: b.User(), Password: b.Password()})
	if err := b2.Start(ctx, addr); err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	time.Sleep(2 * cfg.Timeout)
	check("after a BMC restart")
}

// checkForgotten checks the datagrams a call sent per session: one on the
// forgotten session (in before), then the rest of the call on a new one.
func checkForgotten(t *testing.T, what string, before, sent map[session]int) {
	t.Helper()
	if len(sent) != 2 {
		t.Fatalf("%s: datagrams per session = %v, want 2 sessions", what, sent)
	}
	for s, n := range sent {
		if _, old := before[s]; old && n != 1 {
			t.Errorf("%s: %d datagrams on the forgotten session %s, want 1", what, n, s)
		}
	}
}
