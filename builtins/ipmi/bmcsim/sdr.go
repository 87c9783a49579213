package bmcsim

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Sensor is one threshold sensor of the sim BMC: a full sensor record in
// its SDR repository (IPMI v2.0 §43.1, Table 43-1) and a reading that Get
// Sensor Reading (§35.14) returns. The reading is linear (§36.3): value =
// M × raw × 10^RExp, unsigned raw.
type Sensor struct {
	Number uint8
	// Name is the record's ID string, at most 16 characters.
	Name string
	// Type is the sensor type code (Table 42-3): 01h temperature, 02h
	// voltage, 04h fan.
	Type uint8
	// Units is the base unit code (Table 43-15): 1 degrees C, 4 Volts,
	// 18 RPM.
	Units uint8
	// Entity is the entity the sensor watches (Table 43-13): 03h
	// processor, 07h system board, 1Dh fan.
	Entity uint8
	M      int16 // 10 bits, signed
	RExp   int8  // 4 bits, signed
	Raw    uint8 // the reading's raw value
}

// DefaultSensors are the sim node's sensors when Config.Sensors is nil:
// what a Highbank-class board's BMC reports (a CPU temperature, a fan, the
// 12 V rail).
var DefaultSensors = []Sensor{
	{Number: 0x30, Name: "CPU Temp", Type: 0x01, Units: 1, Entity: 0x03, M: 1, Raw: 42},
	{Number: 0x40, Name: "Fan 1", Type: 0x04, Units: 18, Entity: 0x1d, M: 50, Raw: 96},
	{Number: 0x50, Name: "12V", Type: 0x02, Units: 4, Entity: 0x07, M: 6, RExp: -2, Raw: 200},
}

// Value is the sensor's converted reading.
func (s Sensor) Value() float64 { return float64(s.M) * float64(s.Raw) * math.Pow10(int(s.RExp)) }

// Record returns the full sensor record (Table 43-1) with record id id:
// a threshold sensor (event/reading type 01h) that scans, with no
// thresholds or hysteresis readable, as OpenIPMI's ipmi_sim serves the
// records main_sdr_add gives it.
func (s Sensor) Record(id uint16) []byte {
	name := s.Name
	if len(name) > 16 {
		name = name[:16]
	}
	m := uint16(s.M) & 0x3ff
	r := []byte{byte(id), byte(id >> 8), 0x51, 0x01, byte(43 + len(name)), // header (§43): id, SDR version 51h, type 01h, length
		0x20, 0x00, s.Number, // owner: the BMC (20h), LUN 0
		s.Entity, 0x01, // entity instance 1
		0x67, 0x68, // initialization: scanning and events enabled; capabilities: no thresholds readable
		s.Type, 0x01, // threshold sensor
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // event and reading masks: none
		0x00, s.Units, 0x00, 0x00, // unsigned, base unit, no modifier unit, linear
		byte(m), byte(m>>8) << 6, 0x00, 0x00, 0x00, byte(s.RExp&0x0f) << 4, // M, tolerance, B = 0, accuracy, R and B exponents
		0x00, 0x00, 0x00, 0x00, 0xff, 0x00, // no nominal or normal range; sensor range 0..255
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // thresholds, hysteresis
		0x00, 0x00, 0x00, // reserved, OEM
		0xc0 | byte(len(name))} // 8-bit ASCII + Latin-1 ID string
	return append(r, name...)
}

// sensors are the BMC's sensors, answering Get Sensor Reading (§35.14).
// The SDR repository itself (Get SDR Repository Info, Reserve SDR
// Repository, Get SDR: §33.9, §33.11, §33.12) is go-ipmi's, over the
// records written into its storage HAL.
type sensors struct {
	mu   sync.Mutex
	byNo map[uint8]*Sensor
}

func (ss *sensors) register(reg *handlers.Registry) {
	reg.RegisterFunc(types.CommandGetSensorReading, ss.reading)
	reg.RegisterFunc(types.CommandGetSensorEventEnable, ss.eventEnable)
}

// load writes the records of list into the SDR repository, record ids
// from 1.
func (ss *sensors) load(ctx context.Context, b *BMC, list []Sensor) error {
	ss.byNo = map[uint8]*Sensor{}
	for i, s := range list {
		if _, dup := ss.byNo[s.Number]; dup {
			return fmt.Errorf("bmcsim: sensor number %#x given twice", s.Number)
		}
		s := s
		ss.byNo[s.Number] = &s
		if err := b.hal.Storage().SDR().Write(ctx, uint16(i+1), s.Record(uint16(i+1))); err != nil {
			return fmt.Errorf("bmcsim: SDR of sensor %s: %w", s.Name, err)
		}
	}
	return nil
}

// reading answers Get Sensor Reading (Table 35-15) as ipmi_sim does
// (lanserv/bmc_sensor.c): the raw reading; event messages and scanning
// enabled; no threshold crossed; a fourth byte of 00h.
// An unknown sensor is CCh, "invalid data field in request", as ipmi_sim
// answers it.
func (ss *sensors) reading(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	s, cc := ss.sensor(req)
	if cc != types.CodeOK {
		return nil, cc, nil
	}
	return []byte{s.Raw, 0xc0, 0x00, 0x00}, types.CodeOK, nil
}

// eventEnable answers Get Sensor Event Enable (§35.11, Table 35-11) as
// ipmi_sim does for a sensor with no event enabled: event messages and
// scanning enabled, every assertion and deassertion event disabled.
func (ss *sensors) eventEnable(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if _, cc := ss.sensor(req); cc != types.CodeOK {
		return nil, cc, nil
	}
	return []byte{0xc0, 0x00, 0x00, 0x00, 0x00}, types.CodeOK, nil
}

// sensor returns a copy of the sensor a request's first byte names.
func (ss *sensors) sensor(req []byte) (Sensor, types.CompletionCode) {
	if len(req) < 1 {
		return Sensor{}, types.CodeRequestDataLengthInvalid
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.byNo[req[0]]
	if !ok {
		return Sensor{}, types.CodeRequestDataFieldInvalid
	}
	return *s, types.CodeOK
}

// SetSensor changes the raw reading of sensor number (a fan slowing, a
// board warming); false when there is no such sensor.
func (b *BMC) SetSensor(number uint8, raw uint8) bool {
	b.sensors.mu.Lock()
	defer b.sensors.mu.Unlock()
	s, ok := b.sensors.byNo[number]
	if ok {
		s.Raw = raw
	}
	return ok
}
