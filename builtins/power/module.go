package power

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
)

// Table is the "power" Starlark module. Its backend is the job's Backend,
// set with SetBackend.
var Table = &builtins.Table{
	Name: "power",
	Doc: `The device's power, through whatever powers it: its power commands (power_command in the device
file: a PDU's client such as pdudaemon's pduclient) if it has them, else its BMC. A device with both powers
through its commands and reads its state from its BMC (ipmi.* stays for boot device and SOL).

Every power action starts a new console epoch: a later sol.expect never matches, and the device type's error
patterns never fire on, output from before it. A command that fails or does not finish, or a BMC that does
not answer, is an infrastructure error (exit 3); an action the device file has no command for, or a status
it cannot report, is an error of the lab file (exit 2, not retried) naming the key to add.
timeout= takes a duration string ("30s", "2m") or a number of seconds, and can only shorten the stage's
deadline.`,
	Members: []builtins.Builtin{
		action(On, `Powers the device on. Succeeds if it is already on.`),
		action(Off, `Powers the device off, at once (no OS shutdown). Succeeds if it is already off.`),
		action(Reset, `Resets the device: it boots again, powered on if it was off. Through power commands,
the "reset" command, else "cycle", else "off" then "on".`),
		action(Cycle, `Powers the device off, then on: it boots again, powered on if it was off. Through power
commands, the "cycle" command, else "reset", else "off" then "on".`),
		{
			Name:   "status",
			Params: "timeout=None",
			Doc: `Returns "on" or "off": from the BMC if the device has one, else from its power_command["status"]
(which prints on or off). A device with neither cannot report its power: an infrastructure error saying so.`,
			Action: true,
			Fn:     status,
		},
		{
			Name:   "wait",
			Params: "state, timeout=None",
			Doc: `Waits until the device's power state is state ("on" or "off"), polling status.

Running out of time is a device error: the device did not get there.`,
			Action: true,
			Fn:     wait,
		},
	},
}

// slot is the place of the power backend in the job environment.
var slot = builtins.NewSlot[Backend]("power")

// SetBackend makes b the power backend of the run of env (cmd/basalt's
// wire and tests call it); nil removes it.
func SetBackend(env *builtins.Env, b Backend) { slot.Set(env, b) }

// BackendOf returns the power backend of the run of env, if it has one.
func BackendOf(env *builtins.Env) (Backend, bool) { return slot.Get(env) }

// BackendFrom returns the power backend of the thread's run, or the
// error a builtin returns: a job error in a run without a device, an
// infrastructure error for a device without this backend.
func BackendFrom(thread *starlark.Thread) (Backend, error) { return slot.From(thread) }

func action(a Action, doc string) builtins.Builtin {
	return builtins.Builtin{
		Name:   string(a),
		Params: "timeout=None",
		Doc:    doc,
		Action: true,
		Fn: func(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var timeout builtins.Timeout
			if err := starlark.UnpackArgs(name, args, kwargs, "timeout?", &timeout); err != nil {
				return nil, builtins.Job(err)
			}
			b, err := BackendFrom(thread)
			if err != nil {
				return nil, err
			}
			ctx, cancel := builtins.CallContext(thread, timeout.D())
			defer cancel()
			if err := b.Power(ctx, a); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return starlark.None, nil
		},
	}
}

func status(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	b, err := BackendFrom(thread)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	on, err := b.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return onOff(on), nil
}

// pollInterval is how often wait asks: often at first, when the answer is
// usually near, then once a second to keep the event log readable.
func pollInterval(waited time.Duration) time.Duration {
	if waited < 5*time.Second {
		return 250 * time.Millisecond
	}
	return time.Second
}

func wait(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var state string
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "state", &state, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	if state != "on" && state != "off" {
		return nil, builtins.Job(fmt.Errorf("%s: unknown power state %q (want one of on, off)", name, state))
	}
	want := state == "on"
	b, err := BackendFrom(thread)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	start := time.Now()
	last := "unknown"
	for {
		on, err := b.Status(ctx)
		switch {
		case err == nil && on == want:
			return starlark.None, nil
		case err == nil:
			last = string(onOff(on))
		case errors.Is(err, ErrNoStatus) || ctx.Err() == nil:
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if ctx.Err() == nil {
			t := time.NewTimer(pollInterval(time.Since(start)))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(cerr, context.Canceled) {
				return nil, fmt.Errorf("%s: %w", name, cerr)
			}
			return nil, builtins.Device(fmt.Errorf("%s: power still %s after %s, want %s",
				name, last, time.Since(start).Round(time.Millisecond), state))
		}
	}
}

func onOff(on bool) starlark.String {
	if on {
		return "on"
	}
	return "off"
}
