package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAddDeviceRoundTrip(t *testing.T) {
	t.Setenv("HB1_PW", "pw")
	t.Setenv("HB_02_IPMI_PASSWORD", "pw")
	pdu := func(cmd string) string {
		return "/usr/bin/pduclient --daemon localhost --hostname pdu --command " + cmd + " --port 05"
	}
	cases := []struct {
		typ, name string
		o         AddOptions
		want      *Device
	}{
		{"highbank", "hb1", AddOptions{IPMIHost: "calxeda02-01-02", IPMIUser: "admin", PasswordEnv: "HB1_PW", MAC: "FC:2F:40:17:DA:28"}, &Device{
			IPMI:    IPMI{Host: "calxeda02-01-02", Port: 623, User: "admin", Password: Secret{Env: "HB1_PW", value: "pw"}, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			MAC:     "fc:2f:40:17:da:28",
			Console: Console{Transport: "sol"},
		}},
		// LAVA's add_device.py mx53loco foo -t 4006 -p 5.
		{"qemu", "foo", AddOptions{Ser2netPort: 4006, PDUPort: 5, MAC: "52:54:00:12:34:56"}, &Device{
			IPMI:         IPMI{Port: 623, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			MAC:          "52:54:00:12:34:56",
			Console:      Console{Transport: "command", Command: "telnet localhost 4006"},
			PowerCommand: map[string]string{"on": pdu("on"), "off": pdu("off"), "reset": pdu("reboot")},
		}},
		// The password variable defaults from the name.
		{"highbank", "hb.02", AddOptions{IPMIHost: "10.0.0.2", Console: "sol", MAC: "fc:2f:40:17:da:29"}, &Device{
			IPMI:    IPMI{Host: "10.0.0.2", Port: 623, Password: Secret{Env: "HB_02_IPMI_PASSWORD", value: "pw"}, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			MAC:     "fc:2f:40:17:da:29",
			Console: Console{Transport: "sol"},
		}},
		// A sim node's MAC is derived from its name, as for --device sim.
		{"sim", "s1", AddOptions{}, &Device{
			IPMI:    IPMI{Port: 623, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			MAC:     BuiltinSim("s1").MAC,
			Console: Console{Transport: "sol"},
		}},
		// A type the lab defines, booting from its SD card: no MAC needed.
		{"odroid", "od1", AddOptions{Ser2netPort: 7001, PDUPort: 12}, &Device{
			IPMI:    IPMI{Port: 623, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			Console: Console{Transport: "command", Command: "telnet localhost 7001"},
			PowerCommand: map[string]string{
				"on":    strings.ReplaceAll(pdu("on"), "05", "12"),
				"off":   strings.ReplaceAll(pdu("off"), "05", "12"),
				"reset": strings.ReplaceAll(pdu("reboot"), "05", "12"),
			},
		}},
	}
	dir := writeLab(t, map[string]string{"device-types/odroid.star": `device_type(arch = "arm64", pxe = False)`})
	for _, c := range cases {
		path, err := AddDevice(dir, c.typ, c.name, c.o)
		if err != nil {
			t.Fatalf("AddDevice(%s, %s, %+v) = %v", c.typ, c.name, c.o, err)
		}
		if want := filepath.Join(dir, "devices", c.name+".star"); path != want {
			t.Errorf("AddDevice(%s) path = %s, want %s", c.name, path, want)
		}
		c.want.Name, c.want.File = c.name, path
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatalf("Load after AddDevice = %v", err)
	}
	for _, c := range cases {
		d, err := l.Device(c.name)
		if err != nil {
			t.Errorf("Device(%s) = %v", c.name, err)
			continue
		}
		if diff := cmp.Diff(c.want, d, deviceCmp); diff != "" {
			t.Errorf("AddDevice(%s, %s, %+v) then Load mismatch (-want +got):\n%s", c.typ, c.name, c.o, diff)
		}
		if d.Type.Name != c.typ {
			t.Errorf("%s type = %s, want %s", c.name, d.Type.Name, c.typ)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "devices"))
	if len(entries) != len(cases) {
		t.Errorf("devices/ holds %d files, want %d (no temp files left)", len(entries), len(cases))
	}
}

func TestAddDeviceRefuses(t *testing.T) {
	dir := writeLab(t, map[string]string{"devices/taken.star": `device(type = "sim")`})
	for _, c := range []struct {
		typ, name string
		o         AddOptions
		want      []string
	}{
		{"mx53loco", "foo", AddOptions{}, []string{`unknown device type "mx53loco"`, "highbank, qemu, sim"}},
		{"sim", "taken", AddOptions{}, []string{`device "taken" already exists`, filepath.Join(dir, "devices", "taken.star"), "--force"}},
		{"sim", "../escape", AddOptions{}, []string{`name "../escape" is not valid`}},
		{"highbank", "hb", AddOptions{MAC: "fc:2f:40:17:da:28"}, []string{"would not load", "ipmi_host is required"}},
		{"highbank", "nomac", AddOptions{IPMIHost: "h"}, []string{"type highbank PXE-boots", "--mac"}},
		{"sim", "m", AddOptions{MAC: "01:02"}, []string{`mac "01:02" is not a MAC address`}},
		{"sim", "p", AddOptions{Ser2netPort: 70000}, []string{"ser2net port 70000 is out of range"}},
		{"sim", "c", AddOptions{Ser2netPort: 4000, Console: "sol"}, []string{`a ser2net port gives console "command"`}},
		{"sim", "e", AddOptions{IPMIHost: "h", PasswordEnv: "NOT VALID"}, []string{`"NOT VALID" is not an environment variable name`}},
		{"sim", "q", AddOptions{IPMIHost: "h\nx"}, []string{"control character"}},
	} {
		_, err := AddDevice(dir, c.typ, c.name, c.o)
		if err == nil {
			t.Errorf("AddDevice(%s, %s, %+v) = nil, want an error", c.typ, c.name, c.o)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("AddDevice(%s, %s, %+v) = %q, want it to hold %q", c.typ, c.name, c.o, err, w)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "devices", "taken.star")); string(b) != `device(type = "sim")` {
		t.Errorf("taken.star = %q, changed by a refused AddDevice", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape.star")); err == nil {
		t.Errorf("AddDevice wrote outside devices/")
	}
	// --force overwrites.
	if _, err := AddDevice(dir, "qemu", "taken", AddOptions{Ser2netPort: 4001, PDUPort: 3, MAC: "52:54:00:00:00:03", Force: true}); err != nil {
		t.Fatalf("AddDevice(force) = %v", err)
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := l.Devices["taken"]; d.Type.Name != "qemu" || d.Console.Command != "telnet localhost 4001" {
		t.Errorf("after AddDevice(force) taken = %s %q, want qemu, telnet localhost 4001", d.Type.Name, d.Console.Command)
	}
}

func TestDefaultPasswordEnv(t *testing.T) {
	for in, want := range map[string]string{"highbank01": "HIGHBANK01_IPMI_PASSWORD", "hb-2.rack": "HB_2_RACK_IPMI_PASSWORD", "1node": "_1NODE_IPMI_PASSWORD"} {
		if got := DefaultPasswordEnv(in); got != want || !envNameRE.MatchString(got) {
			t.Errorf("DefaultPasswordEnv(%q) = %q, want %q", in, got, want)
		}
	}
}
