package sol

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// waitCaptured waits until the console has received s.
func waitCaptured(t *testing.T, capture *builtinstest.SyncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(capture.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("console never received %q; got %q", s, capture.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A stale "No bootable device found" of an earlier boot neither ends the
// next boot's expect nor is matched after Mark (what every power action
// calls).
func TestMarkStartsEpoch(t *testing.T) {
	var capture builtinstest.SyncBuffer
	rec := &builtinstest.Recorder{}
	line, _, c := simConsole(t, serialsim.Config{}, Options{
		Capture:       &capture,
		Emit:          rec.Emit,
		ErrorPatterns: []string{"No bootable device found"},
	})
	dev := line.Device()
	fmt.Fprint(dev, "No bootable device found\r\nlogin: stale\r\n")
	waitCaptured(t, &capture, "login: stale\r\n")
	c.Mark()

	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	_, err := c.Expect(ctx, expect.Literal("login: "))
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Expect(login: ) after Mark over stale output = %v, want a timeout", err)
	}
	if len(te.Tail) != 0 {
		t.Errorf("timeout after Mark carries %q, want no output of the old epoch", te.Tail)
	}

	fmt.Fprint(dev, "PXE boot\r\nlogin: ")
	m, err := c.Expect(testContext(t), expect.Literal("login: "))
	if err != nil {
		t.Fatalf("Expect(login: ) in the new epoch = %v", err)
	}
	if m.Before != "PXE boot\r\n" {
		t.Errorf("Expect(login: ).Before = %q, want %q", m.Before, "PXE boot\r\n")
	}
	if marks := rec.Events("console_mark"); len(marks) != 1 || marks[0]["discarded"] != len("No bootable device found\r\nlogin: stale\r\n") {
		t.Errorf("console_mark events = %v, want one discarding the stale output", marks)
	}
	// console.log keeps everything.
	if got := capture.String(); !strings.HasPrefix(got, "No bootable device found") {
		t.Errorf("capture = %q, want the stale output kept", got)
	}
}

func TestStarlarkMarkAndErrorPatterns(t *testing.T) {
	var capture builtinstest.SyncBuffer
	line, _, c := simConsole(t, serialsim.Config{}, Options{Capture: &capture, ErrorPatterns: []string{"Kernel panic"}})
	dev := line.Device()
	rec := &builtinstest.Recorder{}
	thread := &starlark.Thread{Name: "test"}
	env := &builtins.Env{Ctx: testContext(t), Rec: rec}
	SetBackend(env, c)
	builtins.Attach(thread, env)
	exec := func(src string) error {
		_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "job.star", src, starlark.StringDict{"sol": Table.Module()})
		return err
	}

	// error_patterns=False: the type's patterns do not fire.
	fmt.Fprint(dev, "Kernel panic - not syncing (expected by this test)\r\nok 1\r\n")
	if err := exec(`sol.expect("ok 1", error_patterns = False)`); err != nil {
		t.Errorf("expect with error_patterns=False = %v, want a match", err)
	}
	// A list replaces them for one call.
	fmt.Fprint(dev, "PXE-E32: TFTP open timeout\r\nok 2\r\n")
	err := exec(`sol.expect("ok 2", error_patterns = [sol.regex("PXE-E[0-9A-F]{2}")])`)
	var dm *DeviceErrorMatch
	if !errors.As(err, &dm) || dm.Pattern != `re"PXE-E[0-9A-F]{2}"` {
		t.Errorf("expect with error_patterns=[PXE-E..] = %v, want a device error on that pattern", err)
	}
	// The type's patterns are back for the next call; sol.mark() hides
	// the panic printed before it.
	fmt.Fprint(dev, "Kernel panic - not syncing\r\n")
	waitCaptured(t, &capture, "Kernel panic - not syncing\r\n")
	if err := exec("sol.mark()"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(dev, "ok 3\r\n")
	if err := exec(`sol.expect("ok 3")`); err != nil {
		t.Errorf("expect after sol.mark() = %v, want a match", err)
	}
	fmt.Fprint(dev, "Kernel panic - not syncing\r\nok 4\r\n")
	if err := exec(`sol.expect("ok 4")`); !errors.As(err, &dm) || dm.Pattern != `re"Kernel panic"` {
		t.Errorf("expect with the type's patterns = %v, want a Kernel panic device error", err)
	}
	for _, src := range []string{`sol.expect("x", error_patterns = True)`, `sol.expect("x", error_patterns = "panic")`, `sol.mark(1)`} {
		if err := exec(src); err == nil || builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("%s = %v, want a job error", src, err)
		}
	}
}
