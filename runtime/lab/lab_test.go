package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// writeLab creates a lab directory holding files (slash paths relative to
// it).
func writeLab(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var deviceCmp = cmp.Options{
	cmp.AllowUnexported(Device{}, Console{}, Secret{}),
	cmpopts.IgnoreFields(Device{}, "Type", "secretPos", "labDir"),
	cmpopts.EquateEmpty(),
}

func TestBuiltinTypes(t *testing.T) {
	types := BuiltinTypes()
	for _, name := range []string{"highbank", "qemu", "sim"} {
		dt := types[name]
		if dt == nil {
			t.Fatalf("BuiltinTypes()[%q] = nil, want a type", name)
		}
		if dt.Name != name || dt.File != "" || dt.Arch == "" || dt.KernelConsole == "" || dt.MasterPrompt == "" || dt.ShellPrompt == "" {
			t.Errorf("BuiltinTypes()[%q] = %+v, want name, arch, console, prompts set and no file", name, dt)
		}
		for _, p := range append([]string{dt.MasterPrompt, dt.LoginPrompt, dt.ShellPrompt}, dt.ErrorPatterns...) {
			if _, err := regexp.Compile(p); err != nil {
				t.Errorf("type %s: pattern %q: %v", name, p, err)
			}
		}
	}
	hb := types["highbank"]
	got := []any{hb.Arch, hb.KernelConsole, hb.BootloaderDelay, hb.TestShellDelay, hb.Loader}
	want := []any{"arm", "ttyAMA0", 300 * time.Millisecond, 100 * time.Millisecond, "pxelinux"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("highbank (arch, console, delays, loader) mismatch (-want +got):\n%s", diff)
	}
	if q := types["qemu"]; q.Arch != "x86_64" || q.Loader != "ipxe" || !strings.HasPrefix(q.KernelConsole, "ttyS0") {
		t.Errorf("qemu = %s %s %s, want x86_64 ttyS0 ipxe", q.Arch, q.KernelConsole, q.Loader)
	}
	if s := types["sim"]; s.BootloaderDelay >= hb.BootloaderDelay || s.MasterPrompt == hb.MasterPrompt {
		t.Errorf("sim delays %s, prompt %q; want faster than highbank and a prompt of its own", s.BootloaderDelay, s.MasterPrompt)
	}

	// The error patterns must catch what a failing Highbank prints, and not
	// a normal boot.
	console := map[string]bool{
		"[   12.345678] Kernel panic - not syncing: VFS: Unable to mount root fs":      true,
		"Unable to handle kernel NULL pointer dereference at virtual address 00000000": true,
		"Internal error: Oops: 17 [#1] SMP ARM":                                        true,
		"PXE-E32: TFTP open timeout":                                                   true,
		"TFTP error: 'File not found' (1)":                                             true,
		"Could not find kernel image: vmlinuz":                                         true,
		"Booting Linux on physical CPU 0":                                              false,
		"Freeing unused kernel memory: 236K":                                           false,
		"(initramfs) ":                                                                 false,
	}
	for line, bad := range console {
		matched := false
		for _, p := range hb.ErrorPatterns {
			if regexp.MustCompile(p).MatchString(line) {
				matched = true
			}
		}
		if matched != bad {
			t.Errorf("highbank error patterns match %q = %t, want %t", line, matched, bad)
		}
	}
	if !regexp.MustCompile(hb.MasterPrompt).MatchString("(initramfs) ") {
		t.Errorf("highbank master prompt %q does not match the initramfs shell", hb.MasterPrompt)
	}
}

func TestLoadEmpty(t *testing.T) {
	t.Setenv("BASALT_LOCK_DIR", "/run/test-locks")
	t.Setenv("XDG_CACHE_HOME", "/var/cache/test")
	l, err := Load("")
	if err != nil {
		t.Fatalf("Load(\"\") = %v", err)
	}
	got := []string{l.TFTPAddr, l.HTTPAddr, l.DHCP, l.LoaderDir, l.LockDir, l.CacheDir}
	want := []string{"127.0.0.1:0", "127.0.0.1:0", "none", "/usr/lib/PXELINUX:/usr/lib/syslinux/modules/bios:/usr/lib/ipxe", "/run/test-locks", "/var/cache/test/basalt"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load(\"\") defaults mismatch (-want +got):\n%s", diff)
	}
	if len(l.Devices) != 0 || l.Types["highbank"] == nil {
		t.Errorf("Load(\"\") = %d devices, types %v; want none and the built-ins", len(l.Devices), knownTypes(l.Types))
	}
	var zero Lab
	zero.SetDefaults()
	if zero.LockDir != "/run/test-locks" || zero.TFTPAddr != DefaultTFTPAddr || zero.Types["sim"] == nil {
		t.Errorf("zero Lab after SetDefaults = %+v, want defaults", zero)
	}
}

func TestLoadLab(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"lab.star": `lab(name = "rack2", tftp = "0.0.0.0:69", http = "192.168.2.1:8080",
    dhcp = "proxy", dhcp_interface = "eth1", loader_dir = "loaders", lock_dir = "/run/locks")`,
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{l.Name, l.TFTPAddr, l.HTTPAddr, l.DHCP, l.DHCPInterface, l.LoaderDir, l.LockDir, l.Dir}
	want := []string{"rack2", "0.0.0.0:69", "192.168.2.1:8080", "proxy", "eth1", filepath.Join(dir, "loaders"), "/run/locks", dir}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load(lab.star) mismatch (-want +got):\n%s", diff)
	}
}

