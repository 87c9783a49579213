package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// poolName names the set of devices --device-type and --device-tag pick
// from: its queue file in the lock directory is called after it.
func poolName(typ string, tags []string) string {
	return strings.Join(append([]string{typ}, tags...), "+")
}

// poolDevices lists the devices of the lab of type typ (or a type that
// extends it) that carry every tag, in name order. A type the lab does not
// know, or no device of the type with those tags, is a usage error; a pool
// whose every device file is broken is a job error naming them.
func poolDevices(l *lab.Lab, typ string, tags []string) ([]string, error) {
	if _, ok := l.Types[typ]; !ok {
		known := make([]string, 0, len(l.Types))
		for k := range l.Types {
			known = append(known, k)
		}
		return nil, usagef("--device-type %s: unknown device type (known: %s)", typ, strings.Join(sortedStrings(known), ", "))
	}
	names := make([]string, 0, len(l.Devices))
	for n := range l.Devices {
		names = append(names, n)
	}
	sort.Strings(names)
	var pool, ofType, broken, refused []string
	lockDir := l.LockDir
	for _, n := range names {
		d, err := l.Config(n)
		if err != nil {
			if d == nil || d.Type == nil || d.Type.Is(typ) {
				broken = append(broken, fmt.Sprintf("%s: %v", n, err))
			}
			continue
		}
		if !d.Type.Is(typ) {
			continue
		}
		desc := n
		if len(d.Tags) > 0 {
			desc += " [" + strings.Join(d.Tags, " ") + "]"
		}
		ofType = append(ofType, desc)
		if !hasTags(d.Tags, tags) {
			continue
		}
		// Offline devices and those in bad health are not in the pool
		// (basalt device offline, a failed health check).
		if st, err := lab.ReadState(lockDir, n); err == nil {
			if err := st.Admit(n, false); err != nil {
				refused = append(refused, err.Error())
				continue
			}
		}
		pool = append(pool, n)
	}
	switch {
	case len(pool) > 0:
		return pool, nil
	case len(refused) > 0:
		return nil, builtins.Infra(fmt.Errorf("--device-type %s: no matching device can take a job: %s", typ, strings.Join(refused, "; ")))
	case len(broken) > 0 && len(ofType) == 0:
		return nil, builtins.Job(fmt.Errorf("--device-type %s: every device of the type is broken: %s", typ, strings.Join(broken, "; ")))
	case len(ofType) == 0:
		return nil, usagef("--device-type %s: the lab %s has no device of that type", typ, l.Dir)
	}
	return nil, usagef("--device-type %s --device-tag %s: no device of the type has every tag (devices of the type: %s)",
		typ, strings.Join(tags, ","), strings.Join(ofType, ", "))
}

func hasTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// lockPool takes the first free device of the pool, waiting up to wait for
// one (first come, first served among the runs waiting for the same pool).
func lockPool(ctx context.Context, lb *lab.Lab, typ string, tags, devices []string, job string, wait time.Duration) (*lab.Held, error) {
	dir := lab.DefaultLockDir()
	if lb.LockDir != "" {
		dir = lb.LockDir
	}
	h, err := lab.LockAny(ctx, dir, poolName(typ, tags), devices, lab.Holder{PID: os.Getpid(), Job: job, Since: time.Now()}, wait)
	if err != nil {
		var pe *lab.PoolBusyError
		if errors.As(err, &pe) {
			return nil, builtins.Infra(err)
		}
		if errors.Is(err, context.Canceled) {
			return nil, &builtins.Error{Class: builtins.ClassCanceled, Err: err}
		}
		// The lock directory cannot hold the pool's queue or locks (not a
		// directory, not writable, read-only): the lab's setup, which a
		// retry cannot fix — a job error (exit 2) naming where it is set.
		return nil, builtins.Job(fmt.Errorf("%w (the lock directory %s: lab.star's lock_dir or $BASALT_LOCK_DIR)", err, dir))
	}
	return h, nil
}
