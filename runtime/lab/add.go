package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// AddOptions are the settings `basalt device add` puts in a new device
// file. Zero fields are left out.
type AddOptions struct {
	IPMIHost string
	IPMIUser string
	// PasswordEnv names the environment variable holding the BMC password;
	// default <NAME>_IPMI_PASSWORD (upper case, '-' and '.' as '_') when
	// IPMIHost is set.
	PasswordEnv string
	MAC         string
	// Ser2netPort is the device's ser2net port on this host: the console
	// becomes the command "telnet localhost PORT" (LAVA's add_device.py -t).
	Ser2netPort int
	// PDUPort is the device's PDU port: power goes through pdudaemon's
	// pduclient (LAVA's add_device.py -p), on, off and reboot of that port.
	PDUPort int
	// PDUHost is the PDU as pdudaemon's configuration names it (pduclient
	// --hostname); default "pdu", as add_device.py wrote.
	PDUHost string
	// PDUDaemon is the host pdudaemon runs on (pduclient --daemon);
	// default "localhost".
	PDUDaemon string
	// Console is sol | command | tcp | sim; default sol, or command with
	// Ser2netPort.
	Console string
	// Force overwrites an existing device file.
	Force bool
}

// AddDevice writes labDir/devices/NAME.star for a new device of type typ,
// as LAVA's add_device.py did: it checks that the type is known (built-in
// or in labDir/device-types) and that no device called name exists (unless
// o.Force), and checks that Load will accept the file before writing it.
// It returns the path written.
func AddDevice(labDir, typ, name string, o AddOptions) (string, error) {
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("device add: %v", err)
	}
	types := BuiltinTypes()
	typeFiles, err := starFiles(filepath.Join(labDir, "device-types"))
	if err != nil {
		return "", fmt.Errorf("device add: %w", err)
	}
	for _, f := range typeFiles {
		v, err := loadFile(&evalEnv{kind: kindType, file: f, labDir: labDir, types: BuiltinTypes()})
		if err != nil {
			return "", fmt.Errorf("device add: %w", err)
		}
		dt := v.(*DeviceType)
		types[dt.Name] = dt
	}
	if types[typ] == nil {
		return "", fmt.Errorf("device add: unknown device type %q (known types: %s; add labDir/device-types/%s.star to define it)", typ, knownTypes(types), typ)
	}
	// A type that PXE-boots needs the boot NIC's MAC: without it pxe.serve
	// has no config to write, and the job would fail mid-run.
	if types[typ].PXE && o.MAC == "" {
		if !types[typ].Is("sim") {
			return "", fmt.Errorf("device add: type %s PXE-boots: give the boot NIC's MAC with --mac aa:bb:cc:dd:ee:ff", typ)
		}
		o.MAC = BuiltinSim(name).MAC // a sim node's NIC is ours to name
	}
	dir := filepath.Join(labDir, "devices")
	path := filepath.Join(dir, name+".star")
	if _, err := os.Lstat(path); err == nil && !o.Force {
		return "", fmt.Errorf("device add: device %q already exists (%s); remove it or use --force to overwrite", name, path)
	}

	src, err := deviceSource(typ, name, o)
	if err != nil {
		return "", fmt.Errorf("device add: %w", err)
	}
	// Dry run: the file must load (without reading the secret, which may
	// not be set yet).
	if _, err := evalFile(&evalEnv{kind: kindDevice, file: path, base: name, labDir: labDir, types: types}, src); err != nil {
		return "", fmt.Errorf("device add: the new file would not load: %w", err)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("device add: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("device add: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(src); err != nil {
		tmp.Close()
		return "", fmt.Errorf("device add: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("device add: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("device add: %w", err)
	}
	if o.Force {
		err = os.Rename(tmp.Name(), path)
	} else {
		// Link fails if path appeared meanwhile: never overwrite by race.
		err = os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("device add: device %q already exists (%s); remove it or use --force to overwrite", name, path)
		}
	}
	if err != nil {
		return "", fmt.Errorf("device add: %w", err)
	}
	return path, nil
}

// DefaultPasswordEnv is the variable AddDevice names for a device's BMC
// password when none is given: "highbank-01" → HIGHBANK_01_IPMI_PASSWORD.
func DefaultPasswordEnv(name string) string {
	up := strings.Map(func(r rune) rune {
		if r == '-' || r == '.' {
			return '_'
		}
		return unicode.ToUpper(r)
	}, name)
	if up != "" && up[0] >= '0' && up[0] <= '9' {
		up = "_" + up
	}
	return up + "_IPMI_PASSWORD"
}

func printable(field, s string) error {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s holds a control character", field)
		}
	}
	return nil
}

