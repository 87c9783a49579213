package lab

import (
	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
)

// device is the slot of the run's device in the job environment.
var device = builtins.NewSlot[*Device]("device")

// SetDevice makes d the device of the run of env and its name the env's
// DeviceName; nil leaves the run without a device.
func SetDevice(env *builtins.Env, d *Device) {
	device.Set(env, d)
	env.DeviceName = ""
	if d != nil {
		env.DeviceName = d.Name
	}
}

// DeviceOf returns the device of the run of env, nil without one.
func DeviceOf(env *builtins.Env) *Device {
	d, _ := device.Get(env)
	return d
}

// DeviceFrom returns the device of the thread's run, nil without one
// (while declaring, in `basalt check`, in a run without --device).
func DeviceFrom(thread *starlark.Thread) *Device { return DeviceOf(builtins.EnvOf(thread)) }
