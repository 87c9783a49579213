package ipmi_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/google/go-cmp/cmp"
)

// selAdd is ipmitool's Add SEL Entry (IPMI v2.0 §31.6) of a standard
// record (§32.1): temperature sensor 0x30, threshold event "upper critical
// going high" (offset 9), asserted. The BMC stamps the record itself.
var selAdd = []string{"raw", "0x0a", "0x44", "0x00", "0x00", "0x02", "0x00", "0x00", "0x00", "0x00",
	"0x20", "0x00", "0x04", "0x01", "0x30", "0x01", "0x09", "0xff", "0xff"}

// readSEL adds two records to a BMC with ipmitool and reads its log with
// the client before and after; the records come back as ipmitool's own sel
// list reads them.
func readSEL(t *testing.T, cfg lab.IPMI, suite string) []ipmi.SELEntry {
	t.Helper()
	c := newClient(t, cfg, nil)
	ctx := ctxT(t, time.Minute)
	before, err := c.SEL(ctx)
	if err != nil {
		t.Fatalf("SEL() = %v", err)
	}
	if len(before) != 0 {
		t.Fatalf("SEL() of a new BMC = %+v, want none", before)
	}
	for i := 0; i < 2; i++ {
		if out, err := ipmitool(cfg, suite, selAdd...); err != nil {
			t.Fatalf("ipmitool sel add: %v\n%s", err, out)
		}
	}
	after, err := c.SEL(ctx)
	if err != nil {
		t.Fatalf("SEL() = %v", err)
	}
	if len(after) != 2 {
		t.Fatalf("SEL() after two adds = %+v, want 2 records", after)
	}
	list, err := ipmitool(cfg, suite, "sel", "list")
	if err != nil || strings.Count(list, "Temperature #0x30 | Upper Critical going high | Asserted") != 2 {
		t.Errorf("ipmitool sel list = %q (%v), want the two records (the reference reading)", list, err)
	}
	for _, e := range after {
		if e.Type != "standard" || e.SensorType != "Temperature" || e.SensorNumber != 0x30 || (e.Time == nil) == (e.PreInitS == nil) {
			t.Errorf("SEL() record = %+v, want a standard Temperature #0x30 record with one timestamp", e)
		}
		if !strings.Contains(e.Event, "Upper Critical") || !strings.Contains(e.Event, "going high") || !strings.HasSuffix(e.Event, "Asserted") {
			t.Errorf("SEL() record event = %q, want upper critical going high, asserted", e.Event)
		}
	}
	if after[0].RecordID == after[1].RecordID {
		t.Errorf("SEL() record ids = %d, %d, want distinct", after[0].RecordID, after[1].RecordID)
	}
	return after
}

// The client reads ipmi_sim's System Event Log. ipmi_sim's clock is not
// set, so it stamps records with its uptime (§37.1), as ipmitool's
// "Pre-Init" shows.
func TestClientSELAgainstIPMISim(t *testing.T) {
	cfg, _ := ipmiSim(t, false)
	got := readSEL(t, cfg, "3")
	list, _ := ipmitool(cfg, "3", "sel", "list")
	for _, e := range got {
		if e.PreInitS == nil || !strings.Contains(list, fmt.Sprintf("|%010d|", *e.PreInitS)) {
			t.Errorf("SEL() record %+v, want the pre-init time ipmitool lists:\n%s", e, list)
		}
	}
	c := newClient(t, cfg, nil)
	if _, err := c.Sensors(ctxT(t, time.Minute)); err != nil {
		t.Errorf("Sensors() of an ipmi_sim without SDRs = %v, want none and no error", err)
	}
}

// The sim BMC's SEL (bmcsim/sel.go) answers as ipmi_sim's: the same adds
// read back the same records, but for the timestamp, which the sim BMC
// takes from its clock (set, as on a real BMC in service).
func TestSELSimAgainstIPMISim(t *testing.T) {
	cfg, _ := ipmiSim(t, false)
	want := readSEL(t, cfg, "3")
	b := startBMC(t, bmcsim.Config{})
	got := readSEL(t, b.IPMI(), "17")
	for i := range got {
		if got[i].Time == nil || time.Since(*got[i].Time) > time.Minute || time.Since(*got[i].Time) < -time.Minute {
			t.Errorf("sim BMC record %d time = %v, want now", i, got[i].Time)
		}
		got[i].Time, want[i].PreInitS = nil, nil
		if got[i] != want[i] {
			t.Errorf("sim BMC record %d = %+v, ipmi_sim's = %+v", i, got[i], want[i])
		}
	}
}

