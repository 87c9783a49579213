package bundle

import (
	"encoding/json"
	"time"
)

// LabContext is what the lab did during the job that may explain how it
// went: the console's gaps (output lost while the transport was down or
// overran), the command lines typed again, and the protocol retries.
type LabContext struct {
	// GapCount and RetypeCount count every console gap and retype; the
	// lists hold the first maxLabContextItems of each.
	GapCount    int             `json:"gap_count"`
	ConsoleGaps []LabContextGap `json:"console_gaps,omitempty"`
	RetypeCount int             `json:"retype_count"`
	Retypes     []LabContextGap `json:"retypes,omitempty"`
	// Retries are the attempts after the first, by what was retried:
	// ipmi (datagrams sent again), console_connect, sol_send (text sent
	// again), stage (a stage run again after an infra or device error).
	Retries map[string]int `json:"retries"`
	// BMC is what the device's BMC said at the start and the end of the
	// job: its SEL records added meanwhile, its sensor readings.
	BMC *LabBMC `json:"bmc,omitempty"`
}

// LabBMC is the BMC's part of the lab context. The records and readings
// are the ipmi package's SELEntry and SensorReading, as JSON.
type LabBMC struct {
	SELAdded     json.RawMessage `json:"sel_added,omitempty"`
	SELCount     int             `json:"sel_count_end"`
	SensorsStart json.RawMessage `json:"sensors_start,omitempty"`
	SensorsEnd   json.RawMessage `json:"sensors_end,omitempty"`
	// Errors are the BMC's refusals and failures, by what was asked
	// ("sel at start: ..."): they cost the job nothing.
	Errors []string `json:"errors,omitempty"`
}

// SetLabBMC records the BMC's part of the lab context, its text redacted.
func (b *Bundle) SetLabBMC(bmc LabBMC) error {
	red := func(m json.RawMessage) json.RawMessage {
		if m == nil {
			return nil
		}
		r := json.RawMessage(b.R.String(string(m)))
		if !json.Valid(r) {
			return json.RawMessage(`"<redacted>"`)
		}
		return r
	}
	bmc.SELAdded, bmc.SensorsStart, bmc.SensorsEnd = red(bmc.SELAdded), red(bmc.SensorsStart), red(bmc.SensorsEnd)
	for i, e := range bmc.Errors {
		bmc.Errors[i] = b.R.String(e)
	}
	return b.Update(func(r *Result) {
		if r.LabContext == nil {
			r.LabContext = &LabContext{Retries: map[string]int{}}
		}
		r.LabContext.BMC = &bmc
	})
}

// LabContextGap is one console gap or retype.
type LabContextGap struct {
	Time          time.Time `json:"time"`
	Stage         string    `json:"stage,omitempty"`
	ConsoleOffset int64     `json:"console_offset"`
	DurationMS    int64     `json:"duration_ms,omitempty"`
	Reason        string    `json:"reason,omitempty"`
}

const maxLabContextItems = 100

// labContext adds an event to lab_context. b.mu is held.
func (b *Bundle) labContext(typ string, fields map[string]any, now time.Time, off int64) {
	lc := b.result.LabContext
	if lc == nil {
		lc = &LabContext{Retries: map[string]int{}}
		b.result.LabContext = lc
	}
	num := func(k string) int64 {
		switch v := fields[k].(type) {
		case int:
			return int64(v)
		case int64:
			return v
		case float64:
			return int64(v)
		case json.Number:
			n, _ := v.Int64()
			return n
		}
		return 0
	}
	str := func(k string) string { s, _ := fields[k].(string); return b.R.String(s) }
	item := func() LabContextGap {
		b.con.mu.Lock()
		stage := b.con.stage
		b.con.mu.Unlock()
		why := str("reason")
		if why == "" {
			why = str("error")
		}
		return LabContextGap{Time: now, Stage: stage, ConsoleOffset: off, DurationMS: num("duration_ms"), Reason: why}
	}
	switch typ {
	case "console_gap":
		lc.GapCount++
		if len(lc.ConsoleGaps) < maxLabContextItems {
			lc.ConsoleGaps = append(lc.ConsoleGaps, item())
		}
	case "target_retype":
		lc.RetypeCount++
		if len(lc.Retypes) < maxLabContextItems {
			lc.Retypes = append(lc.Retypes, item())
		}
	case "ipmi", "console_connect":
		if n := num("attempts"); n > 1 {
			lc.Retries[typ] += int(n - 1)
		}
	case "send_retry":
		lc.Retries["sol_send"]++
	case "stage_retry":
		lc.Retries["stage"]++
	}
}
