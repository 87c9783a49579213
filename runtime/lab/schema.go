package lab

import (
	"fmt"
	"sort"
	"strings"

	"github.com/basalt-lab/basalt/runtime/spell"
)

// Key is one keyword argument of a lab function. The schema is strict: a
// key not listed here is an error (with a did-you-mean), never a fact; a
// file's own facts go in facts = {...}.
type Key struct {
	Name    string
	Type    string // as shown by `basalt doc lab`: "string", "int (ms)", "dict", ...
	Default string // "" when there is none or it is described in Doc
	Doc     string
}

// Func is one of the functions lab files may call. Schema lists them; the
// same table builds the predeclared functions, checks every key, and is
// what `basalt doc lab` prints.
type Func struct {
	Name string
	Doc  string
	Keys []Key
}

// powerKeys and ipmiExtraKeys are device keys kept apart from the rest of
// the device's list for readability.
var (
	powerKeys = []Key{
		{Name: "power_command", Type: "dict", Doc: `Power through a PDU or script instead of the BMC: {"on": CMD, "off": CMD, "reset": CMD, "cycle": CMD, "status": CMD}; each CMD one command line run without a shell (LAVA's power_on_command, power_off_command, hard_reset_command are on, off, reset).`},
	}
	ipmiExtraKeys = []Key{
		{Name: "ipmi_keepalive_ms", Type: "int (ms)", Default: "10000", Doc: "Keep an idle IPMI session alive this often, well inside the BMC's session timeout (ipmi_sim drops idle sessions after ~30 s, the spec's default is 60 s); 0: never."},
	}
)

var labFunc = &Func{
	Name: "lab",
	Doc:  "lab.star: the dispatcher's settings. Every key is optional; without lab.star every default applies.",
	Keys: []Key{
		{Name: "name", Type: "string", Default: "the directory's name", Doc: "Name of the lab."},
		{Name: "tftp", Type: "host:port", Default: `"127.0.0.1:0"`, Doc: "TFTP listen address (port 0: a free port)."},
		{Name: "http", Type: "host:port", Default: `"127.0.0.1:0"`, Doc: "HTTP listen address."},
		{Name: "dhcp", Type: `"none" | "proxy" | "server"`, Default: `"none"`, Doc: `"none": the site DHCP server points targets at us; "proxy": answer PXE with a proxy DHCP; "server": be the segment's DHCP server for the job's lifetime, leasing to the job's device alone.`},
		{Name: "dhcp_interface", Type: "string", Doc: `Interface the proxy or server DHCP binds to; required with dhcp = "proxy" or "server".`},
		{Name: "dhcp_range", Type: "string", Doc: `dhcp = "server": the addresses leased, "FIRST-LAST" (10.0.0.100-10.0.0.199); required.`},
		{Name: "dhcp_subnet", Type: "string", Default: "the interface's IPv4 prefix", Doc: `dhcp = "server": the subnet (option 1), an IPv4 prefix holding dhcp_range.`},
		{Name: "dhcp_router", Type: "string", Doc: `dhcp = "server": the router handed out (option 3); none by default.`},
		{Name: "dhcp_dns", Type: "list of string", Doc: `dhcp = "server": DNS servers handed out (option 6); none by default.`},
		{Name: "dhcp_lease_s", Type: "int", Default: "3600", Doc: `dhcp = "server": lease time in seconds (option 51).`},
		{Name: "loader_dir", Type: "path", Default: DefaultLoaderDir, Doc: "Bootloader binaries (pxelinux.0, ldlinux.c32, ipxe); colon-separated, searched in order; relative to the lab."},
		{Name: "lock_dir", Type: "path", Default: "$BASALT_LOCK_DIR, else /tmp/basalt-locks", Doc: "One lock file per device."},
		{Name: "cache_dir", Type: "path", Default: "$XDG_CACHE_HOME/basalt", Doc: "Downloaded artifacts, keyed by sha256."},
	},
}