// fullSDR is a full sensor record (IPMI v2.0 §43.1, Table 43-1) for
// sensor num named name (8 characters): a threshold temperature sensor in
// degrees C, linear with M = 1, B = 0, so the raw reading is the
// temperature.
func fullSDR(num byte, name string) string {
	b := []byte{0x00, 0x00, 0x51, 0x01, byte(43 + len(name)), // record id (assigned), SDR version, type 01h, length
		0x20, 0x00, num, // owner 20h, LUN 0, sensor
		0x03, 0x01, 0x67, 0x68, 0x01, 0x01, // processor 1, init, capabilities, temperature, threshold
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // event masks
		0x00, 0x01, 0x00, 0x00, // unsigned, degrees C, no modifier, linear
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // M = 1, B = 0, accuracy, exponents
		0x00, 0x00, 0x00, 0x00, 0xff, 0x00, // flags, nominal, normal max/min, sensor max/min
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // thresholds, hysteresis
		0x00, 0x00, 0x00, // reserved, OEM
		0xc0 | byte(len(name))} // 8-bit ASCII ID string
	b = append(b, name...)
	var s []string
	for _, c := range b {
		s = append(s, fmt.Sprintf("0x%02x", c))
	}
	return strings.Join(s, " ")
}

// The client reads ipmi_sim's sensors as ipmitool sensor list does: the
// SDR repository's record, then the sensor's reading, converted.
func TestClientSensorsAgainstIPMISim(t *testing.T) {
	// 0x30 scans and reads 42; 0x31 does not scan, so has no reading.
	s := startIPMISimEmu(t, false, "", "sensor_add 0x20 0 0x30 0x01 0x01\n"+
		"sensor_set_event_support 0x20 0 0x30 enable scanning per-state 000000000000000 000000000000000 000000000000000 000000000000000\n"+
		"sensor_set_value 0x20 0 0x30 0x2a 0\nmain_sdr_add 0x20 "+fullSDR(0x30, "CPU Temp")+"\n"+
		"sensor_add 0x20 0 0x31 0x01 0x01\nsensor_set_value 0x20 0 0x31 0x17 0\nmain_sdr_add 0x20 "+fullSDR(0x31, "Inlet Tp")+"\n")
	c := newClient(t, s.cfg, nil)
	ctx := ctxT(t, time.Minute)
	got, err := c.Sensors(ctx)
	if err != nil {
		t.Fatalf("Sensors() = %v", err)
	}
	list, _ := ipmitool(s.cfg, "3", "sensor", "list")
	if len(got) != 2 {
		t.Fatalf("Sensors() = %+v, want CPU Temp and Inlet Tp (ipmitool sensor list:\n%s)", got, list)
	}
	if r := got[1]; r.Name != "Inlet Tp" || r.Value != nil || r.Reading != "na" {
		t.Errorf("Sensors()[1] = %+v, want Inlet Tp with no reading (it does not scan; ipmitool says na:\n%s)", r, list)
	}
	if !regexp.MustCompile(`Inlet Tp\s+\| na `).MatchString(list) {
		t.Errorf("ipmitool sensor list = %q, want Inlet Tp na (the reference reading)", list)
	}
	r := got[0]
	if r.Name != "CPU Temp" || r.Number != 0x30 || r.Type != "Temperature" || r.Value == nil || *r.Value != 42 || !strings.Contains(r.Units, "C") {
		t.Errorf("Sensors()[0] = %+v (value %v), want CPU Temp #0x30 Temperature 42 degrees C (ipmitool: %s)", r, r.Value, list)
	}
	if !strings.Contains(list, "CPU Temp") || !strings.Contains(list, "42.000") {
		t.Errorf("ipmitool sensor list = %q, want CPU Temp at 42 (the reference reading)", list)
	}
}

