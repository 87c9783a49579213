package power

import (
	"context"
	"sync"
)

// Fake is an in-memory Backend for other packages' unit tests. It keeps
// the Backend rules (on of an on device succeeds, reset of an off device
// powers it on) and records every call.
type Fake struct {
	mu sync.Mutex
	// On is the power state.
	On bool
	// Calls lists the calls made: "on", "reset", "status".
	Calls []string
	// Err, when set, makes every call fail with it, as an infrastructure
	// error.
	Err error
	// NoStatus makes Status fail with ErrNoStatus (a lab-file error), as a
	// device with power commands and neither a BMC nor a status command
	// does.
	NoStatus bool
}

var _ Backend = (*Fake)(nil)

// Power implements Backend.
func (f *Fake) Power(ctx context.Context, a Action) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, string(a))
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.Err != nil {
		return infra(f.Err)
	}
	if _, err := ParseAction(string(a)); err != nil {
		return infra(err)
	}
	f.On = a != Off
	return nil
}

// Status implements Backend.
func (f *Fake) Status(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, "status")
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if f.Err != nil {
		return false, infra(f.Err)
	}
	if f.NoStatus {
		return false, labError(ErrNoStatus)
	}
	return f.On, nil
}

// Log returns the calls made so far.
func (f *Fake) Log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Calls...)
}
