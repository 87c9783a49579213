package ipmi

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/basalt-lab/basalt/builtins"
)

// Fake is an in-memory Controller for other packages' unit tests. It keeps
// the Controller rules (power on of an on node succeeds, reset of an off
// node powers it on, next-boot-only settings are used up by the next boot)
// and records every call. It speaks no protocol: tests of basalt's own IPMI
// path use package bmcsim.
type Fake struct {
	mu sync.Mutex
	// On is the power state.
	On bool
	// Boot is the pending boot device, "" for none; BootPersistent and
	// BootEFI qualify it.
	Boot           Device
	BootPersistent bool
	BootEFI        bool
	// Boots lists the device each boot used ("" for the default order).
	Boots []Device
	// Calls lists the calls made: "power on", "power_status", "bootdev pxe".
	Calls []string
	// Err, when set, makes every call fail with it, classed as an
	// infrastructure error.
	Err error
	// Closed is set by Close.
	Closed bool
}

var _ Controller = (*Fake)(nil)

// Power implements Controller.
func (f *Fake) Power(ctx context.Context, a Action) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx, "power "+string(a)); err != nil {
		return err
	}
	switch a {
	case On:
		if !f.On {
			f.bootLocked()
		}
	case Off, Soft:
		f.On = false
	case Reset, Cycle:
		f.bootLocked()
	default:
		_, err := ParseAction(string(a))
		return builtins.Job(err)
	}
	return nil
}

func (f *Fake) bootLocked() {
	f.On = true
	f.Boots = append(f.Boots, f.Boot)
	if !f.BootPersistent {
		f.Boot, f.BootEFI = "", false
	}
}

// PowerStatus implements Controller.
func (f *Fake) PowerStatus(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx, "power_status"); err != nil {
		return false, err
	}
	return f.On, nil
}

// SetBootDevice implements Controller.
func (f *Fake) SetBootDevice(ctx context.Context, d Device, o BootOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx, "bootdev "+string(d)); err != nil {
		return err
	}
	if _, err := ParseDevice(string(d)); err != nil {
		return builtins.Job(err)
	}
	f.Boot, f.BootPersistent, f.BootEFI = d, o.Persistent, o.EFI
	return nil
}

// Close implements Controller.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Closed = true
	return nil
}

// Snapshot returns the calls made so far.
func (f *Fake) Snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Calls...)
}

func (f *Fake) check(ctx context.Context, call string) error {
	f.Calls = append(f.Calls, call)
	if f.Closed {
		return builtins.Infra(errors.New("fake ipmi: controller is closed"))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.Err != nil {
		return builtins.Infra(fmt.Errorf("fake ipmi: %s: %w", call, f.Err))
	}
	return nil
}
