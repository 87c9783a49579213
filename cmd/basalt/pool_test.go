package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// poolRun is what a pool run's result.json says about its device lock.
type poolRun struct {
	Dir      string
	Device   string
	LockedAt time.Time
	Ended    time.Time
	WaitedMS int64
}

func readPoolRun(path string) (poolRun, error) {
	var r struct {
		Ended *time.Time `json:"ended"`
		Extra struct {
			Pool struct {
				Device   string `json:"device"`
				LockedAt string `json:"locked_at"`
				WaitedMS int64  `json:"waited_ms"`
			} `json:"pool"`
		} `json:"extra"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return poolRun{}, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return poolRun{}, err
	}
	p := poolRun{Dir: filepath.Dir(path), Device: r.Extra.Pool.Device, WaitedMS: r.Extra.Pool.WaitedMS}
	if p.LockedAt, err = time.Parse(time.RFC3339Nano, r.Extra.Pool.LockedAt); err != nil {
		return p, err
	}
	if r.Ended != nil {
		p.Ended = *r.Ended
	}
	return p, nil
}

// doubleBookings returns pairs of runs whose lock intervals (locked_at to
// ended, both inside the time the lock was held) overlap on one device.
func doubleBookings(runs []poolRun) [][2]poolRun {
	byDev := map[string][]poolRun{}
	for _, r := range runs {
		byDev[r.Device] = append(byDev[r.Device], r)
	}
	var out [][2]poolRun
	for _, rs := range byDev {
		sort.Slice(rs, func(i, j int) bool { return rs[i].LockedAt.Before(rs[j].LockedAt) })
		for i := 1; i < len(rs); i++ {
			if rs[i].LockedAt.Before(rs[i-1].Ended) {
				out = append(out, [2]poolRun{rs[i-1], rs[i]})
			}
		}
	}
	return out
}

// nooverlap N GLOB: the N bundles matching GLOB each record a pool device,
// no two runs held one device at once, and at least one run waited.
func noOverlap(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: nooverlap N GLOB")
	}
	paths, err := filepath.Glob(ts.MkAbs(args[1]))
	ts.Check(err)
	var runs []poolRun
	waited := 0
	for _, p := range paths {
		r, err := readPoolRun(p)
		if err != nil || r.Device == "" || r.Ended.IsZero() {
			ts.Fatalf("%s: no pool device, lock time or end: %v", p, err)
		}
		if r.WaitedMS > 0 {
			waited++
		}
		runs = append(runs, r)
	}
	if want := args[0]; want != strconv.Itoa(len(runs)) {
		ts.Fatalf("%d bundles, want %s", len(runs), want)
	}
	if dbl := doubleBookings(runs); len(dbl) > 0 {
		d := dbl[0]
		ts.Fatalf("%d double bookings; first of %s: %s (locked %s, ended %s) and %s (locked %s)", len(dbl), d[0].Device,
			d[0].Dir, d[0].LockedAt.Format(time.RFC3339Nano), d[0].Ended.Format(time.RFC3339Nano), d[1].Dir, d[1].LockedAt.Format(time.RFC3339Nano))
	}
	if waited == 0 {
		ts.Fatalf("no run waited for a device")
	}
}

func TestDoubleBookings(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	runs := []poolRun{
		{Dir: "a", Device: "s1", LockedAt: at(0), Ended: at(10)},
		{Dir: "b", Device: "s1", LockedAt: at(10), Ended: at(20)},
		{Dir: "c", Device: "s2", LockedAt: at(5), Ended: at(15)},
		{Dir: "d", Device: "s2", LockedAt: at(14), Ended: at(16)},
	}
	got := doubleBookings(runs)
	if len(got) != 1 || got[0][0].Dir != "c" || got[0][1].Dir != "d" {
		t.Errorf("doubleBookings(a,b back to back on s1; c,d overlapping on s2) = %v, want [c d]", got)
	}
}
