// Package power is basalt's "power" Starlark module and its backends: a
// device's power, through whatever powers it — its BMC, or the power
// commands of its device file (a PDU's client, LAVA's hard_reset_command).
//
// The module (see [Table]):
//
//	power.on(timeout=None)
//	power.off(timeout=None)
//	power.reset(timeout=None)
//	power.cycle(timeout=None)
//	power.status(timeout=None) -> str   "on" | "off"
//	power.wait(state, timeout=None)     polls status until "on" | "off"
//
// The backend is a [Backend], set with [SetBackend]. [Commands] runs a device's power commands, [BMC] adapts an
// ipmi.Controller, [Split] powers through one backend and reads the state
// from another (a device with both a PDU and a BMC), [Fake] is an in-memory
// backend for other packages' tests. [WithEpoch] and [ControllerWithEpoch]
// call a function (the console's epoch marker) before every power action.
package power

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
)

// Action is a power action.
type Action string

// Power actions.
const (
	On    Action = "on"    // power up
	Off   Action = "off"   // power down, now
	Reset Action = "reset" // the device boots again, from any state
	Cycle Action = "cycle" // power down, then up
)

// Actions lists every action, in the order shown to users.
var Actions = []Action{On, Off, Reset, Cycle}

// ParseAction returns the action named s.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions {
		if string(a) == s {
			return a, nil
		}
	}
	names := make([]string, len(Actions))
	for i, a := range Actions {
		names[i] = string(a)
	}
	return "", fmt.Errorf("unknown power action %q (want one of %s)", s, strings.Join(names, ", "))
}

// Backend powers one device.
//
// Rules every implementation keeps:
//   - Every method honours ctx: it returns by ctx's deadline, with an
//     error, even when the BMC or the PDU stops answering.
//   - Power(ctx, On) does not fail when the device is already on, nor
//     Power(ctx, Off) when it is already off.
//   - Power(ctx, Reset) and Power(ctx, Cycle) leave the device booting,
//     from whatever state: an off device is powered on.
//   - Status reports the power state; a backend that cannot tell fails
//     with an error wrapping [ErrNoStatus], one that lacks an action with
//     an error wrapping [ErrNoAction]. Both are lab-file errors
//     (builtins.Job, exit 2: a retry cannot fix them) naming the device
//     and what to add to its file.
//   - Errors of the BMC, the PDU or a command are infrastructure errors
//     (builtins.Infra); they name the device and the action and never
//     contain a password.
//   - Methods may be called from several goroutines.
type Backend interface {
	Power(ctx context.Context, a Action) error
	Status(ctx context.Context) (on bool, err error)
}

// Errors a backend wraps when the device's configuration lacks something.
var (
	ErrNoAction = errors.New("no power command for this action")
	ErrNoStatus = errors.New("the device cannot report its power state")
)

// BMC is the Backend of a device powered through its BMC.
func BMC(c ipmi.Controller) Backend { return bmc{c} }

type bmc struct{ c ipmi.Controller }

func (b bmc) Power(ctx context.Context, a Action) error {
	// The actions share their names and rules with IPMI's chassis control
	// (IPMI v2.0 §28.3).
	return b.c.Power(ctx, ipmi.Action(a))
}

func (b bmc) Status(ctx context.Context) (bool, error) { return b.c.PowerStatus(ctx) }

// Split returns a Backend powering the device through pow and reading its
// state from status: a device with power commands and a BMC powers through
// the commands and asks the BMC for the state.
func Split(pow, status Backend) Backend { return split{pow, status} }

type split struct{ pow, status Backend }

func (s split) Power(ctx context.Context, a Action) error { return s.pow.Power(ctx, a) }
func (s split) Status(ctx context.Context) (bool, error)  { return s.status.Status(ctx) }

// WithEpoch returns b calling mark before every power action: the
// console's epoch marker, so that no expect matches output from before
// the action (DESIGN: any power action starts a new console epoch). mark
// runs before the action because the device's first output after it may
// come before the BMC or the command returns.
func WithEpoch(b Backend, mark func()) Backend {
	if mark == nil {
		return b
	}
	return epoch{b, mark}
}

type epoch struct {
	Backend
	mark func()
}

func (e epoch) Power(ctx context.Context, a Action) error {
	e.mark()
	return e.Backend.Power(ctx, a)
}

// ControllerWithEpoch returns c calling mark before every chassis power
// action but "soft" (which only asks the OS to shut down): ipmi.power
// starts a console epoch like power.* does.
func ControllerWithEpoch(c ipmi.Controller, mark func()) ipmi.Controller {
	if mark == nil {
		return c
	}
	return ctlEpoch{c, mark}
}

type ctlEpoch struct {
	ipmi.Controller
	mark func()
}

// Unwrap returns the controller e wraps (the lab context reads the BMC
// through the job's own ipmi.Client).
func (e ctlEpoch) Unwrap() ipmi.Controller { return e.Controller }

func (e ctlEpoch) Power(ctx context.Context, a ipmi.Action) error {
	if a != ipmi.Soft {
		e.mark()
	}
	return e.Controller.Power(ctx, a)
}

// infra marks err as an infrastructure error.
func infra(err error) error { return builtins.Infra(err) }

// labError marks err as an error of the lab files: like a broken job file,
// a retry cannot fix it (exit 2).
func labError(err error) error { return builtins.Job(err) }