// dhcp = "server" and a device's segment read back as written.
func TestLoadDHCPServerAndSegment(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"lab.star": `lab(dhcp = "server", dhcp_interface = "br7", dhcp_range = "10.7.0.100-10.7.0.199",
    dhcp_subnet = "10.7.0.0/24", dhcp_router = "10.7.0.1", dhcp_dns = ["10.7.0.53"], dhcp_lease_s = 600)`,
		"devices/v1.star": `device(type = "qemu", mac = "52:54:00:00:00:07", segment = "netns")`,
		"devices/h1.star": `device(type = "sim", mac = "52:54:00:00:00:08", segment = "vlan", segment_parent = "eth1", segment_vlan = 102, segment_addr = "10.102.0.1/24")`,
		"devices/u1.star": `device(type = "sim", mac = "52:54:00:00:00:09", segment = "netns", sim = {"bootloader": "u-boot"})`,
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{l.DHCP, l.DHCPInterface, l.DHCPRange, l.DHCPSubnet, l.DHCPRouter, fmt.Sprint(l.DHCPDNS), l.DHCPLease}
	want := []any{"server", "br7", "10.7.0.100-10.7.0.199", "10.7.0.0/24", "10.7.0.1", "[10.7.0.53]", 10 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lab dhcp server keys mismatch (-want +got):\n%s", diff)
	}
	v1, err := l.Config("v1")
	if err != nil {
		t.Fatal(err)
	}
	h1, err := l.Config("h1")
	if err != nil {
		t.Fatal(err)
	}
	if v1.Segment.Kind != "netns" || h1.Segment != (Segment{Kind: "vlan", Parent: "eth1", VLAN: 102, Addr: "10.102.0.1/24"}) {
		t.Errorf("segments = %+v, %+v; want netns and vlan eth1.102 10.102.0.1/24", v1.Segment, h1.Segment)
	}
	// A sim node's U-Boot gets a NIC on a netns segment.
	if u1, err := l.Config("u1"); err != nil || u1.Segment.Kind != "netns" {
		t.Errorf("sim with U-Boot on segment netns: %v, %+v", err, u1)
	}
}

// Tags put a device in pools beside its type's.
func TestDeviceTags(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"devices/s1.star": `device(type = "sim", tags = ["rack2", "sata"])`,
		"devices/s2.star": `device(type = "sim")`,
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{"s1": {"rack2", "sata"}, "s2": nil} {
		d, err := l.Config(name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Tags, want) {
			t.Errorf("Config(%s).Tags = %q, want %q", name, d.Tags, want)
		}
	}
}

