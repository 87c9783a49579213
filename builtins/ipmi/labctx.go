package ipmi

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// SELEntry is one record of the BMC's System Event Log (IPMI v2.0 §31,
// record formats in §32).
type SELEntry struct {
	RecordID uint16 `json:"record_id"`
	// Type is standard (§32.1, a sensor event), oem_timestamped or oem
	// (§32.2, §32.3).
	Type string `json:"type"`
	// Time is the BMC's timestamp of the record when its clock was set;
	// a BMC whose clock was not set counts seconds from its own
	// initialization (IPMI v2.0 §37.1, timestamps up to 0x20000000), in
	// PreInitS instead. oem records have neither.
	Time         *time.Time `json:"time,omitempty"`
	PreInitS     *uint32    `json:"pre_init_s,omitempty"`
	SensorType   string     `json:"sensor_type,omitempty"`
	SensorNumber uint8      `json:"sensor_number,omitempty"`
	// Event is the event as ipmitool's sel list words it: its
	// description and whether it was asserted or deasserted.
	Event string `json:"event,omitempty"`
}

// SensorReading is one sensor of the BMC's SDR repository (§33, §43) and
// its reading (Get Sensor Reading, §35.14).
type SensorReading struct {
	Number uint8  `json:"number"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	// Value and Units are a threshold sensor's converted reading (§36.3);
	// Reading is how the BMC states it ("12.000 Volts", "0x01", "na").
	Value   *float64 `json:"value,omitempty"`
	Units   string   `json:"units,omitempty"`
	Reading string   `json:"reading"`
	Status  string   `json:"status,omitempty"`
}

// LabReader reads what a run's lab context records of a BMC: its System
// Event Log and its sensors. *Client is one.
type LabReader interface {
	SEL(ctx context.Context) ([]SELEntry, error)
	Sensors(ctx context.Context) ([]SensorReading, error)
}

// LabReaderOf returns the LabReader behind c, unwrapping controllers that
// wrap another (an Unwrap() Controller method, as errors.Unwrap does), or
// nil when there is none (a fake, a controller of another kind).
func LabReaderOf(c Controller) LabReader {
	for c != nil {
		if r, ok := c.(LabReader); ok {
			return r
		}
		u, ok := c.(interface{ Unwrap() Controller })
		if !ok {
			return nil
		}
		c = u.Unwrap()
	}
	return nil
}

// SEL returns the records of the BMC's System Event Log (Get SEL Info,
// then Get SEL Entry from the first record, §31.2 and §31.5). An empty
// log is no records and no error.
func (c *Client) SEL(ctx context.Context) ([]SELEntry, error) {
	var out []SELEntry
	err := c.do(ctx, "get sel entries", func(ctx context.Context, ic *client.Client) error {
		out = nil
		info, err := ic.GetSELInfo(ctx)
		if err != nil {
			return err
		}
		if info.Entries == 0 {
			return nil
		}
		sels, err := ic.GetSELEntries(ctx, 0)
		if err != nil {
			return err
		}
		for _, s := range sels {
			out = append(out, selEntry(s))
		}
		return nil
	})
	return out, err
}

func selEntry(s *types.SEL) SELEntry {
	e := SELEntry{RecordID: s.RecordID, Type: "oem"}
	switch {
	case s.Standard != nil:
		st := s.Standard
		e.Type = "standard"
		e.Time, e.PreInitS = stamp(st.Timestamp)
		e.SensorType, e.SensorNumber = st.SensorType.String(), uint8(st.SensorNumber)
		dir := "Asserted"
		if st.EventDir {
			dir = "Deasserted"
		}
		e.Event = fmt.Sprintf("%s | %s", st.EventString(), dir)
	case s.OEMTimestamped != nil:
		e.Type = "oem_timestamped"
		e.Time, e.PreInitS = stamp(s.OEMTimestamped.Timestamp)
		e.Event = "OEM record, manufacturer " + fmt.Sprint(s.OEMTimestamped.ManufacturerID) + " data " + hex.EncodeToString(s.OEMTimestamped.OEMDefined[:])
	case s.OEMNonTimestamped != nil:
		e.Event = "OEM record " + hex.EncodeToString(s.OEMNonTimestamped.OEM[:])
	}
	return e
}

// preInitMax is the last timestamp that counts from the BMC's
// initialization, not from 1970 (IPMI v2.0 §37.1).
const preInitMax = 0x20000000

func stamp(t time.Time) (*time.Time, *uint32) {
	if u := t.Unix(); u >= 0 && u <= preInitMax {
		s := uint32(u)
		return nil, &s
	}
	t = t.UTC()
	return &t, nil
}

// Sensors returns the BMC's sensors and their readings, as ipmitool
// sensor list reads them: the SDR repository's full and compact sensor
// records (§43.1, §43.2), each then read with Get Sensor Reading.
func (c *Client) Sensors(ctx context.Context) ([]SensorReading, error) {
	var out []SensorReading
	err := c.do(ctx, "get sensors", func(ctx context.Context, ic *client.Client) error {
		out = nil
		ss, err := ic.GetSensors(ctx)
		if re, ok := types.IsResponseError(err); ok && re.CompletionCode() == types.CodeRequestedDataNotPresent {
			// An empty SDR repository (ipmi_sim without SDRs answers
			// Reserve/Get SDR with CBh): no sensors.
			return nil
		}
		if err != nil {
			return err
		}
		for _, s := range ss {
			r := SensorReading{Number: s.Number, Name: s.Name, Type: s.SensorType.String(), Reading: s.ReadingStr(), Status: s.Status()}
			// A reading is only a value when the sensor scans and has one
			// (Get Sensor Reading byte 3 bits 6 and 5, §35.14); ipmitool
			// shows "na" otherwise, and so does this.
			if s.ScanningDisabled || !s.ReadingAvailable {
				r.Reading = "na"
			} else if s.IsThresholdAndReadingValid() {
				v := s.Value
				r.Value, r.Units = &v, s.SensorUnit.String()
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
