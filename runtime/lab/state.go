package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Health of a device, as LAVA keeps it: unknown until a health-check job
// has run, good after one passed, bad after one failed. A bad device is
// refused like an offline one, except by health checks: the next one that
// passes makes it good again.
const (
	HealthUnknown = ""
	HealthGood    = "good"
	HealthBad     = "bad"
)

// State is what the lab knows about a device beyond its file: whether a
// person took it offline (LAVA's maintenance) and why, and the result of
// its last health check. It lives in the lab's state directory (the lock
// directory), one file per device, DEVICE.state.json.
type State struct {
	Offline bool      `json:"offline,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	// Health is HealthUnknown, HealthGood or HealthBad; HealthJob, HealthAt
	// and HealthBundle say which health-check job set it, when, and where
	// its bundle is.
	Health       string    `json:"health,omitempty"`
	HealthJob    string    `json:"health_job,omitempty"`
	HealthAt     time.Time `json:"health_at,omitzero"`
	HealthBundle string    `json:"health_bundle,omitempty"`
}

// Word is the state's one-word name for `device list`: offline, bad or
// online.
func (s State) Word() string {
	switch {
	case s.Offline:
		return "offline"
	case s.Health == HealthBad:
		return "bad"
	}
	return "online"
}

// RefusedError is a job refused because of its device's state.
type RefusedError struct {
	Device string
	State  State
}

func (e *RefusedError) Error() string {
	if e.State.Offline {
		msg := fmt.Sprintf("device %s is offline", e.Device)
		if e.State.Reason != "" {
			msg += fmt.Sprintf(": %q", e.State.Reason)
		}
		if !e.State.Since.IsZero() {
			msg += " since " + e.State.Since.UTC().Format(time.RFC3339)
		}
		return msg + " (basalt device online " + e.Device + " brings it back)"
	}
	msg := fmt.Sprintf("device %s is in bad health: health check %q failed", e.Device, e.State.HealthJob)
	if !e.State.HealthAt.IsZero() {
		msg += " at " + e.State.HealthAt.UTC().Format(time.RFC3339)
	}
	if e.State.HealthBundle != "" {
		msg += " (bundle " + e.State.HealthBundle + ")"
	}
	return msg + "; only a health-check job may run until one passes"
}

// Admit says whether a job may run on a device in state s: nil, or a
// *RefusedError. An offline device runs nothing; a device in bad health
// runs only health checks.
func (s State) Admit(device string, healthCheck bool) error {
	if s.Offline || (s.Health == HealthBad && !healthCheck) {
		return &RefusedError{Device: device, State: s}
	}
	return nil
}

func statePath(dir, device string) string { return filepath.Join(dir, device+".state.json") }

// ReadState reads device's state from dir ("" for DefaultLockDir); a
// device never changed is online with unknown health.
func ReadState(dir, device string) (State, error) {
	if dir == "" {
		dir = DefaultLockDir()
	}
	var s State
	if err := checkName(device); err != nil {
		return s, fmt.Errorf("read device state: %v", err)
	}
	b, err := os.ReadFile(statePath(dir, device))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read device state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read device state %s: %w", statePath(dir, device), err)
	}
	return s, nil
}

// UpdateState changes device's state with fn and writes it back. Writers
// are serialised by a lock of their own (DEVICE.state.lock, not the device
// lock: a device can be taken offline while a job holds it, as in LAVA,
// where the running job finishes), and the file is replaced atomically
// (temp file + rename), so a reader sees the old state or the new one.
func UpdateState(dir, device string, fn func(*State)) (State, error) {
	if dir == "" {
		dir = DefaultLockDir()
	}
	if err := checkName(device); err != nil {
		return State{}, fmt.Errorf("update device state: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return State{}, fmt.Errorf("update device state: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, device+".state.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return State{}, fmt.Errorf("update device state: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return State{}, fmt.Errorf("update device state: flock: %w", err)
	}
	s, err := ReadState(dir, device)
	if err != nil {
		return s, err
	}
	fn(&s)
	data, _ := json.MarshalIndent(s, "", "  ")
	tmp, err := os.CreateTemp(dir, "."+device+".state-*")
	if err != nil {
		return s, fmt.Errorf("update device state: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return s, fmt.Errorf("update device state: %w", err)
	}
	if err := os.Rename(tmp.Name(), statePath(dir, device)); err != nil {
		os.Remove(tmp.Name())
		return s, fmt.Errorf("update device state: %w", err)
	}
	return s, nil
}

// CurrentHolder returns who holds device's lock in lockDir, if a live
// process does. It reads the holder file without touching the lock, so
// that listing devices never makes a starting job find its device busy.
func CurrentHolder(lockDir, device string) (Holder, bool) {
	if lockDir == "" {
		lockDir = DefaultLockDir()
	}
	h := readHolder(filepath.Join(lockDir, device+".lock"))
	if h.PID == 0 {
		return h, false
	}
	// The holder is cleared on release; a SIGKILLed holder leaves its
	// name, but its PID is gone.
	if err := unix.Kill(h.PID, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return h, false
	}
	return h, true
}