func TestLoadDevices(t *testing.T) {
	t.Setenv("HB_PASS", "pw-from-env")
	dir := writeLab(t, map[string]string{
		"secrets/hb2": "pw-from-file\n",
		"devices/hb1.star": `
device(
    name = "hb1",
    type = "highbank",
    ipmi_host = "calxeda02-01-02",
    ipmi_user = "admin",
    ipmi_password = secret("HB_PASS"),
    mac = "FC-2F-40-17-DA-28",
    facts = {"rack": "r2", "slots": [1, 2], "info": {"rev": 3, "ok": True, "ratio": 0.5, "none": None}},
)`,
		"devices/hb2.star": `
device(
    type = "highbank",
    ipmi_host = "10.0.0.2",
    ipmi_port = 6230,
    ipmi_password = secret(file = "secrets/hb2"),
    cipher_suites = [3],
    ipmi_timeout_ms = 500,
    ipmi_retries = 1,
    ipmi_keepalive_ms = 0,
    console_command = "telnet localhost 4006",
    bootloader_serial_delay_ms = 0,
    power_command = {"reset": "pduclient --command reboot --port 05"},
)`,
		"devices/tcp1.star": `device(type = "qemu", console_address = "localhost:4007", power_command = {"on": "x", "off": "y"})`,
		"devices/s1.star":   `device(type = "sim", sim = {"console_drops": 2, "console_drop_interval_ms": 150, "udp_loss": 0.25, "sol_loss": 0.5, "type_interval_ms": 50, "boot_failure": True, "bmc_session_timeout_ms": 4000, "bootloader": "u-boot"})`,
		"devices/.#s1.star": `this is an editor lock file, never loaded`,
		"devices/README":    `not a device`,
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s) = %v", dir, err)
	}
	file := func(n string) string { return filepath.Join(dir, "devices", n+".star") }
	want := map[string]*Device{
		"hb1": {
			Name: "hb1", File: file("hb1"), MAC: "fc:2f:40:17:da:28",
			IPMI:    IPMI{Host: "calxeda02-01-02", Port: 623, User: "admin", Password: Secret{Env: "HB_PASS"}, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			Console: Console{Transport: "sol"},
			Facts:   map[string]any{"rack": "r2", "slots": []any{1, 2}, "info": map[string]any{"rev": 3, "ok": true, "ratio": 0.5, "none": nil}},
		},
		"hb2": {
			Name: "hb2", File: file("hb2"),
			IPMI:         IPMI{Host: "10.0.0.2", Port: 6230, Password: Secret{File: "secrets/hb2"}, CipherSuites: []int{3}, Timeout: 500 * time.Millisecond, Retries: 1, Keepalive: -1},
			Console:      Console{Transport: "command", Command: "telnet localhost 4006", bootloaderDelaySet: true},
			PowerCommand: map[string]string{"reset": "pduclient --command reboot --port 05"},
		},
		"tcp1": {
			Name: "tcp1", File: file("tcp1"),
			IPMI:         IPMI{Port: 623, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			Console:      Console{Transport: "tcp", Address: "localhost:4007"},
			PowerCommand: map[string]string{"on": "x", "off": "y"},
		},
		"s1": {
			Name: "s1", File: file("s1"),
			IPMI:    IPMI{Port: 623, CipherSuites: []int{17, 3}, Timeout: 2 * time.Second, Retries: 4, Keepalive: 10 * time.Second},
			Console: Console{Transport: "sol"},
			Sim:     SimFaults{ConsoleDrops: 2, ConsoleDropInterval: 150 * time.Millisecond, UDPLoss: 0.25, SOLLoss: 0.5, TypeInterval: 50 * time.Millisecond, BootFailure: true, SessionTimeout: 4 * time.Second, Bootloader: "u-boot"},
		},
	}
	if diff := cmp.Diff(want, l.Devices, deviceCmp); diff != "" {
		t.Errorf("Load devices mismatch (-want +got):\n%s", diff)
	}
	for name, typ := range map[string]string{"hb1": "highbank", "hb2": "highbank", "tcp1": "qemu", "s1": "sim"} {
		if d := l.Devices[name]; d == nil || d.Type != l.Types[typ] {
			t.Errorf("device %s type = %v, want %s", name, d, typ)
		}
	}
	// A device's delay overrides the type's, even with 0.
	for _, c := range []struct {
		dev        string
		boot, test time.Duration
	}{{"hb1", 300 * time.Millisecond, 100 * time.Millisecond}, {"hb2", 0, 100 * time.Millisecond}} {
		d := l.Devices[c.dev]
		if d.BootloaderDelay() != c.boot || d.TestShellDelay() != c.test {
			t.Errorf("%s delays = %s, %s, want %s, %s", c.dev, d.BootloaderDelay(), d.TestShellDelay(), c.boot, c.test)
		}
	}
	if d, err := l.Device("hb2"); err != nil || d.IPMI.Password.Value() != "pw-from-file" {
		t.Errorf("Device(hb2) = %v, %v; want the device with its file password", d, err)
	}
}

func TestLabTypeOverridesBuiltin(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"device-types/highbank.star": `device_type(arch = "armhf", kernel_console = "ttyAMA0,115200",
    bootloader_serial_delay_ms = 150, loader = "grub", facts = {"board": "ecx-1000 rev B"})`,
		"device-types/odroid.star": `device_type(arch = "arm64", loader = "grub")`,
		"devices/hb.star":          `device(type = "highbank", console = "command", console_command = "conserver hb", power_command = {"cycle": "pdu 3"})`,
		"devices/od.star":          `device(type = "odroid", console = "tcp", console_address = "[::1]:4000", power_command = {"cycle": "pdu 4"})`,
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	hb := l.Devices["hb"]
	if hb.Type.File != filepath.Join(dir, "device-types", "highbank.star") || hb.BootloaderDelay() != 150*time.Millisecond || hb.Type.Loader != "grub" {
		t.Errorf("hb type = %+v, want the lab's highbank", hb.Type)
	}
	if BuiltinTypes()["highbank"].BootloaderDelay != 300*time.Millisecond {
		t.Errorf("a lab's type changed the built-in one")
	}
	f := Facts(hb)
	want := map[string]any{
		"name": "hb", "type": "highbank", "arch": "armhf", "mac": "", "console": "command",
		"kernel_console": "ttyAMA0,115200", "bootloader_serial_delay_ms": 150, "test_shell_serial_delay_ms": 0,
		"master_prompt": "", "login_prompt": "", "shell_prompt": "", "loader": "grub", "board": "ecx-1000 rev B",
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Facts(hb) mismatch (-want +got):\n%s", diff)
	}
	if l.Devices["od"].Type.Arch != "arm64" {
		t.Errorf("od type = %+v, want the lab's odroid", l.Devices["od"].Type)
	}
}

func TestExampleLab(t *testing.T) {
	dir := filepath.Join("..", "..", "jobs", "lab")
	t.Setenv("HIGHBANK01_IPMI_PASSWORD", "")
	os.Unsetenv("HIGHBANK01_IPMI_PASSWORD")
	l, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(example lab) = %v", err)
	}
	var names []string
	for _, s := range List(l) {
		names = append(names, s.Name+":"+s.Type)
	}
	if diff := cmp.Diff([]string{"highbank01:highbank", "sim01:sim", "simuboot01:sim"}, names); diff != "" {
		t.Errorf("List(example lab) mismatch (-want +got):\n%s", diff)
	}
	if _, err := l.Device("highbank01"); err == nil || !strings.Contains(err.Error(), "HIGHBANK01_IPMI_PASSWORD is not set") {
		t.Errorf("Device(highbank01) without its password = %v, want an error naming HIGHBANK01_IPMI_PASSWORD", err)
	}
	t.Setenv("HIGHBANK01_IPMI_PASSWORD", "x")
	l, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := l.Device("highbank01")
	if err != nil {
		t.Fatalf("Device(highbank01) = %v", err)
	}
	if hb.IPMI.Host != "calxeda02-01-02" || hb.MAC != "fc:2f:40:17:da:28" || hb.BootloaderDelay() != 300*time.Millisecond {
		t.Errorf("highbank01 = %+v, want the Highbank node of the example", hb)
	}
	if _, err := l.Device("sim01"); err != nil {
		t.Errorf("Device(sim01) = %v", err)
	}
}

func TestDeviceByFileAndName(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"devices/a.star":   `device(type = "sim")`,
		"elsewhere/b.star": `device(type = "sim", ipmi_host = "127.0.0.1", ipmi_password = secret(file = "pw"))`,
		"elsewhere/pw":     "pw\n",
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := l.Device("a"); err != nil || d.Name != "a" {
		t.Errorf("Device(a) = %v, %v", d, err)
	}
	_, err = l.Device("nosuch")
	if err == nil || !strings.Contains(err.Error(), `unknown device "nosuch"`) || !strings.Contains(err.Error(), "known: a") {
		t.Errorf("Device(nosuch) = %v, want an error listing the known devices", err)
	}
	// A file outside the lab: secret(file=) resolves against the lab dir.
	b := filepath.Join(dir, "elsewhere", "b.star")
	if _, err := l.Device(b); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "pw")) {
		t.Errorf("Device(%s) = %v, want an error naming %s", b, err, filepath.Join(dir, "pw"))
	}
	// With no lab, against the file's own directory.
	var empty Lab
	d, err := empty.Device(b)
	if err != nil || d.IPMI.Password.Value() != "pw" {
		t.Errorf("Lab{}.Device(%s) = %v, %v; want the device with password from elsewhere/pw", b, d, err)
	}
}