// The sim BMC's sensors (bmcsim/sdr.go) answer as OpenIPMI's ipmi_sim's
// do when it holds the same records (main_sdr_add) and readings
// (sensor_add, sensor_set_value, scanning enabled): ipmitool's sdr list,
// sdr elist, sensor list and sensor get print the same, Get Sensor
// Reading returns the same bytes, and the client reads the same sensors.
func TestSensorsSimAgainstIPMISim(t *testing.T) {
	var emu strings.Builder
	for i, s := range bmcsim.DefaultSensors {
		var rec []string
		for _, c := range s.Record(uint16(i + 1)) {
			rec = append(rec, fmt.Sprintf("0x%02x", c))
		}
		fmt.Fprintf(&emu, "sensor_add 0x20 0 %#x %#x 0x01\n", s.Number, s.Type)
		fmt.Fprintf(&emu, "sensor_set_event_support 0x20 0 %#x enable scanning per-state 000000000000000 000000000000000 000000000000000 000000000000000\n", s.Number)
		fmt.Fprintf(&emu, "sensor_set_value 0x20 0 %#x %#x 0\n", s.Number, s.Raw)
		fmt.Fprintf(&emu, "main_sdr_add 0x20 %s\n", strings.Join(rec, " "))
	}
	peer := startIPMISimEmu(t, false, "", emu.String())
	b := startBMC(t, bmcsim.Config{})
	commands := [][]string{{"sdr", "list"}, {"sdr", "elist"}, {"sensor", "list"}}
	for _, s := range bmcsim.DefaultSensors {
		commands = append(commands, []string{"sensor", "get", s.Name}, []string{"raw", "0x04", "0x2d", fmt.Sprintf("%#x", s.Number)})
	}
	commands = append(commands, []string{"raw", "0x04", "0x29", "0x30"}, []string{"raw", "0x04", "0x2d", "0x77"}, []string{"raw", "0x04", "0x29", "0x77"}) // event enables; no such sensor
	for _, args := range commands {
		want, werr := ipmitool(peer.cfg, "3", args...)
		got, gerr := ipmitool(b.IPMI(), "17", args...)
		if (werr == nil) != (gerr == nil) || got != want {
			t.Errorf("ipmitool %s:\nsim BMC (%v):\n%s\nipmi_sim (%v):\n%s", strings.Join(args, " "), gerr, got, werr, want)
		}
	}
	// What the sim BMC says it supports, ipmi_sim's MC says too.
	mcSim, _ := ipmitool(b.IPMI(), "17", "mc", "info")
	mcPeer, _ := ipmitool(peer.cfg, "3", "mc", "info")
	for _, dev := range []string{"Sensor Device", "SDR Repository Device", "SEL Device", "Chassis Device"} {
		if !strings.Contains(mcSim, "    "+dev+"\n") || !strings.Contains(mcPeer, "    "+dev+"\n") {
			t.Errorf("ipmitool mc info: %q listed by the sim BMC %v and ipmi_sim %v; want both:\n%s\n%s", dev,
				strings.Contains(mcSim, dev), strings.Contains(mcPeer, dev), mcSim, mcPeer)
		}
	}
	list, _ := ipmitool(b.IPMI(), "17", "sensor", "list")
	for _, want := range []string{`CPU Temp\s+\| 42\.000\s+\| degrees C\s+\| ok`, `Fan 1\s+\| 4800\.000\s+\| RPM\s+\| ok`, `12V\s+\| 12\.000\s+\| Volts\s+\| ok`} {
		if !regexp.MustCompile(want).MatchString(list) {
			t.Errorf("ipmitool sensor list of the sim BMC lacks %s:\n%s", want, list)
		}
	}
	ctx := ctxT(t, time.Minute)
	wantS, err := newClient(t, peer.cfg, nil).Sensors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gotS, err := newClient(t, b.IPMI(), nil).Sensors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantS, gotS); diff != "" || len(gotS) != 3 {
		t.Errorf("Sensors() of the sim BMC vs ipmi_sim (-ipmi_sim +sim):\n%s", diff)
	}
	// A reading that changes (ipmi_sim's sensor_set_value) is read anew.
	if !b.SetSensor(0x40, 20) || b.SetSensor(0x77, 1) {
		t.Error("SetSensor(0x40) = false or SetSensor(0x77) = true")
	}
	if after, _ := ipmitool(b.IPMI(), "17", "sdr", "list"); !strings.Contains(after, "1000 RPM") {
		t.Errorf("sdr list after the fan slowed to raw 20 (1000 RPM):\n%s", after)
	}
}
