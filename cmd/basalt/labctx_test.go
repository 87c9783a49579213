package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// The lab context records the SEL records a BMC added between the job's
// start and end, not those it had before, and its sensors at both; a BMC
// that does not answer costs the job nothing but a recorded error.
func TestLabContextBMC(t *testing.T) {
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Skip("ipmitool not installed (Debian package ipmitool)")
	}
	b := bmcsim.New(bmcsim.Config{User: "admin", Password: "labctx-pw"})
	if err := b.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dev := &lab.Device{Name: "node1", IPMI: b.IPMI()}
	add := func(sensor string) {
		t.Helper()
		args := []string{"-I", "lanplus", "-H", "127.0.0.1", "-p", strconv.Itoa(b.Addr().Port), "-U", "admin", "-P", "labctx-pw", "-C", "17",
			"raw", "0x0a", "0x44", "0x00", "0x00", "0x02", "0x00", "0x00", "0x00", "0x00", "0x20", "0x00", "0x04", "0x01", sensor, "0x01", "0x09", "0xff", "0xff"}
		if out, err := exec.Command("ipmitool", args...).CombinedOutput(); err != nil {
			t.Fatalf("ipmitool sel add: %v: %s", err, out)
		}
	}
	add("0x10") // before the job
	ctx := context.Background()
	start := bmcSnapshot(ctx, dev, nil, "start")
	add("0x30")           // during the job
	b.SetSensor(0x40, 20) // the fan slows from 4800 to 1000 RPM
	end := bmcSnapshot(ctx, dev, nil, "end")

	dir := t.TempDir()
	bd, err := bundle.Create(dir, bundle.Result{Job: "j"}, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := recordLabBMC(bd, start, end); err != nil {
		t.Fatal(err)
	}
	bd.Update(func(r *bundle.Result) { r.Status = "pass" })
	bd.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "result.json"))
	var res bundle.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	got := res.LabContext.BMC
	var added []ipmi.SELEntry
	json.Unmarshal(got.SELAdded, &added)
	if len(added) != 1 || added[0].SensorNumber != 0x30 || added[0].SensorType != "Temperature" || got.SELCount != 2 || len(got.Errors) != 0 {
		t.Errorf("lab_context.bmc = sel_added %+v, sel_count_end %d, errors %q; want the one record added during the job (sensor 0x30) of 2, no errors",
			added, got.SELCount, got.Errors)
	}

	// The sim BMC's sensors (bmcsim.DefaultSensors), at the start and
	// the end.
	var sStart, sEnd []ipmi.SensorReading
	json.Unmarshal(got.SensorsStart, &sStart)
	json.Unmarshal(got.SensorsEnd, &sEnd)
	reading := func(rs []ipmi.SensorReading, name string) string {
		for _, r := range rs {
			if r.Name == name {
				return r.Reading + " " + r.Units
			}
		}
		return "(none)"
	}
	for _, tc := range []struct{ name, start, end string }{
		{"CPU Temp", "42.000 degrees C", "42.000 degrees C"},
		{"Fan 1", "4800.000 RPM", "1000.000 RPM"},
		{"12V", "12.000 Volts", "12.000 Volts"},
	} {
		if a, z := reading(sStart, tc.name), reading(sEnd, tc.name); a != tc.start || z != tc.end {
			t.Errorf("lab_context.bmc sensor %s = %s at the start, %s at the end; want %s, %s", tc.name, a, z, tc.start, tc.end)
		}
	}

	page, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(page), "<tr><td>Fan 1</td><td>4800.000</td><td>1000.000</td></tr>") {
		t.Error("report.html does not show the fan's readings at the start and the end")
	}
	if !strings.Contains(string(page), `<span class="sel-added">1</span> system event log records added`) || !strings.Contains(string(page), "Temperature #48") {
		t.Error("report.html does not show the SEL record added during the job")
	}

	// A BMC that does not answer: errors, quickly.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() // silent: reads nothing, answers nothing
	mute := &lab.Device{Name: "mute", IPMI: lab.IPMI{Host: "127.0.0.1", Port: pc.LocalAddr().(*net.UDPAddr).Port, User: "admin",
		Password: lab.NewSecret("X", "pw"), Timeout: 100 * time.Millisecond, Retries: -1}}
	s := bmcSnapshot(ctx, mute, nil, "start")
	if len(s.errs) != 2 || !strings.HasPrefix(s.errs[0], "sel at start: ") || !strings.HasPrefix(s.errs[1], "sensors at start: ") {
		t.Errorf("bmcSnapshot(mute BMC) errors = %q, want the SEL's and the sensors' failures", s.errs)
	}
}

// fakeLabReader answers the lab context's reads itself.
type fakeLabReader struct{ calls int }

func (f *fakeLabReader) SEL(context.Context) ([]ipmi.SELEntry, error) {
	f.calls++
	return []ipmi.SELEntry{{RecordID: 7}}, nil
}

func (f *fakeLabReader) Sensors(context.Context) ([]ipmi.SensorReading, error) {
	f.calls++
	return []ipmi.SensorReading{{Name: "Fan 1", Reading: "na"}}, nil
}

// The lab context reads the BMC through the job's own IPMI client: a
// snapshot given one opens no session (its device's address answers
// nothing, so a session of its own would fail), and in a sim run the SEL
// and sensor reads are the job's ipmi events, on the one session the job
// opened.
func TestLabContextReusesJobSession(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	mute := &lab.Device{Name: "mute", IPMI: lab.IPMI{Host: "127.0.0.1", Port: pc.LocalAddr().(*net.UDPAddr).Port, User: "admin",
		Password: lab.NewSecret("X", "pw"), Timeout: 100 * time.Millisecond, Retries: -1}}
	f := &fakeLabReader{}
	s := bmcSnapshot(context.Background(), mute, f, "start")
	if f.calls != 2 || len(s.errs) != 0 || len(s.sel) != 1 || len(s.sensors) != 1 {
		t.Errorf("bmcSnapshot(job's reader) = %d reader calls, sel %+v, sensors %+v, errors %q; want both reads from the reader, no session of its own",
			f.calls, s.sel, s.sensors, s.errs)
	}
	if ipmi.LabReaderOf(nil) != nil {
		t.Error("LabReaderOf(nil) != nil")
	}

	t.Setenv("BASALT_LOCK_DIR", filepath.Join(t.TempDir(), "locks"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(t.TempDir(), "cache"))
	out := filepath.Join(t.TempDir(), "b")
	job, _ := filepath.Abs(filepath.Join("..", "..", "jobs", "highbank-deploy.star"))
	if code, o := runBundle(t, "run", job, "--device", "sim", "--out", out); code != 0 {
		t.Fatalf("run exit %d\n%s", code, o)
	}
	rd, err := bundle.ReadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, ev := range rd.Events {
		if ev.Type == "ipmi" {
			count[ev.Str("command")]++
		}
	}
	if count["open session"] != 1 || count["get sel entries"] != 2 || count["get sensors"] != 2 {
		t.Errorf("ipmi events by command = %v, want one open session carrying the SEL and sensor reads at the start and the end", count)
	}
	if rd.Result.LabContext == nil || rd.Result.LabContext.BMC == nil || len(rd.Result.LabContext.BMC.Errors) != 0 || !strings.Contains(string(rd.Result.LabContext.BMC.SensorsEnd), `"Fan 1"`) {
		t.Errorf("lab_context.bmc = %+v, want the sim's sensors and no error", rd.Result.LabContext)
	}
}
