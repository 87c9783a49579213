package lab

import (
	"strings"
	"testing"
)

func TestAddDevicePDUFlags(t *testing.T) {
	dir := writeLab(t, nil)
	if _, err := AddDevice(dir, "qemu", "foo", AddOptions{MAC: "02:42:00:00:00:09", PDUPort: 5, PDUHost: "pdu-rack2", PDUDaemon: "pdud.lab"}); err != nil {
		t.Fatal(err)
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Device("foo")
	if err != nil {
		t.Fatal(err)
	}
	want := "/usr/bin/pduclient --daemon pdud.lab --hostname pdu-rack2 --command reboot --port 05"
	if got := d.PowerCommand["reset"]; got != want {
		t.Errorf("power_command[reset] = %q, want %q", got, want)
	}
	for _, o := range []AddOptions{{MAC: "02:42:00:00:00:09", PDUHost: "pdu"}, {MAC: "02:42:00:00:00:09", PDUPort: 5, PDUHost: "pdu; rm -rf /"}, {MAC: "02:42:00:00:00:09", PDUPort: 5, PDUDaemon: "a b"}} {
		if _, err := AddDevice(dir, "qemu", "bar", o); err == nil {
			t.Errorf("AddDevice(%+v) = nil error, want refused", o)
		}
	}
}

func TestPowerCommandKeys(t *testing.T) {
	dir := writeLab(t, map[string]string{"devices/foo.star": `device(
    type = "qemu",
    power_command = {"on": "pdu on 5", "off": "pdu off 5", "reset": "pdu reboot 5", "cycle": "pdu cycle 5", "status": "pdu status 5"},
)
`})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := l.Device("foo")
	if got := d.PowerCommand["status"]; got != "pdu status 5" {
		t.Errorf(`power_command["status"] = %q, want "pdu status 5"`, got)
	}
	var b strings.Builder
	FormatDevice(&b, d)
	if !strings.Contains(b.String(), "pdu status 5") {
		t.Errorf("FormatDevice does not show the status command:\n%s", b.String())
	}
}

func TestPowerCommandBadLine(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`pduclient --port 05 | logger`, `device: power_command["off"]: split "pduclient --port 05 | logger": 1:21: ` + "`|`" + ` is not a valid word`},
		{`pduclient --port $PORT`, `device: power_command["off"]: split "pduclient --port $PORT": column 18: $ is not expanded`},
	} {
		dir := writeLab(t, map[string]string{"devices/foo.star": "device(\n    type = \"qemu\",\n    power_command = {\"off\": " + quote(tc.line) + "},\n)\n"})
		// A broken device file breaks only its device.
		l, err := Load(dir)
		if err == nil {
			_, err = l.Config("foo")
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load with power_command off %q = %v, want %q", tc.line, err, tc.want)
		}
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
