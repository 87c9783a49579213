// Package lab reads a lab directory: lab.star (dispatcher addresses, DHCP
// mode), device-types/*.star (plus the built-in types shipped in stdlib) and
// devices/*.star, one per device. Passwords are secrets: a Secret prints as
// its reference, never its value.
package lab

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"go.starlark.net/syntax"
)

// Defaults used when a lab leaves a setting out (and by a zero Lab after
// SetDefaults).
const (
	DefaultTFTPAddr = "127.0.0.1:0"
	DefaultHTTPAddr = "127.0.0.1:0"
	DefaultDHCP     = "none"
	// DefaultDHCPLease is the lease time of server mode: long enough for
	// any job, so a client never has to renew mid-test.
	DefaultDHCPLease = time.Hour
	// DefaultLoaderDir is where Debian's pxelinux, syslinux-common and
	// ipxe packages install the bootloader binaries, searched in order.
	DefaultLoaderDir   = "/usr/lib/PXELINUX:/usr/lib/syslinux/modules/bios:/usr/lib/ipxe"
	DefaultIPMIPort    = 623
	DefaultIPMITimeout = 2 * time.Second // per IPMI attempt
	DefaultIPMIRetries = 4
	// DefaultIPMIKeepalive is how often an idle IPMI session is kept
	// alive: a third of the shortest session inactivity timeout known
	// among BMCs (OpenIPMI's ipmi_sim, 30 s; the spec's default is 60 s,
	// IPMI v2.0 §6.12.15), so one lost keepalive is survived.
	DefaultIPMIKeepalive = 10 * time.Second
)

// DefaultCipherSuites are tried in order when a device names none: 17
// (HMAC-SHA256, AES-CBC-128) then 3 (HMAC-SHA1, AES-CBC-128), IPMI v2.0
// table 22-20.
var DefaultCipherSuites = []int{17, 3}

// Lab is a parsed lab directory. Its zero value is a usable loopback lab
// with no devices: an empty setting means its default, and SetDefaults
// (which Load always calls) writes the defaults in.
type Lab struct {
	Dir  string // "" for the built-in sim-only lab
	Name string // lab(name=...); default the directory's base name

	// TFTPAddr and HTTPAddr are the dispatcher's listen addresses for PXE.
	// Default "127.0.0.1:0" (a free port).
	TFTPAddr string
	HTTPAddr string
	// DHCP is "none" (the site DHCP server points at us), "proxy" or
	// "server" (basalt is the segment's DHCP server for the job's
	// lifetime, leasing to the job's device alone). Default "none".
	DHCP          string
	DHCPInterface string // interface the proxy or server DHCP binds to
	// Server mode: the addresses leased (DHCPRange "first-last"), the
	// subnet ("" : the interface's prefix), the router and DNS servers
	// handed out (options 3 and 6), and the lease time (option 51;
	// default DefaultDHCPLease).
	DHCPRange  string
	DHCPSubnet string
	DHCPRouter string
	DHCPDNS    []string
	DHCPLease  time.Duration
	// LoaderDir holds bootloader binaries (pxelinux.0, ldlinux.c32,
	// ipxe.efi, undionly.kpxe). Default /usr/lib/PXELINUX (Debian's pxelinux
	// package; syslinux modules live in /usr/lib/syslinux/modules/bios);
	// never vendored.
	LoaderDir string
	// LockDir holds one lock file per device. Default $BASALT_LOCK_DIR or
	// /tmp/basalt-locks.
	LockDir string
	// CacheDir holds downloaded artifacts keyed by sha256. Default
	// $XDG_CACHE_HOME/basalt or ~/.cache/basalt.
	CacheDir string

	Types   map[string]*DeviceType
	Devices map[string]*Device
}

