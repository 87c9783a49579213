// Package ipmi is basalt's "ipmi" Starlark module and its backends: a
// device's power and boot device, controlled through its BMC.
//
// The module (see [Table]):
//
//	ipmi.power(action, timeout=None)              on | off | reset | cycle | soft
//	ipmi.power_status(timeout=None) -> str        "on" | "off"
//	ipmi.bootdev(device, persistent=False, efi=False, timeout=None)
//	                                              pxe | disk | bios | cdrom
//	ipmi.wait_power(state, timeout=None)          polls power_status until "on" | "off"
//
// timeout is a duration string ("30s") or a number of seconds; it can only
// shorten the stage's deadline.
//
// The backend is a [Controller]. [Client] drives a real BMC over RMCP+
// (IPMI v2.0 "lanplus", github.com/bougou/go-ipmi); [Fake] is an in-memory
// controller for other packages' unit tests. The simulated node's BMC is
// package bmcsim, which speaks the real protocol, so the sim device uses
// [Client] like any other device.
package ipmi

import (
	"context"
	"fmt"
	"strings"
)

// Action is a chassis power action (IPMI v2.0 §28.3, Chassis Control).
type Action string

// Power actions.
const (
	On    Action = "on"    // power up
	Off   Action = "off"   // hard power down, now
	Reset Action = "reset" // hard reset; the node boots again
	Cycle Action = "cycle" // power down, then up
	Soft  Action = "soft"  // ACPI soft shutdown: the OS powers the node off
)

// Actions lists every action, in the order shown to users.
var Actions = []Action{On, Off, Reset, Cycle, Soft}

// ParseAction returns the action named s.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown power action %q (want one of %s)", s, join(Actions))
}

// Device is a boot device (IPMI v2.0 Table 28-14, parameter 5).
type Device string

// Boot devices.
const (
	PXE   Device = "pxe"   // network boot
	Disk  Device = "disk"  // default hard drive
	BIOS  Device = "bios"  // BIOS / firmware setup
	CDROM Device = "cdrom" // CD/DVD
)

// Devices lists every boot device, in the order shown to users.
var Devices = []Device{PXE, Disk, BIOS, CDROM}

// ParseDevice returns the boot device named s.
func ParseDevice(s string) (Device, error) {
	for _, d := range Devices {
		if string(d) == s {
			return d, nil
		}
	}
	return "", fmt.Errorf("unknown boot device %q (want one of %s)", s, join(Devices))
}

// BootOptions qualify a boot device setting.
type BootOptions struct {
	// Persistent keeps the setting for every later boot; otherwise it
	// applies to the next boot only and the BMC clears it once the node
	// has booted.
	Persistent bool
	// EFI asks for an EFI boot instead of a legacy (PC compatible) one.
	EFI bool
}

// Controller controls one device's power and boot device.
//
// Rules every implementation keeps (package ipmitest checks them):
//   - Every method honours ctx: it returns by ctx's deadline, with an
//     error, even when the BMC stops answering; on a canceled ctx it
//     returns an error wrapping context.Canceled.
//   - Power(ctx, On) does not fail when the node is already on, nor
//     Power(ctx, Off) or Power(ctx, Soft) when it is already off.
//   - Power(ctx, Reset) and Power(ctx, Cycle) leave the node booting, from
//     whatever state: an off node is powered on.
//   - Power(ctx, Soft) returns once the request is delivered; the node goes
//     off when its OS has shut down (poll PowerStatus).
//   - SetBootDevice affects the next power on or reset; without
//     BootOptions.Persistent it applies to that one boot only.
//   - SetBootDevice reaches the BMC: a BMC that reports its boot flags
//     (Get System Boot Options, parameter 5) reports the device set.
//   - An unknown Action or Device is a job error (builtins.Job).
//   - Errors from the BMC or the network are infrastructure errors
//     (builtins.Infra); they name the device and the command and never
//     contain the password.
//   - Methods may be called from several goroutines; Close ends the
//     session and makes later calls fail as infrastructure errors. Close
//     may be called more than once.
type Controller interface {
	Power(ctx context.Context, a Action) error
	PowerStatus(ctx context.Context) (on bool, err error)
	SetBootDevice(ctx context.Context, d Device, o BootOptions) error
	Close() error
}

func join[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
