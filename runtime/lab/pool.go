package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// PoolBusyError is returned by LockAny when every device of the pool is
// held, by the time the wait ran out.
type PoolBusyError struct {
	Pool    string
	Busy    []*BusyError // one per device, in the pool's order
	Waited  time.Duration
	Waiters int // other runs still queued for the pool
}

func (e *PoolBusyError) Error() string {
	var held []string
	for _, b := range e.Busy {
		held = append(held, fmt.Sprintf("%s (held by %s)", b.Device, b.Holder))
	}
	s := fmt.Sprintf("pool %s: no free device: %s", e.Pool, strings.Join(held, ", "))
	if e.Waited > 0 {
		s += fmt.Sprintf("; gave up after waiting %s", e.Waited)
	}
	if e.Waiters > 0 {
		s += fmt.Sprintf(" (%d runs queued ahead)", e.Waiters)
	}
	return s
}

// LockAny locks the first free device of devices (tried in order) with the
// same per-device lock as Lock, so that runs naming one device and runs
// taking one from a pool exclude each other. Runs waiting for the same pool
// are served first come, first served: each holds a ticket, a file in
// lockDir/POOL.queue named by the time it arrived and flocked while it
// waits, and only the oldest live ticket may take a device. The kernel
// drops a dead waiter's flock, and the next waiter removes its ticket.
// With wait 0 LockAny tries once and fails with a *PoolBusyError.
func LockAny(ctx context.Context, lockDir, pool string, devices []string, holder Holder, wait time.Duration) (*Held, error) {
	if lockDir == "" {
		lockDir = DefaultLockDir()
	}
	if len(devices) == 0 {
		return nil, fmt.Errorf("lock pool %s: no devices", pool)
	}
	// A pool is named TYPE+TAG+...: each part a device-style name.
	for _, part := range strings.Split(pool, "+") {
		if err := checkName(part); err != nil {
			return nil, fmt.Errorf("lock pool %q: %v", pool, err)
		}
	}
	queue := filepath.Join(lockDir, pool+".queue")
	if err := os.MkdirAll(queue, 0o755); err != nil {
		return nil, fmt.Errorf("lock pool %s: %w", pool, err)
	}
	ticket, name, err := takeTicket(queue)
	if err != nil {
		return nil, fmt.Errorf("lock pool %s: %w", pool, err)
	}
	defer func() {
		os.Remove(filepath.Join(queue, name))
		ticket.Close()
	}()

	start := time.Now()
	interval := 10 * time.Millisecond
	for {
		ahead, err := waitersAhead(queue, name)
		if err != nil {
			return nil, fmt.Errorf("lock pool %s: %w", pool, err)
		}
		var busy []*BusyError
		if ahead == 0 {
			for _, d := range devices {
				h, err := Lock(ctx, lockDir, d, holder, 0)
				if err == nil {
					return h, nil
				}
				var be *BusyError
				if !errors.As(err, &be) {
					return nil, fmt.Errorf("lock pool %s: %w", pool, err)
				}
				busy = append(busy, be)
			}
		}
		left := wait - time.Since(start)
		if left <= 0 {
			if busy == nil { // queued behind others the whole time
				for _, d := range devices {
					busy = append(busy, &BusyError{Device: d, Holder: readHolder(filepath.Join(lockDir, d+".lock"))})
				}
			}
			return nil, &PoolBusyError{Pool: pool, Busy: busy, Waited: wait, Waiters: ahead}
		}
		t := time.NewTimer(min(interval/2+rand.N(interval), left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock pool %s: waiting for a free device: %w", pool, ctx.Err())
		case <-t.C:
		}
		interval = min(2*interval, 100*time.Millisecond)
	}
}

// takeTicket queues this run: a file flocked under a temporary name, then
// renamed to its place in the queue, so that no waiter ever sees a ticket
// that is not yet locked and takes it for a dead one.
func takeTicket(queue string) (*os.File, string, error) {
	tmp := filepath.Join(queue, fmt.Sprintf(".new-%d-%d", os.Getpid(), rand.Uint64()))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("take ticket: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, "", fmt.Errorf("take ticket: flock %s: %w", tmp, err)
	}
	// The arrival time orders the queue; the PID breaks ties.
	name := fmt.Sprintf("%020d-%d", time.Now().UnixNano(), os.Getpid())
	if err := os.Rename(tmp, filepath.Join(queue, name)); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, "", fmt.Errorf("take ticket: %w", err)
	}
	return f, name, nil
}

// waitersAhead counts the live tickets older than mine, removing those
// whose waiter died (their flock is free).
func waitersAhead(queue, mine string) (int, error) {
	ents, err := os.ReadDir(queue)
	if err != nil {
		return 0, fmt.Errorf("read queue: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); !strings.HasPrefix(n, ".") && n < mine {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	ahead := 0
	for _, n := range names {
		p := filepath.Join(queue, n)
		f, err := os.Open(p)
		if err != nil {
			continue // served and removed meanwhile
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil {
			os.Remove(p) // its waiter is gone
		} else {
			ahead++
		}
		f.Close()
	}
	return ahead, nil
}
