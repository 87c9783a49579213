package power_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/power"
)

// recorder writes a script that appends its name and arguments to a log
// file, and returns the path of the log.
func recorder(t *testing.T) (dir, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "ran")
	script := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> " + log + "\n"
	for _, name := range []string{"pdu-on", "pdu-off", "pdu-reset"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, log
}

func ran(t *testing.T, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestCommandsRunArgvWithoutShell(t *testing.T) {
	dir, log := recorder(t)
	c, err := power.NewCommands("foo", "lab/devices/foo.star", map[string]string{
		"on":    dir + `/pdu-on --port 05 "two words" 'a;b'`,
		"off":   dir + "/pdu-off --port 05",
		"reset": dir + "/pdu-reset --port 05",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, a := range []power.Action{power.On, power.Reset, power.Cycle, power.Off} {
		if err := c.Power(ctx, a); err != nil {
			t.Fatalf("Power(%s) = %v, want nil", a, err)
		}
	}
	got := ran(t, log)
	want := []string{"pdu-on --port 05 two words a;b", "pdu-reset --port 05", "pdu-reset --port 05", "pdu-off --port 05"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("commands run = %q, want %q", got, want)
	}
}

func TestCommandsCycleFallsBackToOffOn(t *testing.T) {
	dir, log := recorder(t)
	c, err := power.NewCommands("foo", "", map[string]string{"on": dir + "/pdu-on", "off": dir + "/pdu-off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Power(ctxT(t), power.Cycle); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ran(t, log), "|"); got != "pdu-off |pdu-on " {
		t.Errorf("cycle ran %q, want off then on", got)
	}
}

func TestCommandsMissingActionIsALabError(t *testing.T) {
	dir, log := recorder(t)
	c, err := power.NewCommands("foo", "lab/devices/foo.star", map[string]string{"reset": dir + "/pdu-reset"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a    power.Action
		want string
	}{
		{power.Off, `power off foo: no power command for this action: add power_command["off"] to lab/devices/foo.star`},
		{power.On, `add power_command["on"] to lab/devices/foo.star`},
	} {
		err := c.Power(ctxT(t), tc.a)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, power.ErrNoAction) {
			t.Errorf("Power(%s) = %v, want an error holding %q", tc.a, err, tc.want)
		}
		if builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("Power(%s) class = %s, want job (a lab-file error: exit 2, not retried)", tc.a, builtins.ClassOf(err))
		}
	}
	_, err = c.Status(ctxT(t))
	if err == nil || !errors.Is(err, power.ErrNoStatus) || !strings.Contains(err.Error(), "cannot report its power state") {
		t.Errorf("Status() = %v, want ErrNoStatus", err)
	}
	if got := ran(t, log); got != nil {
		t.Errorf("commands run = %q, want none", got)
	}
}

func TestCommandsFailure(t *testing.T) {
	c, err := power.NewCommands("foo", "", map[string]string{
		"off":    `sh -c "echo pdu 05: connection refused >&2; exit 7"`,
		"on":     "sleep 30",
		"status": "echo maybe",
		"reset":  filepath.Join(t.TempDir(), "no-such-command"),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Power(ctxT(t), power.Off)
	if err == nil || !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "stderr: pdu 05: connection refused") {
		t.Errorf("Power(off) = %v, want exit status 7 and the stderr tail", err)
	}
	if builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("Power(off) class = %s, want infra", builtins.ClassOf(err))
	}
	if err := c.Power(ctxT(t), power.Reset); err == nil || builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("Power(reset) of a missing program = %v, want an infra error", err)
	}
	// The caller's deadline bounds the command.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = c.Power(ctx, power.On)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("Power(on) past the deadline = %v, want an infra deadline error", err)
	}
	if _, err := c.Status(ctxT(t)); err == nil || !strings.Contains(err.Error(), `printed "maybe\n", want "on" or "off"`) {
		t.Errorf("Status() = %v, want a bad-output error", err)
	}
}

func TestCommandsStatus(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"echo on", true},
		{"echo OFF", false},
		{`printf "On\n(outlet 5)\n"`, true},
	} {
		c, err := power.NewCommands("foo", "", map[string]string{"status": tc.line})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Status(ctxT(t))
		if err != nil || got != tc.want {
			t.Errorf("Status() with %s = %v, %v, want %v", tc.line, got, err, tc.want)
		}
	}
}

func TestNewCommandsRejects(t *testing.T) {
	for _, tc := range []struct {
		lines map[string]string
		want  string
	}{
		{map[string]string{"boot": "x"}, `device foo (f.star): power_command key "boot" is not one of on, off, reset, cycle, status`},
		{map[string]string{"on": "pduclient | tee log"}, `device foo (f.star): power_command["on"]: split`},
		{map[string]string{"off": "pduclient --port $PORT"}, `$ is not expanded`},
	} {
		_, err := power.NewCommands("foo", "f.star", tc.lines)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewCommands(%v) = %v, want %q", tc.lines, err, tc.want)
		}
	}
}

func TestSplitTakesStateFromStatusBackend(t *testing.T) {
	pow := &power.Fake{NoStatus: true}
	bmc := &power.Fake{On: true}
	b := power.Split(pow, bmc)
	if err := b.Power(ctxT(t), power.Off); err != nil {
		t.Fatal(err)
	}
	on, err := b.Status(ctxT(t))
	if err != nil || !on {
		t.Errorf("Status() = %v, %v, want the status backend's true", on, err)
	}
	if got := strings.Join(pow.Log(), ","); got != "off" {
		t.Errorf("power backend calls = %q, want off", got)
	}
	if got := strings.Join(bmc.Log(), ","); got != "status" {
		t.Errorf("status backend calls = %q, want status", got)
	}
}

func TestWithEpochMarksBeforeEveryAction(t *testing.T) {
	f := &power.Fake{}
	var marks []string
	b := power.WithEpoch(f, func() { marks = append(marks, "mark@"+strings.Join(f.Log(), ",")) })
	ctx := ctxT(t)
	b.Power(ctx, power.On)
	b.Status(ctx)
	b.Power(ctx, power.Off)
	want := "mark@|mark@on,status"
	if got := strings.Join(marks, "|"); got != want {
		t.Errorf("marks = %q, want %q", got, want)
	}
}

func TestControllerWithEpochMarksChassisPower(t *testing.T) {
	f := &ipmi.Fake{}
	marks := 0
	c := power.ControllerWithEpoch(f, func() { marks++ })
	ctx := ctxT(t)
	for _, tc := range []struct {
		a    ipmi.Action
		want int
	}{{ipmi.On, 1}, {ipmi.Soft, 1}, {ipmi.Reset, 2}, {ipmi.Cycle, 3}, {ipmi.Off, 4}} {
		if err := c.Power(ctx, tc.a); err != nil {
			t.Fatal(err)
		}
		if marks != tc.want {
			t.Errorf("marks after ipmi power %s = %d, want %d", tc.a, marks, tc.want)
		}
	}
	if _, err := c.PowerStatus(ctx); err != nil || marks != 4 {
		t.Errorf("PowerStatus = %v and %d marks, want no mark", err, marks)
	}
}