var deviceTypeFunc = &Func{
	Name: "device_type",
	Doc:  "device-types/NAME.star: the shared description of a kind of board. A lab's type replaces a built-in type of the same name, or, with extends, starts from it.",
	Keys: []Key{
		{Name: "name", Type: "string", Default: "the file name", Doc: "Must equal the file name."},
		{Name: "extends", Type: "string", Doc: `A built-in type to start from ("qemu"): every key left out keeps its value, facts are merged.`},
		{Name: "arch", Type: "string", Doc: "CPU architecture (arm, arm64, x86_64)."},
		{Name: "kernel_console", Type: "string", Doc: "The console= argument of the kernel (ttyAMA0, ttyS0,115200)."},
		{Name: "bootloader_serial_delay_ms", Type: "int (ms)", Default: "0", Doc: "Per-character delay when typing to the bootloader."},
		{Name: "test_shell_serial_delay_ms", Type: "int (ms)", Default: "0", Doc: "Per-character delay when typing to the shell."},
		{Name: "error_patterns", Type: "list of regexps", Doc: "A console match of any ends the expect at once with a device error (kernel panic, PXE errors)."},
		{Name: "master_prompt", Type: "regexp", Doc: "Shell prompt of the PXE-booted master image."},
		{Name: "login_prompt", Type: "regexp", Doc: "Login prompt of the deployed system."},
		{Name: "shell_prompt", Type: "regexp", Doc: "Shell prompt of the deployed system."},
		{Name: "loader", Type: `"pxelinux" | "ipxe" | "grub"`, Default: `"pxelinux"`, Doc: "Default PXE loader."},
		{Name: "pxe", Type: "bool", Default: "True", Doc: "Devices of this type PXE-boot: each needs a mac (checked by device add and check)."},
		{Name: "facts", Type: "dict", Doc: "Free-form facts, shown to jobs as ctx.device.<key>; a device's facts override them."},
	},
}

var deviceFunc = &Func{
	Name: "device",
	Doc:  "devices/NAME.star: one board. A broken device file makes that device unusable (device list shows why), not the lab.",
	Keys: append(append([]Key{
		{Name: "name", Type: "string", Default: "the file name", Doc: "Must equal the file name; [A-Za-z0-9][A-Za-z0-9._-]*, at most 64."},
		{Name: "type", Type: "string", Doc: "Required: a built-in device type or one in device-types/."},
		{Name: "ipmi_host", Type: "string", Doc: `The BMC. Required unless the type is sim or qemu (basalt brings a BMC), or the console is not "sol" and power goes through power commands.`},
		{Name: "ipmi_port", Type: "int", Default: "623", Doc: "BMC UDP port."},
		{Name: "ipmi_user", Type: "string", Doc: "BMC user."},
		{Name: "ipmi_password", Type: "secret", Doc: `secret("ENV") or secret(file = "path"); required with ipmi_host; never a plain string.`},
		{Name: "cipher_suites", Type: "list of int", Default: "[17, 3]", Doc: "IPMI v2.0 cipher suites tried in order; never discovery."},
		{Name: "ipmi_timeout_ms", Type: "int (ms)", Default: "2000", Doc: "Timeout of one IPMI attempt."},
		{Name: "ipmi_retries", Type: "int", Default: "4", Doc: "Attempts after the first on UDP loss."},
	}, ipmiExtraKeys...), append([]Key{
		{Name: "mac", Type: "string", Doc: "Boot NIC (aa:bb:cc:dd:ee:ff); required when the type PXE-boots."},
		{Name: "console", Type: `"sol" | "command" | "tcp" | "sim"`, Default: `"command" with console_command, "tcp" with console_address, else "sol"`, Doc: "Console transport."},
		{Name: "console_command", Type: "string", Doc: `console = "command": run under a pty, e.g. "telnet localhost 4006".`},
		{Name: "console_address", Type: "host:port", Doc: `console = "tcp": a raw TCP console server (ser2net).`},
		{Name: "bootloader_serial_delay_ms", Type: "int (ms)", Default: "the type's", Doc: "Overrides the type's (0 is an override too)."},
		{Name: "test_shell_serial_delay_ms", Type: "int (ms)", Default: "the type's", Doc: "Overrides the type's."},
	}, append(append([]Key(nil), powerKeys...),
		Key{Name: "sim", Type: "dict", Doc: "Type sim only: faults to inject; keys: " + simKeyNames() + "."},
		Key{Name: "vm_tap", Type: "string", Doc: "Type qemu without ipmi_host: tap device the VM's NIC attaches to."},
		Key{Name: "vm_netns", Type: "string", Doc: "Type qemu: network namespace qemu runs in."},
		Key{Name: "vm_disk", Type: "path", Doc: "Type qemu: disk image, relative to the lab; default a blank disk of vm_disk_mb MiB."},
		Key{Name: "vm_disk_mb", Type: "int", Default: "256", Doc: "Type qemu: size of the blank disk."},
		Key{Name: "vm_memory_mb", Type: "int", Default: "512", Doc: "Type qemu: guest RAM."},
		Key{Name: "vm_qemu", Type: "string", Default: "qemu-system-x86_64", Doc: "Type qemu: emulator binary."},
		Key{Name: "vm_kernel", Type: "path", Doc: "Type qemu: boot this kernel directly."},
		Key{Name: "vm_initrd", Type: "path", Doc: "Type qemu: initrd of vm_kernel."},
		Key{Name: "vm_append", Type: "string", Doc: "Type qemu: command line of vm_kernel."},
		Key{Name: "segment", Type: `"netns" | "vlan"`, Doc: `A broadcast domain of the job's own, made by basalt run and removed on every exit: "netns" (type qemu without ipmi_host: a network namespace with a bridge and the VM's tap; or a sim node with sim = {"bootloader": "u-boot"}: U-Boot's NIC on that bridge) or "vlan" (an 802.1Q subinterface of segment_parent); basalt is its DHCP server (dhcp = "server" on it), TFTP and HTTP.`},
		Key{Name: "segment_parent", Type: "string", Doc: `segment = "vlan": the trunk interface the switch port of the device's VLAN is on.`},
		Key{Name: "segment_vlan", Type: "int", Doc: `segment = "vlan": the 802.1Q VLAN ID (1-4094).`},
		Key{Name: "segment_addr", Type: "string", Doc: `segment = "vlan": the dispatcher's address on the subinterface, an IPv4 prefix (10.102.0.1/24); the other addresses of the prefix are leased.`},
		Key{Name: "tags", Type: "list of string", Doc: `Pools the device is in besides its type's: basalt run --device-type TYPE --device-tag TAG picks the first free device of the type carrying every tag given (["rack2"]).`},
		Key{Name: "facts", Type: "dict", Doc: "Free-form facts, shown to jobs as ctx.device.<key>, over the type's."},
	)...)...),
}