func TestBuiltinSim(t *testing.T) {
	a, b := BuiltinSim(""), BuiltinSim("sim-2")
	if a.Name != "sim" || a.Type == nil || a.Type.Name != "sim" || a.Console.Transport != "sol" {
		t.Errorf("BuiltinSim(\"\") = %+v, want name sim, type sim, console sol", a)
	}
	if _, err := parseMAC(a.MAC); err != nil || a.MAC == b.MAC {
		t.Errorf("BuiltinSim MACs = %q, %q; want valid and distinct", a.MAC, b.MAC)
	}
	if BuiltinSim("sim-2").MAC != b.MAC {
		t.Errorf("BuiltinSim(sim-2) MAC is not stable")
	}
	f := Facts(a)
	if f["name"] != "sim" || f["master_prompt"] != a.Type.MasterPrompt || f["bootloader_serial_delay_ms"] != 2 {
		t.Errorf("Facts(BuiltinSim) = %v", f)
	}
}

// errorCase is a lab whose loading must fail with an error holding every
// string of want (the first is the file:line).
type errorCase struct {
	name  string
	files map[string]string
	want  []string
	not   []string // strings the error must not hold
}

func TestLoadErrors(t *testing.T) {
	dev := func(src string) map[string]string { return map[string]string{"devices/d1.star": src} }
	const df = "devices/d1.star"
	cases := []errorCase{
		{"unknown type", dev(`device(type = "nosuch")`), []string{df + ":1:", `unknown device type "nosuch"`, "highbank, qemu, sim"}, nil},
		{"lab type listed", map[string]string{"device-types/odroid.star": `device_type()`, df: `device(type = "x")`}, []string{df + ":1:", "highbank, odroid, qemu, sim"}, nil},
		{"missing type", dev(`device()`), []string{df + ":1:", "type is required"}, nil},
		{"bad mac", dev(`device(type = "sim", mac = "zz:zz:zz")`), []string{df + ":1:", `mac "zz:zz:zz" is not a MAC address`}, nil},
		{"8-byte mac", dev(`device(type = "sim", mac = "01:02:03:04:05:06:07:08")`), []string{df + ":1:", "is not a MAC address"}, nil},
		{"plain password", dev("device(type = 'highbank', ipmi_host = 'h',\n    ipmi_password = 'hunter2')"), []string{df + ":1:", "ipmi_password must be secret(", "not a string"}, []string{"hunter2"}},
		{"no password", dev(`device(type = "highbank", ipmi_host = "h")`), []string{df + ":1:", "ipmi_password is missing", "secret("}, nil},
		{"no ipmi host", dev(`device(type = "highbank")`), []string{df + ":1:", "ipmi_host is required"}, nil},
		{"name mismatch", dev(`device(name = "other", type = "sim")`), []string{df + ":1:", `name "other" does not match the file name d1.star`}, nil},
		{"bad file name", map[string]string{"devices/-x.star": `device(type = "sim")`}, []string{"devices/-x.star:1:", "is not valid"}, nil},
		{"positional", dev(`device("d1", type = "sim")`), []string{df + ":1:", "keyword arguments only"}, nil},
		{"syntax", dev("device(type = \"sim\"\n"), []string{df + ":2:", "got end of file"}, nil},
		{"load", dev(`load("x.star", "y")` + "\n" + `device(type = "sim")`), []string{df + ":1:", "load() is not allowed"}, nil},
		{"no call", dev(`x = 1`), []string{df + ":", "no device(...) call"}, nil},
		{"twice", dev("device(type = 'sim')\ndevice(type = 'sim')"), []string{df + ":2:", "called twice"}, nil},
		{"lab in device file", dev(`lab()`), []string{df + ":1:", "not allowed in d1.star", "device()"}, nil},
		{"command without command", dev(`device(type = "sim", console = "command")`), []string{df + ":1:", "needs console_command"}, nil},
		{"tcp bad address", dev(`device(type = "sim", console = "tcp", console_address = "nohost")`), []string{df + ":1:", `console_address = "nohost"`}, nil},
		{"command with sol", dev(`device(type = "sim", console = "sol", console_command = "x")`), []string{df + ":1:", "console_command is set"}, nil},
		{"bad console", dev(`device(type = "sim", console = "usb")`), []string{df + ":1:", `console = "usb" is not one of sol, command, tcp, sim`}, nil},
		{"sim console on highbank", dev(`device(type = "highbank", console = "sim")`), []string{df + ":1:", "only for devices of type sim"}, nil},
		{"sim faults on highbank", dev(`device(type = "highbank", ipmi_host = "h", ipmi_password = secret("X"), sim = {})`), []string{df + ":1:", "sim = {...} is only for devices of type sim"}, nil},
		{"unknown fault", dev(`device(type = "sim", sim = {"bogus": 1})`), []string{df + ":1:", "sim: unknown key \"bogus\"", "udp_loss"}, nil},
		{"typo fault", dev(`device(type = "sim", sim = {"kernel_panik": True})`), []string{df + ":1:", "sim: unknown key \"kernel_panik\" (did you mean kernel_panic?)"}, nil},
		{"bad udp loss", dev(`device(type = "sim", sim = {"udp_loss": 2})`), []string{df + ":1:", "udp_loss must be a number in 0..1"}, nil},
		{"bad bootloader", dev(`device(type = "sim", sim = {"bootloader": "grub"})`), []string{df + ":1:", `bootloader must be "u-boot", not "grub"`}, nil},
		{"tags not a list", dev(`device(type = "sim", tags = "rack2")`), []string{df + ":1:", "tags must be a list, not string"}, nil},
		{"bad tag", dev(`device(type = "sim", tags = ["rack2", "no spaces"])`), []string{df + ":1:", `tags[1] = "no spaces" is not a tag`}, nil},
		{"cipher suite", dev(`device(type = "sim", cipher_suites = [17, 99])`), []string{df + ":1:", "cipher_suites[1] = 99"}, nil},
		{"port range", dev(`device(type = "sim", ipmi_port = 70000)`), []string{df + ":1:", "ipmi_port = 70000 is out of range 1..65535"}, nil},
		{"port type", dev(`device(type = "sim", ipmi_port = "623")`), []string{df + ":1:", "ipmi_port must be an integer, not string"}, nil},
		{"negative delay", dev(`device(type = "sim", bootloader_serial_delay_ms = -1)`), []string{df + ":1:", "bootloader_serial_delay_ms = -1 is out of range"}, nil},
		{"not a key", dev(`device(type = "sim", rack = "r2")`), []string{df + ":1:", "device: unknown key rack (device() takes ", "cipher_suites", "; free-form facts go in facts = {...}"}, nil},
		{"key of the type", dev(`device(type = "sim", arch = "x86_64")`), []string{df + ":1:", "device: unknown key arch (arch is a key of device_type(), not device(), or facts = {...} for a free-form fact)"}, nil},
		{"typo key", dev(`device(type = "highbank", ipmi_host = "h", ipmi_password = secret("X"), cipher_suite = [3])`), []string{df + ":1:", "unknown key cipher_suite (did you mean cipher_suites?)"}, nil},
		{"typo key line", dev("device(\n    type = \"sim\",\n    ipmi_hots = \"h\",\n)"), []string{df + ":3:5:", "unknown key ipmi_hots (did you mean ipmi_host?)"}, nil},
		{"reserved fact", dev(`device(type = "sim", facts = {"arch": "x86_64"})`), []string{df + ":1:", `facts["arch"]: basalt sets ctx.device.arch itself`}, nil},
		{"facts not dict", dev(`device(type = "sim", facts = ["rack"])`), []string{df + ":1:", "facts must be a dict, not list"}, nil},
		{"secret fact", dev(`device(type = "sim", facts = {"token": secret("TOKEN")})`), []string{df + ":1:", "secret() is only allowed for ipmi_password"}, nil},
		{"function fact", dev(`device(type = "sim", facts = {"f": len})`), []string{df + ":1:", `facts["f"]: a builtin_function_or_method cannot be a fact`}, nil},
		{"vm key on sim", dev(`device(type = "sim", vm_tap = "tap0")`), []string{df + ":1:", "vm_tap is only for devices of type qemu"}, nil},
		{"vm key type", dev(`device(type = "qemu", vm_disk_mb = "64")`), []string{df + ":1:", "vm_disk_mb must be an integer, not string"}, nil},
		{"secret both", dev(`device(type = "sim", ipmi_password = secret("A", file = "b"))`), []string{df + ":1:", "not both"}, nil},
		{"secret bad env", dev(`device(type = "sim", ipmi_password = secret("A B"))`), []string{df + ":1:", `"A B" is not an environment variable name`}, nil},
		{"power key", dev(`device(type = "sim", power_command = {"explode": "x"})`), []string{df + ":1:", `power_command key "explode"`}, nil},
		{"undefined", dev(`foo()`), []string{df + ":1:", "undefined: foo"}, nil},
		{"runtime error", dev("X = 1\ndevice(type = \"sim\", facts = {\"n\": X // 0})"), []string{df + ":2:", "division by zero"}, nil},
		{"step limit", dev("x = [i for i in range(10000000)]\ndevice(type = 'sim')"), []string{df + ":1:", "too many steps"}, nil},
		{"while", dev("while True:\n  pass"), []string{df + ":1:", "while"}, nil},
		{"error line", dev("# comment\n\ndevice(\n    type = \"sim\",\n    mac = \"nope\",\n)"), []string{df + ":3:", `mac "nope"`}, nil},
		{"cycle fact", dev("l = []\nl.append(l)\ndevice(type = 'sim', facts = {'l': l})"), []string{df + ":3:", "nested too deeply"}, nil},

		// Device types.
		{"type bad regexp", map[string]string{"device-types/t1.star": `device_type(error_patterns = ["ok", "(unclosed"])`}, []string{"device-types/t1.star:1:", "error_patterns[1] is not a valid regular expression"}, nil},
		{"type bad prompt", map[string]string{"device-types/t1.star": `device_type(master_prompt = "[")`}, []string{"device-types/t1.star:1:", "master_prompt is not a valid regular expression"}, nil},
		{"type loader", map[string]string{"device-types/t1.star": `device_type(loader = "uboot")`}, []string{"device-types/t1.star:1:", `loader = "uboot" is not one of pxelinux, ipxe, grub`}, nil},
		{"type name", map[string]string{"device-types/t1.star": `device_type(name = "t2")`}, []string{"device-types/t1.star:1:", `name "t2" does not match the file name t1.star`}, nil},
		{"type not a key", map[string]string{"device-types/t1.star": `device_type(mac = "x")`}, []string{"device-types/t1.star:1:", "device_type: unknown key mac (mac is a key of device(), not device_type()"}, nil},
		{"type typo", map[string]string{"device-types/t1.star": `device_type(kernel_consol = "ttyS0")`}, []string{"device-types/t1.star:1:", "unknown key kernel_consol (did you mean kernel_console?)"}, nil},
		{"type reserved fact", map[string]string{"device-types/t1.star": `device_type(facts = {"mac": "x"})`}, []string{"device-types/t1.star:1:", `facts["mac"]: basalt sets ctx.device.mac itself`}, nil},
		{"type extends unknown", map[string]string{"device-types/t1.star": `device_type(extends = "qemuu")`}, []string{"device-types/t1.star:1:", `extends = "qemuu": no such built-in device type (did you mean "qemu"?)`}, nil},
		{"type extends lab type", map[string]string{"device-types/a.star": `device_type()`, "device-types/t1.star": `device_type(extends = "a")`}, []string{"device-types/t1.star:1:", `extends = "a": no such built-in device type (built-in types: highbank, qemu, sim)`}, nil},
		{"type patterns not list", map[string]string{"device-types/t1.star": `device_type(error_patterns = "Oops")`}, []string{"device-types/t1.star:1:", "error_patterns must be a list"}, nil},
		{"secret in type", map[string]string{"device-types/t1.star": `device_type(x = secret("A"))`}, []string{"device-types/t1.star:1:", "secret: only allowed in device files"}, nil},

		// lab.star.
		{"lab dhcp", map[string]string{"lab.star": `lab(dhcp = "full")`}, []string{"lab.star:1:", `dhcp = "full" is not one of none, proxy`}, nil},
		{"lab proxy", map[string]string{"lab.star": `lab(dhcp = "proxy")`}, []string{"lab.star:1:", "needs dhcp_interface"}, nil},
		{"lab server no range", map[string]string{"lab.star": `lab(dhcp = "server", dhcp_interface = "br0")`}, []string{"lab.star:1:", `dhcp = "server" needs dhcp_range`}, nil},
		{"lab server range", map[string]string{"lab.star": `lab(dhcp = "server", dhcp_interface = "br0", dhcp_range = "10.0.0.9-10.0.0.1")`}, []string{"lab.star:1:", `dhcp_range = "10.0.0.9-10.0.0.1": last address 10.0.0.1 is before the first 10.0.0.9`}, nil},
		{"lab server subnet", map[string]string{"lab.star": `lab(dhcp = "server", dhcp_interface = "br0", dhcp_range = "10.0.0.9-10.0.0.20", dhcp_subnet = "10.1.0.0/16")`}, []string{"lab.star:1:", `is not inside dhcp_subnet = "10.1.0.0/16"`}, nil},
		{"lab server dns", map[string]string{"lab.star": `lab(dhcp = "server", dhcp_interface = "br0", dhcp_range = "10.0.0.9-10.0.0.20", dhcp_dns = ["dns.example"])`}, []string{"lab.star:1:", `"dns.example" is not an IPv4 address`}, nil},
		{"lab range not server", map[string]string{"lab.star": `lab(dhcp = "proxy", dhcp_interface = "br0", dhcp_range = "10.0.0.9-10.0.0.20")`}, []string{"lab.star:1:", `are for dhcp = "server", not "proxy"`}, nil},
		{"segment vlan incomplete", dev(`device(type = "sim", mac = "02:42:00:00:00:01", segment = "vlan", segment_vlan = 12)`), []string{df + ":1:", `segment = "vlan" needs segment_parent, segment_vlan and segment_addr`}, nil},
		{"segment netns not qemu", dev(`device(type = "sim", mac = "02:42:00:00:00:01", segment = "netns")`), []string{df + ":1:", `segment = "netns" is for a qemu device basalt starts`}, nil},
		{"segment netns tap", dev(`device(type = "qemu", mac = "02:42:00:00:00:01", segment = "netns", vm_tap = "tap0")`), []string{df + ":1:", `drop vm_tap`}, nil},
		{"lab unknown", map[string]string{"lab.star": `lab(tftp_root = "/srv")`}, []string{"lab.star:1:", "unknown key tftp_root (did you mean tftp?)"}, nil},
		{"lab typo", map[string]string{"lab.star": `lab(dhcp_iface = "eth1")`}, []string{"lab.star:1:", "unknown key dhcp_iface (did you mean dhcp_interface?)"}, nil},
		{"lab addr", map[string]string{"lab.star": `lab(tftp = "localhost")`}, []string{"lab.star:1:", `tftp = "localhost": not host:port`}, nil},
		{"lab device()", map[string]string{"lab.star": `device(type = "sim")`}, []string{"lab.star:1:", "not allowed in lab.star", "lab()"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeLab(t, c.files)
			l, err := Load(dir)
			if err == nil {
				// A broken device file breaks only its device.
				for _, d := range l.Devices {
					if d.Err != nil {
						err = d.Err
					}
				}
			}
			if err == nil {
				t.Fatalf("Load(%v) = %+v, nil; want an error holding %q", c.files, l, c.want)
			}
			msg := err.Error()
			t.Logf("Load: %s", strings.ReplaceAll(msg, dir+"/", ""))
			want := append([]string{}, c.want...)
			want[0] = filepath.Join(dir, want[0])
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("Load(%v) = %q, want it to hold %q", c.files, msg, w)
				}
			}
			for _, n := range c.not {
				if strings.Contains(msg, n) {
					t.Errorf("Load(%v) = %q, which holds %q", c.files, msg, n)
				}
			}
		})
	}
}

func TestLoadMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nolab")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Load(%s) = %v, want an error naming the directory", dir, err)
	}
}

func TestSecretErrors(t *testing.T) {
	dir := writeLab(t, map[string]string{
		"devices/env.star":   `device(type = "highbank", ipmi_host = "h", ipmi_password = secret("BASALT_TEST_UNSET_PW"))`,
		"devices/empty.star": `device(type = "highbank", ipmi_host = "h", ipmi_password = secret("BASALT_TEST_EMPTY_PW"))`,
		"devices/file.star":  `device(type = "highbank", ipmi_host = "h", ipmi_password = secret(file = "secrets/missing"))`,
		"devices/blank.star": `device(type = "highbank", ipmi_host = "h", ipmi_password = secret(file = "secrets/blank"))`,
		"secrets/blank":      "\n",
	})
	os.Unsetenv("BASALT_TEST_UNSET_PW")
	t.Setenv("BASALT_TEST_EMPTY_PW", "")
	l, err := Load(dir)
	if err != nil {
		t.Fatalf("Load = %v; a missing secret must not fail the whole lab", err)
	}
	for name, want := range map[string]string{
		"env":   "environment variable BASALT_TEST_UNSET_PW is not set",
		"empty": "environment variable BASALT_TEST_EMPTY_PW is empty",
		"file":  "cannot read secret file " + filepath.Join(dir, "secrets/missing") + ": no such file or directory",
		"blank": "secret file " + filepath.Join(dir, "secrets/blank") + " is empty",
	} {
		_, err := l.Device(name)
		file := filepath.Join(dir, "devices", name+".star") + ":1:"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), file) {
			t.Errorf("Device(%s) = %v, want %s...%s", name, err, file, want)
		}
	}
	// Listing reads no secrets: nothing is a problem until a run.
	for _, s := range List(l) {
		if s.Problem != "" {
			t.Errorf("List: %s problem %q, want none (list reads no secrets)", s.Name, s.Problem)
		}
	}
}

