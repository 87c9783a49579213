package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Holder says who holds a device: it is written into the lock file so that
// a second runner can name it.
type Holder struct {
	PID   int       `json:"pid"`
	Job   string    `json:"job,omitempty"`
	Since time.Time `json:"since"`
	Host  string    `json:"host,omitempty"`
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "another process (no holder recorded)"
	}
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Host != "" {
		s += " on " + h.Host
	}
	if h.Job != "" {
		s += fmt.Sprintf(" (job %q)", h.Job)
	}
	if !h.Since.IsZero() {
		s += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	return s
}

// BusyError is returned by Lock when another runner holds the device.
type BusyError struct {
	Device string
	Holder Holder
	// Waited is how long Lock waited before giving up (0: it did not wait).
	Waited time.Duration
}

func (e *BusyError) Error() string {
	s := fmt.Sprintf("device %s is busy: held by %s", e.Device, e.Holder)
	if e.Waited > 0 {
		s += fmt.Sprintf("; gave up after waiting %s", e.Waited)
	}
	return s
}

// Held is a device lock. The kernel releases it when the process exits,
// however it exits (flock(2) locks belong to the open file, which dies with
// the process), so a crashed or SIGKILLed runner never leaves a device
// locked.
type Held struct {
	Device string
	Holder Holder
	Path   string // the lock file

	once sync.Once
	f    *os.File
	err  error
}

// Release unlocks the device. It is safe to call more than once.
func (h *Held) Release() error {
	h.once.Do(func() {
		// Clear the holder first: a stale name must not outlive the lock.
		terr := h.f.Truncate(0)
		uerr := unix.Flock(int(h.f.Fd()), unix.LOCK_UN)
		cerr := h.f.Close()
		if err := errors.Join(terr, uerr, cerr); err != nil {
			h.err = fmt.Errorf("release device %s: %w", h.Device, err)
		}
	})
	return h.err
}

// Lock takes the lock of device in lockDir ("" for DefaultLockDir), one
// file per device (lockDir/DEVICE.lock), and records holder in it (PID and
// Since default to this process and now). With wait 0 it fails at once
// with a *BusyError naming the holder if the device is held; with wait > 0
// it retries until wait has passed or ctx is done.
func Lock(ctx context.Context, lockDir, device string, holder Holder, wait time.Duration) (*Held, error) {
	if lockDir == "" {
		lockDir = DefaultLockDir()
	}
	if err := checkName(device); err != nil {
		return nil, fmt.Errorf("lock device: %v", err)
	}
	if holder.PID == 0 {
		holder.PID = os.Getpid()
	}
	if holder.Since.IsZero() {
		holder.Since = time.Now()
	}
	holder.Since = holder.Since.UTC().Truncate(time.Second)
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("lock device %s: %w", device, err)
	}
	path := filepath.Join(lockDir, device+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock device %s: %w", device, err)
	}
	fd := int(f.Fd())
	start := time.Now()
	interval := 10 * time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock device %s: flock %s: %w", device, path, err)
		}
		if onBusy != nil {
			onBusy(device)
		}
		left := wait - time.Since(start)
		if left <= 0 {
			f.Close()
			return nil, &BusyError{Device: device, Holder: readHolder(path), Waited: wait}
		}
		// Jitter keeps waiters that started together from polling in step.
		t := time.NewTimer(min(interval/2+rand.N(interval), left))
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock device %s: waiting for %s: %w", device, readHolder(path), ctx.Err())
		case <-t.C:
		}
		interval = min(2*interval, 250*time.Millisecond)
	}

	data, _ := json.Marshal(holder)
	data = append(data, '\n')
	// One write from offset 0, then cut the rest: a reader sees either the
	// old holder, or this one followed by leftovers its decoder ignores.
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if err != nil {
		f.Close() // releases the lock
		return nil, fmt.Errorf("lock device %s: write holder: %w", device, err)
	}
	return &Held{Device: device, Holder: holder, Path: path, f: f}, nil
}

// onBusy, when set (by tests), is called each time Lock finds the device
// held.
var onBusy func(device string)

// readHolder reads who holds a lock file; a zero Holder when it cannot
// tell (the holder has not written yet, or the file is unreadable).
func readHolder(path string) Holder {
	var h Holder
	b, err := os.ReadFile(path)
	if err != nil {
		return h
	}
	_ = json.NewDecoder(bytes.NewReader(b)).Decode(&h)
	return h
}