var secretFunc = &Func{
	Name: "secret",
	Doc:  `secret("ENV") or secret(file = "path"): a reference to a password, read only when a job runs on the device (never by check, device show or device list). Only in device files.`,
	Keys: []Key{
		{Name: "env", Type: "string", Doc: "Environment variable holding the value (also the first positional argument)."},
		{Name: "file", Type: "path", Doc: "File holding the value, relative to the lab; trailing newlines dropped; at most 64 KiB."},
	},
}

// Schema is every function lab files may call, with its keys.
var Schema = []*Func{labFunc, deviceTypeFunc, deviceFunc, secretFunc}

func (f *Func) key(name string) (Key, bool) {
	for _, k := range f.Keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

func (f *Func) names() []string {
	out := make([]string, len(f.Keys))
	for i, k := range f.Keys {
		out[i] = k.Name
	}
	return out
}

// unknownKey words the error for a key f does not take: the key meant, or
// the function the key belongs to, or the keys f takes.
func (f *Func) unknownKey(key string) string {
	if s := spell.Suggest(key, f.names()); s != "" {
		return fmt.Sprintf("unknown key %s (did you mean %s?)", key, s)
	}
	for _, g := range Schema {
		if g == f || g == secretFunc {
			continue
		}
		if s := spell.Suggest(key, g.names()); s != "" {
			hint := ""
			if _, ok := f.key("facts"); ok {
				hint = ", or facts = {...} for a free-form fact"
			}
			return fmt.Sprintf("unknown key %s (%s is a key of %s(), not %s()%s)", key, s, g.Name, f.Name, hint)
		}
	}
	msg := unknownKey(f.Name+"()", key, f.names())
	if _, ok := f.key("facts"); ok {
		msg += "; free-form facts go in facts = {...}"
	}
	return msg
}

// unknownKey words the error for a key what does not take.
func unknownKey(what, key string, known []string) string {
	msg := fmt.Sprintf("unknown key %s", key)
	if s := spell.Suggest(key, known); s != "" {
		return msg + fmt.Sprintf(" (did you mean %s?)", s)
	}
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	return msg + fmt.Sprintf(" (%s takes %s)", what, strings.Join(sorted, ", "))
}
