package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// labSnapshotTimeout bounds each look at the BMC for the lab context: a
// BMC with many sensors answers one Get Sensor Reading per sensor.
const labSnapshotTimeout = 20 * time.Second

// labSnapshot is what the BMC said at one moment.
type labSnapshot struct {
	sel     []ipmi.SELEntry
	sensors []ipmi.SensorReading
	errs    []string
}

// bmcSnapshot reads the SEL and the sensors of dev's BMC through r, the
// job's own IPMI client (ipmi.LabReaderOf its ipmi backend), so the lab
// context opens no session of its own: a BMC with few session slots keeps
// them, and the reads are ipmi events of the job like its other calls. It
// runs before the first stage and after the last cleanup, when the job
// makes no call of its own. Without r (a device whose ipmi backend is no
// ipmi.Client) it opens a session of its own and closes it again.
// Failures are recorded, not returned: the lab context costs the job
// nothing.
func bmcSnapshot(ctx context.Context, dev *lab.Device, r ipmi.LabReader, when string) labSnapshot {
	var s labSnapshot
	if dev == nil || dev.IPMI.Host == "" {
		return s
	}
	ctx, cancel := context.WithTimeout(ctx, labSnapshotTimeout)
	defer cancel()
	if r == nil {
		c := ipmi.NewClient(dev.Name, dev.IPMI, ipmi.Options{})
		defer c.Close()
		r = c
	}
	var err error
	if s.sel, err = r.SEL(ctx); err != nil {
		s.errs = append(s.errs, fmt.Sprintf("sel at %s: %v", when, err))
	}
	if s.sensors, err = r.Sensors(ctx); err != nil {
		s.errs = append(s.errs, fmt.Sprintf("sensors at %s: %v", when, err))
	}
	return s
}

// jobLabReader is the job's IPMI client, for bmcSnapshot; nil without one.
func jobLabReader(env *builtins.Env) ipmi.LabReader {
	c, ok := ipmi.BackendOf(env)
	if !ok {
		return nil
	}
	return ipmi.LabReaderOf(c)
}

// recordLabBMC puts into the bundle's lab context the SEL records the
// BMC added between start and end and its sensors at both.
func recordLabBMC(b *bundle.Bundle, start, end labSnapshot) error {
	seen := map[uint16]bool{}
	for _, e := range start.sel {
		seen[e.RecordID] = true
	}
	added := []ipmi.SELEntry{}
	for _, e := range end.sel {
		if !seen[e.RecordID] {
			added = append(added, e)
		}
	}
	js := func(v any) json.RawMessage { data, _ := json.Marshal(v); return data }
	bmc := bundle.LabBMC{SELAdded: js(added), SELCount: len(end.sel), Errors: append(start.errs, end.errs...)}
	if start.sensors != nil {
		bmc.SensorsStart = js(start.sensors)
	}
	if end.sensors != nil {
		bmc.SensorsEnd = js(end.sensors)
	}
	return b.SetLabBMC(bmc)
}