var pduWordRE = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

// deviceSource renders a device file.
func deviceSource(typ, name string, o AddOptions) ([]byte, error) {
	for _, f := range []struct{ name, v string }{{"ipmi host", o.IPMIHost}, {"ipmi user", o.IPMIUser}, {"mac", o.MAC}, {"console", o.Console}} {
		if err := printable(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if (o.PDUHost != "" || o.PDUDaemon != "") && o.PDUPort == 0 {
		return nil, errors.New("--pdu-host and --pdu-daemon need --pdu-port (-p)")
	}
	pduHost, pduDaemon := o.PDUHost, o.PDUDaemon
	if pduHost == "" {
		pduHost = "pdu"
	}
	if pduDaemon == "" {
		pduDaemon = "localhost"
	}
	for _, f := range []struct{ name, v string }{{"--pdu-host", pduHost}, {"--pdu-daemon", pduDaemon}} {
		// One word of the command line, so the file says what runs.
		if !pduWordRE.MatchString(f.v) {
			return nil, fmt.Errorf("%s %q: want a host name (letters, digits, '.', '-', '_', ':')", f.name, f.v)
		}
	}
	if o.Ser2netPort < 0 || o.Ser2netPort > 65535 {
		return nil, fmt.Errorf("ser2net port %d is out of range 1..65535", o.Ser2netPort)
	}
	if o.PDUPort < 0 || o.PDUPort > 99 {
		return nil, fmt.Errorf("PDU port %d is out of range 1..99", o.PDUPort)
	}
	console := o.Console
	if o.Ser2netPort > 0 {
		if console != "" && console != "command" {
			return nil, fmt.Errorf("a ser2net port gives console %q, not %q", "command", console)
		}
		console = "command"
	}
	env := o.PasswordEnv
	if env == "" && o.IPMIHost != "" {
		env = DefaultPasswordEnv(name)
	}
	if env != "" && !envNameRE.MatchString(env) {
		return nil, fmt.Errorf("%q is not an environment variable name", env)
	}
	if o.MAC != "" {
		if _, err := parseMAC(o.MAC); err != nil {
			return nil, err
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Device %s, written by `basalt device add %s %s`. Edit freely;\n", name, typ, name)
	b.WriteString("# runtime/lab/README.md describes every key.\n\n")
	b.WriteString("device(\n")
	kv := func(k, v string) { fmt.Fprintf(&b, "    %s = %s,\n", k, v) }
	q := strconv.Quote
	kv("name", q(name))
	kv("type", q(typ))
	if o.IPMIHost != "" {
		kv("ipmi_host", q(o.IPMIHost))
	}
	if o.IPMIUser != "" {
		kv("ipmi_user", q(o.IPMIUser))
	}
	if env != "" {
		kv("ipmi_password", "secret("+q(env)+")")
	}
	if o.MAC != "" {
		mac, _ := parseMAC(o.MAC)
		kv("mac", q(mac))
	}
	if console != "" {
		kv("console", q(console))
	}
	if o.Ser2netPort > 0 {
		kv("console_command", q(fmt.Sprintf("telnet localhost %d", o.Ser2netPort)))
	}
	if o.PDUPort > 0 {
		b.WriteString("    power_command = {\n")
		for _, a := range []struct{ action, cmd string }{{"on", "on"}, {"off", "off"}, {"reset", "reboot"}} {
			fmt.Fprintf(&b, "        %s: %s,\n", q(a.action), q(fmt.Sprintf(
				"/usr/bin/pduclient --daemon %s --hostname %s --command %s --port %02d", pduDaemon, pduHost, a.cmd, o.PDUPort)))
		}
		b.WriteString("    },\n")
	}
	b.WriteString(")\n")
	return []byte(b.String()), nil
}