// DeviceType is the shared description of a kind of board.
type DeviceType struct {
	Name string
	Arch string
	// KernelConsole is the console= argument (ttyAMA0 on Highbank).
	KernelConsole string
	// Per-character delays when typing to the bootloader and to the test
	// shell (LAVA's bootloader_serial_delay_ms / test_shell_serial_delay_ms).
	BootloaderDelay time.Duration
	TestShellDelay  time.Duration
	// ErrorPatterns end any console expect at once with a device error
	// (kernel panic, Oops, bootloader errors). Regular expressions.
	ErrorPatterns []string
	// Prompts, as regular expressions.
	MasterPrompt string // shell of the PXE-booted master image
	LoginPrompt  string // login prompt of the deployed system
	ShellPrompt  string // shell prompt of the deployed system
	// Loader is the default PXE loader: pxelinux | ipxe | grub.
	Loader string
	// PXE says devices of this type PXE-boot, so each needs a MAC
	// (device add and check refuse one without). Default true.
	PXE bool
	// Extends is the built-in type this one started from, "" for none.
	Extends string
	// Facts are the type file's facts = {...}, shown to jobs as ctx.device.
	Facts map[string]any
	File  string // "" for built-in types
}

// Device is one board in the lab.
type Device struct {
	Name string
	Type *DeviceType
	IPMI IPMI
	MAC  string // boot NIC, lower case aa:bb:cc:dd:ee:ff
	// Tags name the pools the device is in besides its type's (rack2).
	Tags    []string
	Console Console
	// PowerCommand maps on/off/reset/cycle to a command line, for devices
	// powered by a PDU instead of their BMC (LAVA's hard_reset_command).
	PowerCommand map[string]string
	// Sim holds fault switches of a sim device.
	Sim SimFaults
	// VM holds the vm_* settings of a qemu device basalt starts itself
	// (string or int values).
	VM map[string]any
	// Segment is the broadcast domain of the device's own that basalt
	// makes for each job (segment = "netns" or "vlan"); zero for none.
	Segment Segment
	// Facts are the device file's facts = {...}, shown as ctx.device.
	Facts map[string]any
	File  string // "" for the built-in sim device

	// Err is why the device file is broken (file:line: message); such a
	// device is listed but cannot run jobs. nil for a good device.
	Err error

	// secretPos and labDir resolve the password when Lab.Device is asked
	// for the device: until then a secret is a reference only.
	secretPos syntax.Position
	labDir    string
}

// Is reports whether the type is called name or extends the type called
// name.
func (t *DeviceType) Is(name string) bool {
	return t != nil && (t.Name == name || t.Extends == name)
}

// IPMI says how to reach the device's BMC.
type IPMI struct {
	Host     string
	Port     int // default 623
	User     string
	Password Secret
	// CipherSuites are tried in order; default [17, 3]. Never discovery,
	// which costs ~6 s per connect.
	CipherSuites []int
	Timeout      time.Duration // per attempt; default 2s
	Retries      int           // attempts after the first on UDP loss; default 4
	// Keepalive is how often a session that carries nothing else is kept
	// alive (device key ipmi_keepalive_ms); it must be well inside the
	// BMC's session inactivity timeout. Default 10s; negative: never.
	Keepalive time.Duration
}

// Console says how to reach the device's serial console.
type Console struct {
	// Transport is sol | command | tcp | sim.
	Transport string
	Command   string // for command: run under a pty, e.g. "telnet localhost 4006"
	Address   string // for tcp: host:port of a raw console server (ser2net)
	// Delays override the device type's when non-zero (or when the device
	// file sets them, even to 0; see Device.BootloaderDelay).
	BootloaderDelay time.Duration
	TestShellDelay  time.Duration

	bootloaderDelaySet, testShellDelaySet bool
}

// SimFaults are the faults a sim device can be told to inject.
type SimFaults struct {
	ConsoleDrops int // close the SOL session this many times during the job
	// ConsoleDropInterval (key console_drop_interval_ms): how long an SOL
	// session lives before the next drop. 0: 400 ms.
	ConsoleDropInterval time.Duration
	UDPLoss             float64 // fraction of BMC datagrams dropped, 0..1
	SOLLoss             float64 // fraction of SOL datagrams dropped, 0..1, on top of UDPLoss
	// TypeInterval: characters typed to the bootloader faster than this are
	// dropped, as Highbank's bootloader and iPXE over SOL do. 0 = never drop.
	TypeInterval time.Duration
	BootFailure  bool // PXE ROM finds no boot file and hangs
	KernelPanic  bool // the booted kernel panics
	// SessionTimeout: the BMC forgets sessions silent this long and ignores
	// their packets, as ipmi_sim does after 30 s (key
	// bmc_session_timeout_ms). 0: go-ipmi's default, 60 s.
	SessionTimeout time.Duration
	// MasterHTTPD (key "master_httpd"): the master image runs busybox
	// httpd on port 80 with a document root of its own, as real master
	// images may; target.fetch must not use it.
	MasterHTTPD bool
	// Disk (key "disk"): a raw disk image file that is the node's disk,
	// kept across jobs (absolute once the device file is read). Empty: a
	// blank disk of the node's own, removed with it.
	Disk string
	// Bootloader (key "bootloader"): "u-boot" runs the sim's U-Boot
	// (builtins/pxe/ubootsim) at every power-on; "" boots straight from
	// the BMC's boot device.
	Bootloader string
}