// TestWrongTypedArgument: a lab function's argument of the wrong type is an
// error at the call's file:line naming the function and the key, for every
// function; None is the same as leaving the key out.
func TestWrongTypedArgument(t *testing.T) {
	for _, c := range []errorCase{
		{"lab tftp", map[string]string{"lab.star": "\nlab(tftp = 69)"}, []string{"lab.star:2:", "lab: tftp must be a string, not int"}, nil},
		{"lab dhcp list", map[string]string{"lab.star": `lab(dhcp = ["proxy"])`}, []string{"lab.star:1:", "lab: dhcp must be a string, not list"}, nil},
		{"type pxe", map[string]string{"device-types/t1.star": "# t1\ndevice_type(\n    pxe = \"yes\",\n)"}, []string{"device-types/t1.star:2:", "device_type: pxe must be True or False, not string"}, nil},
		{"type pattern element", map[string]string{"device-types/t1.star": `device_type(error_patterns = ["Oops", 3])`}, []string{"device-types/t1.star:1:", "device_type: error_patterns[1] must be a string, not int"}, nil},
		{"type delay", map[string]string{"device-types/t1.star": `device_type(bootloader_serial_delay_ms = 1.5)`}, []string{"device-types/t1.star:1:", "device_type: bootloader_serial_delay_ms must be an integer, not float"}, nil},
		{"device mac", map[string]string{"devices/d1.star": "\n\ndevice(type = \"sim\", mac = 1)"}, []string{"devices/d1.star:3:", "device: mac must be a string, not int"}, nil},
		{"device power_command", map[string]string{"devices/d1.star": `device(type = "sim", power_command = "pdu on")`}, []string{"devices/d1.star:1:", "device: power_command must be a dict, not string"}, nil},
		{"device huge int", map[string]string{"devices/d1.star": `device(type = "sim", ipmi_retries = 1 << 70)`}, []string{"devices/d1.star:1:", "device: ipmi_retries = 1180591620717411303424 is too large"}, nil},
		{"secret env", map[string]string{"devices/d1.star": `device(type = "sim", ipmi_password = secret(env = 7))`}, []string{"devices/d1.star:1:", "secret: ", "env", "want string"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeLab(t, c.files)
			l, err := Load(dir)
			if err == nil {
				// A broken device file breaks only its device.
				for _, d := range l.Devices {
					if d.Err != nil {
						err = d.Err
					}
				}
			}
			if err == nil {
				t.Fatalf("Load(%v) = nil, want an error", c.files)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, filepath.Join(dir, c.want[0])) {
				t.Errorf("Load(%v) = %q, want it to start with %s", c.files, msg, filepath.Join(dir, c.want[0]))
			}
			for _, w := range c.want[1:] {
				if !strings.Contains(msg, w) {
					t.Errorf("Load(%v) = %q, want it to hold %q", c.files, msg, w)
				}
			}
		})
	}
}

// TestEveryKeyUnpacks: every key of the schema is unpacked by its
// function (given None, the same as left out), so none is ever refused as
// unsupported or dropped.
func TestEveryKeyUnpacks(t *testing.T) {
	files := map[string]string{}
	for _, f := range []struct{ fn, file string }{{"lab", "lab.star"}, {"device_type", "device-types/t1.star"}, {"device", "devices/d1.star"}} {
		var kw []string
		for _, k := range schemaFunc(f.fn).Keys {
			kw = append(kw, k.Name+" = None")
		}
		if f.fn == "device" {
			kw = append(kw, `type = "sim"`)
			kw = slices.DeleteFunc(kw, func(s string) bool { return s == "type = None" })
		}
		files[f.file] = f.fn + "(" + strings.Join(kw, ", ") + ")"
	}
	l, err := Load(writeLab(t, files))
	if err != nil {
		t.Fatalf("Load(every key None) = %v", err)
	}
	if _, ok := l.Types["t1"]; !ok {
		t.Error("device type t1 with every key None not loaded")
	}
	if d, err := l.Device("d1"); err != nil || d.IPMI.Port != DefaultIPMIPort {
		t.Errorf("Device(d1) with every key None = %v, %v; want the defaults", d, err)
	}
}
