package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

// One broken device file makes that device unusable, not the lab: the
// others load, and the broken one is listed with its error.
func TestBrokenDeviceIsolated(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"devices/good.star":   `device(type = "sim", mac = "02:42:00:00:00:01")`,
		"devices/broken.star": "device(\n    type = \"sim\",\n    kernel_consol = \"ttyS0\",\n)",
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatalf("Load = %v, want the lab with one broken device", err)
	}
	if d, err := l.Device("good"); err != nil || d.MAC != "02:42:00:00:00:01" {
		t.Errorf("Device(good) = %v, %v; want the good device", d, err)
	}
	file := filepath.Join(dir, "devices", "broken.star")
	want := file + ":3:5: device: unknown key kernel_consol (kernel_console is a key of device_type(), not device(), or facts = {...} for a free-form fact)"
	if _, err := l.Device("broken"); err == nil || err.Error() != want {
		t.Errorf("Device(broken) = %v, want %s", err, want)
	}
	rows := List(l)
	if len(rows) != 2 || rows[0].Name != "broken" || rows[0].Problem != want || rows[1].Problem != "" {
		t.Errorf("List = %+v, want broken with its error and good without", rows)
	}
	var out strings.Builder
	if err := WriteList(&out, rows); err != nil || !strings.Contains(out.String(), "unknown key kernel_consol (kernel_console is a key of device_type()") {
		t.Errorf("WriteList = %q, %v; want the broken device's error", out.String(), err)
	}
}

// A lab type can extend a built-in one: keys left out keep the built-in's
// values, facts merge, and the type still counts as the built-in (a qemu
// device without ipmi_host gets its VM).
func TestDeviceTypeExtends(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"device-types/myvm.star": `device_type(extends = "qemu", master_prompt = r"myvm# ", facts = {"board": "q35"})`,
		"devices/vm1.star":       `device(type = "myvm", mac = "52:54:00:00:00:01", vm_disk_mb = 64, vm_tap = "tap0")`,
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	q, my := BuiltinTypes()["qemu"], l.Types["myvm"]
	got := []any{my.Name, my.Arch, my.KernelConsole, my.BootloaderDelay, my.Loader, my.MasterPrompt, my.ShellPrompt, len(my.ErrorPatterns), my.Facts["disk"], my.Facts["board"], my.Is("qemu")}
	want := []any{"myvm", "x86_64", q.KernelConsole, 70 * time.Millisecond, "ipxe", "myvm# ", q.ShellPrompt, len(q.ErrorPatterns), "/dev/vda", "q35", true}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("extended type field %d = %v, want %v", i, got[i], want[i])
		}
	}
	if q.MasterPrompt == "myvm# " || q.Facts["board"] != nil {
		t.Errorf("extending changed the built-in qemu: %+v", q)
	}
	d, err := l.Device("vm1")
	if err != nil {
		t.Fatal(err)
	}
	if d.VM["vm_disk_mb"] != 64 || d.VM["vm_tap"] != "tap0" {
		t.Errorf("vm1 VM = %v, want vm_disk_mb 64, vm_tap tap0", d.VM)
	}
	var out strings.Builder
	if err := FormatDevice(&out, d); err != nil || !strings.Contains(out.String(), "vm_disk_mb:") || !strings.Contains(out.String(), "myvm (x86_64") {
		t.Errorf("FormatDevice(vm1) = %q, %v; want its type and vm_* settings", out.String(), err)
	}
}

// Loading the lab and Config read no secret value: an unset variable is
// no error until Device reads it for a run.
func TestSecretsReadOnlyForRun(t *testing.T) {
	os.Unsetenv("BASALT_TEST_LAZY_PW")
	dir := writeLab(t, map[string]string{
		"devices/hb.star": "device(type = \"highbank\", ipmi_host = \"h\", mac = \"fc:2f:40:17:da:28\",\n    ipmi_password = secret(\"BASALT_TEST_LAZY_PW\"))",
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Config("hb")
	if err != nil || d.IPMI.Password.Value() != "" || d.IPMI.Password.Env != "BASALT_TEST_LAZY_PW" {
		t.Fatalf("Config(hb) = %v, %v; want the device with its password a reference", d, err)
	}
	var out strings.Builder
	if err := FormatDevice(&out, d); err != nil || strings.Contains(out.String(), "problem") {
		t.Errorf("FormatDevice = %q, %v; want no problem without the secret", out.String(), err)
	}
	want := filepath.Join(dir, "devices", "hb.star") + ":1:7: device: ipmi_password: environment variable BASALT_TEST_LAZY_PW is not set"
	if _, err := l.Device("hb"); err == nil || err.Error() != want {
		t.Errorf("Device(hb) = %v, want %s", err, want)
	}
	t.Setenv("BASALT_TEST_LAZY_PW", "pw")
	d, err = l.Device("hb")
	if err != nil || d.IPMI.Password.Value() != "pw" {
		t.Errorf("Device(hb) with the variable set = %v, %v; want the password read", d, err)
	}
	if l.Devices["hb"].IPMI.Password.Value() != "" {
		t.Errorf("Device stored the value in the lab; want the lab's device to stay a reference")
	}
}

// Every key of the schema is documented, every function has one, and the
// functions lab files can call are exactly the schema's.
func TestSchemaDocumented(t *testing.T) {
	if len(predeclared) != len(Schema) {
		t.Errorf("predeclared = %d functions, Schema %d", len(predeclared), len(Schema))
	}
	for _, f := range Schema {
		if b, ok := predeclared[f.Name].(*starlark.Builtin); !ok || impls[f.Name] == nil || b.Name() != f.Name {
			t.Errorf("Schema %s has no predeclared builtin", f.Name)
		}
		if m, ok := Table.Lookup(f.Name); !ok || m.Doc != f.Doc || m.Fn == nil {
			t.Errorf("Schema %s is not a member of lab.Table with its Doc", f.Name)
		}
		if f.Doc == "" {
			t.Errorf("Schema %s has no Doc", f.Name)
		}
		seen := map[string]bool{}
		for _, k := range f.Keys {
			if k.Doc == "" || k.Type == "" {
				t.Errorf("%s(%s) has no Doc or Type", f.Name, k.Name)
			}
			if seen[k.Name] {
				t.Errorf("%s(%s) listed twice", f.Name, k.Name)
			}
			seen[k.Name] = true
		}
	}
}

// A key the schema lists but no parser reads is an error, never dropped
// in silence (keys other branches add are listed before they are parsed).
func TestSchemaKeyNotParsed(t *testing.T) {
	saved := deviceFunc.Keys
	deviceFunc.Keys = append(append([]Key(nil), saved...), Key{Name: "future_key", Type: "string", Doc: "x"})
	defer func() { deviceFunc.Keys = saved }()
	dir := writeLab(t, map[string]string{"devices/d.star": `device(type = "sim", future_key = "x")`})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "device: key future_key is not supported by this build of basalt"
	if _, err := l.Device("d"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Device(d) = %v, want %q", err, want)
	}
}