// Secret is a password or token read from the environment or a file. Its
// String and Format never show the value, whatever the verb.
type Secret struct {
	Env  string
	File string // as written in the device file, relative to the lab directory
	// path is File resolved against the lab directory.
	path  string
	value string
}

// NewSecret returns a secret with a known value (tests, the sim device).
func NewSecret(ref, value string) Secret { return Secret{Env: ref, value: value} }

// Value returns the secret's value.
func (s Secret) Value() string { return s.value }

// String returns the reference, never the value.
func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "secret(" + s.Env + ")"
	case s.File != "":
		return "secret(file=" + s.File + ")"
	}
	return "secret()"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// Format prints the reference for every verb (%v, %+v, %#v, %s, %q, %x, %d
// ...), so no verb can reach the value through the struct's fields.
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// LogValue keeps log/slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte("<redacted>"), nil }

// IsZero reports whether the secret names nothing.
func (s Secret) IsZero() bool { return s.Env == "" && s.File == "" && s.value == "" }

// BootloaderDelay is the per-character delay when typing to the
// bootloader: the device file's bootloader_serial_delay_ms if it sets one,
// else the type's.
func (d *Device) BootloaderDelay() time.Duration {
	if d.Console.bootloaderDelaySet || d.Console.BootloaderDelay != 0 || d.Type == nil {
		return d.Console.BootloaderDelay
	}
	return d.Type.BootloaderDelay
}

// TestShellDelay is the per-character delay when typing to the test shell:
// the device file's test_shell_serial_delay_ms if it sets one, else the
// type's.
func (d *Device) TestShellDelay() time.Duration {
	if d.Console.testShellDelaySet || d.Console.TestShellDelay != 0 || d.Type == nil {
		return d.Console.TestShellDelay
	}
	return d.Type.TestShellDelay
}

// SetDefaults fills every empty setting of l with its default, so a zero
// Lab is usable.
func (l *Lab) SetDefaults() {
	if l.TFTPAddr == "" {
		l.TFTPAddr = DefaultTFTPAddr
	}
	if l.HTTPAddr == "" {
		l.HTTPAddr = DefaultHTTPAddr
	}
	if l.DHCP == "" {
		l.DHCP = DefaultDHCP
	}
	if l.LoaderDir == "" {
		l.LoaderDir = DefaultLoaderDir
	}
	if l.LockDir == "" {
		l.LockDir = DefaultLockDir()
	}
	if l.CacheDir == "" {
		l.CacheDir = DefaultCacheDir()
	}
	if l.Name == "" && l.Dir != "" {
		if abs, err := filepath.Abs(l.Dir); err == nil {
			l.Name = filepath.Base(abs)
		}
	}
	if l.Types == nil {
		l.Types = BuiltinTypes()
	}
	if l.Devices == nil {
		l.Devices = map[string]*Device{}
	}
}

// DefaultLockDir is $BASALT_LOCK_DIR, else /tmp/basalt-locks. It is a
// fixed path, not $TMPDIR: every runner on the host must see the same
// lock files.
func DefaultLockDir() string {
	if d := os.Getenv("BASALT_LOCK_DIR"); d != "" {
		return d
	}
	return "/tmp/basalt-locks"
}

// DefaultCacheDir is $XDG_CACHE_HOME/basalt, else ~/.cache/basalt, else a
// directory under the system's temporary directory.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "basalt")
	}
	return filepath.Join(os.TempDir(), "basalt-cache")
}

// Secrets returns the values of every secret the device holds, for
// redaction.
func (d *Device) Secrets() []string {
	if d == nil {
		return nil
	}
	var out []string
	if v := d.IPMI.Password.Value(); v != "" {
		out = append(out, v)
	}
	return out
}
