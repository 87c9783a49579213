package ipmi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
)

// Table is the "ipmi" Starlark module. Its backend is the job's
// Controller, set with SetBackend.
var Table = &builtins.Table{
	Name: "ipmi",
	Doc: `Power and boot device of the job's device, through its BMC (IPMI v2.0 over LAN, "lanplus").

Every call is recorded as an "ipmi" event (command, duration, completion code).
A BMC that refuses a command or does not answer is an infrastructure error (exit 3).
timeout= takes a duration string ("30s", "2m") or a number of seconds, and can only
shorten the stage's deadline.

For power, prefer the power module (power.on(), power.reset(), ...): it goes through the
device's power commands (a PDU) when its file has them, and through the BMC otherwise.
ipmi.power always talks to the BMC; like power.*, every action but "soft" starts a new
console epoch. A device without ipmi_host has no BMC: ipmi.* fails saying so.`,
	Members: []builtins.Builtin{
		{
			Name:   "power",
			Params: "action, timeout=None",
			Doc: `Performs a chassis power action: "on", "off", "reset", "cycle" or "soft".

"on" succeeds if the device is already on, "off" and "soft" if it is already off.
"reset" and "cycle" leave the device booting, powering it on if it was off.
"soft" asks the operating system to shut down (ACPI) and returns at once; use
wait_power("off") to wait for it.`,
			Action: true,
			Fn:     power,
		},
		{
			Name:   "power_status",
			Params: "timeout=None",
			Doc:    `Returns "on" or "off", the device's chassis power state.`,
			Action: true,
			Fn:     powerStatus,
		},
		{
			Name:   "bootdev",
			Params: "device, persistent=False, efi=False, timeout=None",
			Doc: `Sets the device to boot from at its next power on or reset: "pxe", "disk", "bios" or "cdrom".

Unless persistent=True the setting applies to the next boot only; the BMC clears it
once the device has booted. efi=True asks for an EFI boot instead of a legacy one.`,
			Action: true,
			Fn:     bootdev,
		},
		{
			Name:   "wait_power",
			Params: "state, timeout=None",
			Doc: `Waits until the device's power state is state ("on" or "off"), polling power_status.

Running out of time is a device error: the device did not get there.`,
			Action: true,
			Fn:     waitPower,
		},
	},
}

// pollInterval is how often wait_power asks the BMC: often at first, when
// the answer is usually near, then once a second to keep the event log
// readable.
// slot is the place of the ipmi backend in the job environment.
var slot = builtins.NewSlot[Controller]("ipmi")

// SetBackend makes c the ipmi backend of the run of env (cmd/basalt's
// wire and tests call it); nil removes it.
func SetBackend(env *builtins.Env, c Controller) { slot.Set(env, c) }

// BackendOf returns the ipmi backend of the run of env, if it has one.
func BackendOf(env *builtins.Env) (Controller, bool) { return slot.Get(env) }

// BackendFrom returns the ipmi backend of the thread's run, or the
// error a builtin returns: a job error in a run without a device, an
// infrastructure error for a device without this backend.
func BackendFrom(thread *starlark.Thread) (Controller, error) { return slot.From(thread) }

func pollInterval(waited time.Duration) time.Duration {
	if waited < 5*time.Second {
		return 250 * time.Millisecond
	}
	return time.Second
}

func power(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var action string
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "action", &action, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	a, err := ParseAction(action)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %w", name, err))
	}
	ctl, err := BackendFrom(thread)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	if err := ctl.Power(ctx, a); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return starlark.None, nil
}

func powerStatus(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	ctl, err := BackendFrom(thread)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	on, err := ctl.PowerStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return onOff(on), nil
}

func bootdev(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var device string
	var persistent, efi bool
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "device", &device, "persistent?", &persistent,
		"efi?", &efi, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	d, err := ParseDevice(device)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %w", name, err))
	}
	ctl, err := BackendFrom(thread)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	if err := ctl.SetBootDevice(ctx, d, BootOptions{Persistent: persistent, EFI: efi}); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return starlark.None, nil
}

func waitPower(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var state string
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "state", &state, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	if state != "on" && state != "off" {
		return nil, builtins.Job(fmt.Errorf("%s: unknown power state %q (want one of on, off)", name, state))
	}
	want := state == "on"
	ctl, err := BackendFrom(thread)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	start := time.Now()
	last := "unknown"
	for {
		on, err := ctl.PowerStatus(ctx)
		switch {
		case err == nil && on == want:
			return starlark.None, nil
		case err == nil:
			last = string(onOff(on))
		case ctx.Err() == nil:
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
