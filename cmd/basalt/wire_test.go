package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/power"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// A SIGINT cancels the setup context; the backends run under the lifetime
// context, so a cleanup's power off still reaches the BMC — on the sim and
// on a qemu device alike (a lab device's BMC is not ours to stop).
func TestBackendsOutliveSetupContext(t *testing.T) {
	qemuDev := &lab.Device{Name: "vm", Type: lab.BuiltinTypes()["qemu"], MAC: "52:54:00:12:34:56",
		Console: lab.Console{Transport: "sol"}}
	for _, tc := range []struct {
		name string
		dev  *lab.Device
		need string
	}{
		{"sim", lab.BuiltinSim("sim"), ""},
		{"qemu", qemuDev, "qemu-system-x86_64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.need != "" {
				if _, err := exec.LookPath(tc.need); err != nil {
					t.Skipf("%s not installed", tc.need)
				}
			}
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
			b, err := bundle.Create(filepath.Join(t.TempDir(), "out"), bundle.Result{Job: "t"}, bundle.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			setup, interrupt := context.WithCancel(context.Background())
			life, end := context.WithCancel(context.Background())
			defer end()
			env := &builtins.Env{Facts: map[string]any{}, Rec: b}
			lab.SetDevice(env, tc.dev)
			release, err := wire(setup, life, time.Now().Add(time.Minute), env, nil, b)
			if release != nil {
				defer release()
			}
			if err != nil {
				t.Fatal(err)
			}
			interrupt() // SIGINT
			time.Sleep(100 * time.Millisecond)

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pb, ok := power.BackendOf(env)
			if !ok {
				t.Fatal("wire set no power backend")
			}
			if err := pb.Power(ctx, power.On); err != nil {
				t.Fatalf("power on after SIGINT = %v", err)
			}
			if err := pb.Power(ctx, power.Off); err != nil {
				t.Fatalf("cleanup's power off after SIGINT = %v", err)
			}
			if on, err := pb.Status(ctx); err != nil || on {
				t.Errorf("status after power off = %v, %v; want off", on, err)
			}
		})
	}
}
