package ipmi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/lab"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// newThread returns a thread running a job stage whose ipmi backend is ctl.
func newThread(t *testing.T, ctx context.Context, ctl ipmi.Controller) *starlark.Thread {
	env := &builtins.Env{Ctx: ctx, Stage: "test"}
	ipmi.SetBackend(env, ctl)
	return builtinstest.NewThread(t, env)
}

func TestModuleStar(t *testing.T) {
	n := &node{}
	b := startBMC(t, bmcsim.Config{Node: n, SoftOffDelay: 100 * time.Millisecond})
	c := newClient(t, b.IPMI(), nil)
	ctx := ctxT(t, time.Minute)

	sim := &starlarkstruct.Module{Name: "sim", Members: starlark.StringDict{
		"boot": starlark.NewBuiltin("sim.boot", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			dev, p := b.BootDevice()
			return starlark.Tuple{starlark.String(dev.String()), starlark.Bool(p), starlark.Bool(b.BootEFI())}, nil
		}),
		"node": starlark.NewBuiltin("sim.node", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			var l []starlark.Value
			for _, e := range n.take() {
				l = append(l, starlark.String(e))
			}
			return starlark.NewList(l), nil
		}),
	}}
	predeclared := starlark.StringDict{"ipmi": ipmi.Table.Module(), "sim": sim}
	thread := newThread(t, ctx, c)
	builtinstest.ExecFile(t, thread, "testdata/ipmi.star", nil, predeclared)
}

func TestModuleDocumented(t *testing.T) {
	if u := builtins.Undocumented(ipmi.Table); len(u) > 0 {
		t.Errorf("undocumented: %v", u)
	}
	for _, m := range ipmi.Table.Members {
		if !m.Action {
			t.Errorf("ipmi.%s is not an Action builtin", m.Name)
		}
	}
}

// TestModuleErrorClasses checks the class (and so the exit code) of each
// kind of failure.
func TestModuleErrorClasses(t *testing.T) {
	dead := startBMC(t, bmcsim.Config{})
	dead.SetLoss(1)
	cfg := dead.IPMI()
	cfg.Timeout, cfg.Retries = 50*time.Millisecond, 1
	deadClient := newClient(t, cfg, nil)
	fake := &ipmi.Fake{}

	tests := []struct {
		name string
		ctl  ipmi.Controller
		call string
		args starlark.Tuple
		kw   []starlark.Tuple
		want builtins.Class
	}{
		{"bad action", fake, "power", starlark.Tuple{starlark.String("explode")}, nil, builtins.ClassJob},
		{"bad device", fake, "bootdev", starlark.Tuple{starlark.String("usb")}, nil, builtins.ClassJob},
		{"missing argument", fake, "power", nil, nil, builtins.ClassJob},
		{"bmc not answering", deadClient, "power_status", nil, nil, builtins.ClassInfra},
		{"bmc error", &ipmi.Fake{Err: errors.New("boom")}, "power", starlark.Tuple{starlark.String("on")}, nil, builtins.ClassInfra},
		{"never gets there", fake, "wait_power", starlark.Tuple{starlark.String("on")},
			[]starlark.Tuple{{starlark.String("timeout"), starlark.Float(0.05)}}, builtins.ClassDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			thread := newThread(t, ctxT(t, 20*time.Second), tt.ctl)
			fn := ipmi.Table.Module().Members[tt.call]
			_, err := starlark.Call(thread, fn, tt.args, tt.kw)
			if err == nil {
				t.Fatalf("ipmi.%s(%v) succeeded, want an error", tt.call, tt.args)
			}
			if got := builtins.ClassOf(err); got != tt.want {
				t.Errorf("ClassOf(ipmi.%s error %q) = %s, want %s", tt.call, err, got, tt.want)
			}
		})
	}
}

func TestModuleNoBackend(t *testing.T) {
	thread := newThread(t, ctxT(t, time.Second), nil)
	env := &builtins.Env{Ctx: context.Background()}
	lab.SetDevice(env, lab.BuiltinSim("sim"))
	builtins.Attach(thread, env)
	_, err := starlark.Call(thread, ipmi.Table.Module().Members["power_status"], nil, nil)
	if builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("power_status without backend: %v (class %s), want an infrastructure error", err, builtins.ClassOf(err))
	}
}
