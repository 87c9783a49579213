package power_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/power"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// newThread returns a thread running a job stage whose power backend is b.
func newThread[B power.Backend](t *testing.T, ctx context.Context, b B) *starlark.Thread {
	env := &builtins.Env{Ctx: ctx, Stage: "test"}
	power.SetBackend(env, b)
	return builtinstest.NewThread(t, env)
}

func run(t *testing.T, thread *starlark.Thread, src string) error {
	t.Helper()
	_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "job.star", src, starlark.StringDict{"power": power.Table.Module()})
	return err
}

func TestModuleStar(t *testing.T) {
	f := &power.Fake{}
	thread := newThread(t, ctxT(t), f)
	builtinstest.ExecFile(t, thread, "testdata/power.star", nil, starlark.StringDict{"power": power.Table.Module()})
}

func TestModuleErrors(t *testing.T) {
	for _, tc := range []struct {
		b     *power.Fake
		src   string
		want  string
		class builtins.Class
	}{
		{&power.Fake{NoStatus: true}, "power.status()", "power.status: the device cannot report its power state", builtins.ClassJob},
		{&power.Fake{NoStatus: true}, `power.wait("off")`, "power.wait: the device cannot report its power state", builtins.ClassJob},
		{&power.Fake{Err: errors.New("pdu unreachable")}, "power.reset()", "power.reset: pdu unreachable", builtins.ClassInfra},
		{&power.Fake{}, `power.wait("on", timeout = 0.3)`, "power.wait: power still off after", builtins.ClassDevice},
		{nil, "power.on()", "power: this run has no device", builtins.ClassJob},
	} {
		thread := newThread(t, ctxT(t), tc.b)
		if tc.b == nil {
			power.SetBackend(builtins.EnvOf(thread), nil)
		}
		err := run(t, thread, tc.src+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s = %v, want %q", tc.src, err, tc.want)
			continue
		}
		if c := builtins.ClassOf(err); c != tc.class {
			t.Errorf("%s class = %s, want %s", tc.src, c, tc.class)
		}
	}
}

func TestModuleRefusedAtTopLevel(t *testing.T) {
	thread := newThread(t, ctxT(t), &power.Fake{})
	builtins.EnvOf(thread).Declaring = true
	err := run(t, thread, "power.on()\n")
	if err == nil || !strings.Contains(err.Error(), "power.on: action builtins may only be called from a stage") {
		t.Errorf("power.on() at top level = %v, want refused", err)
	}
}

// node records what the simulated BMC asks of the node.
type node struct {
	mu  sync.Mutex
	evs []string
}

func (n *node) PowerOn(context.Context, bmcsim.BootDevice) error { n.add("on"); return nil }
func (n *node) PowerOff(context.Context) error                   { n.add("off"); return nil }
func (n *node) Reset(context.Context, bmcsim.BootDevice) error   { n.add("reset"); return nil }
func (n *node) add(e string)                                     { n.mu.Lock(); n.evs = append(n.evs, e); n.mu.Unlock() }
func (n *node) take() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := strings.Join(n.evs, ",")
	n.evs = nil
	return s
}

// The BMC backend speaks real RMCP+ to go-ipmi's BMC (the sim's).
func TestBMCBackend(t *testing.T) {
	n := &node{}
	b := bmcsim.New(bmcsim.Config{Node: n})
	if err := b.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c := ipmi.NewClient("sim", b.IPMI(), ipmi.Options{})
	t.Cleanup(func() { c.Close() })
	thread := newThread(t, ctxT(t), power.BMC(c))
	src := `
power.off()
power.wait("off", timeout = "10s")
power.on()
st = power.status()
st == "on" or fail("status after on: " + st)
power.reset()
power.off()
`
	if err := run(t, thread, src); err != nil {
		t.Fatal(err)
	}
	if got := n.take(); got != "on,reset,off" {
		t.Errorf("node saw %q, want on,reset,off", got)
	}
}
