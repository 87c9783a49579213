package lab

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/stdlib"
)

// builtinTypes evaluates stdlib's device-types/*.star once.
var builtinTypes = sync.OnceValues(func() (map[string]*DeviceType, error) {
	types := map[string]*DeviceType{}
	names, err := fs.Glob(stdlib.FS, "device-types/*.star")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		src, err := fs.ReadFile(stdlib.FS, name)
		if err != nil {
			return nil, err
		}
		env := &evalEnv{
			kind:    kindType,
			file:    "@stdlib//" + name,
			base:    strings.TrimSuffix(path.Base(name), ".star"),
			builtin: true,
		}
		v, err := evalFile(env, src)
		if err != nil {
			return nil, fmt.Errorf("built-in device type: %w", err)
		}
		dt := v.(*DeviceType)
		types[dt.Name] = dt
	}
	return types, nil
})

// BuiltinTypes returns the device types shipped in stdlib/device-types,
// keyed by name. The map is the caller's; the types are shared and must
// not be changed.
func BuiltinTypes() map[string]*DeviceType {
	types, err := builtinTypes()
	if err != nil {
		panic(err) // embedded files; TestBuiltinTypes keeps them valid
	}
	out := make(map[string]*DeviceType, len(types))
	for k, v := range types {
		out[k] = v
	}
	return out
}

// Load reads the lab directory dir: lab.star (optional), device-types/*.star
// (a lab's type replaces the built-in type of the same name) and
// devices/*.star. dir "" gives the built-in types and no devices. An
// invalid lab.star or device type fails the whole load; the errors name
// file:line. An invalid device file makes that one device unusable: it is
// in Devices with Err set (named after its file), and Lab.Device returns
// the error.
//
// Load reads no secret values: a device's password is a reference until
// Lab.Device reads it for a run.
func Load(dir string) (*Lab, error) {
	if _, err := builtinTypes(); err != nil {
		return nil, err
	}
	l := &Lab{Types: BuiltinTypes(), Devices: map[string]*Device{}}
	if dir == "" {
		l.SetDefaults()
		return l, nil
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("lab directory %s: %w", dir, osErr(err))
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("lab directory %s is not a directory", dir)
	}

	labFile := filepath.Join(dir, "lab.star")
	if src, err := os.ReadFile(labFile); err == nil {
		v, err := evalFile(&evalEnv{kind: kindLab, file: labFile, base: "lab", labDir: dir}, src)
		if err != nil {
			return nil, err
		}
		parsed := v.(*Lab)
		parsed.Types, parsed.Devices = l.Types, l.Devices
		l = parsed
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", labFile, osErr(err))
	}
	l.Dir = dir

	var errs []error
	typeFiles, err := starFiles(filepath.Join(dir, "device-types"))
	if err != nil {
		return nil, err
	}
	for _, f := range typeFiles {
		v, err := loadFile(&evalEnv{kind: kindType, file: f, labDir: dir, types: BuiltinTypes()})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dt := v.(*DeviceType)
		l.Types[dt.Name] = dt
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	devFiles, err := starFiles(filepath.Join(dir, "devices"))
	if err != nil {
		return nil, err
	}
	for _, f := range devFiles {
		v, err := loadFile(&evalEnv{kind: kindDevice, file: f, labDir: dir, types: l.Types})
		if err != nil {
			name := strings.TrimSuffix(filepath.Base(f), ".star")
			l.Devices[name] = &Device{Name: name, File: f, Err: err}
			continue
		}
		d := v.(*Device)
		l.Devices[d.Name] = d
	}
	l.SetDefaults()
	return l, nil
}

// starFiles lists dir/*.star, skipping hidden files (editor droppings); a
// missing directory is empty.
func starFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, osErr(err))
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".star") || strings.HasPrefix(n, ".") {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	return out, nil
}

func loadFile(env *evalEnv) (any, error) {
	src, err := os.ReadFile(env.file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", env.file, osErr(err))
	}
	env.base = strings.TrimSuffix(filepath.Base(env.file), ".star")
	return evalFile(env, src)
}

// Device returns the device called nameOrFile, as Config does, with its
// password read: for a run. It fails when the device file is broken or
// the password cannot be read. The device is a copy; the lab's stays a
// reference.
func (l *Lab) Device(nameOrFile string) (*Device, error) {
	d, err := l.Config(nameOrFile)
	if err != nil {
		return nil, err
	}
	if d.IPMI.Password.IsZero() || d.IPMI.Password.Value() != "" {
		return d, nil
	}
	pw, err := d.IPMI.Password.resolve(d.labDir)
	if err != nil {
		return nil, &posError{pos: d.secretPos, msg: "device: ipmi_password: " + err.Error()}
	}
	c := *d
	c.IPMI.Password = pw
	return &c, nil
}

// Config returns the device called nameOrFile in the lab's devices/, or
// reads the device file at that path when nameOrFile ends in ".star" or
// holds a path separator, without reading any secret value (for check and
// device show). A file outside the lab resolves secret(file=) against the
// lab directory, or against its own directory when the lab has none. It
// fails when the device file is broken.
//
// The built-in sim device is not found here; see BuiltinSim.
func (l *Lab) Config(nameOrFile string) (*Device, error) {
	var d *Device
	if strings.HasSuffix(nameOrFile, ".star") || strings.ContainsRune(nameOrFile, filepath.Separator) {
		types := l.Types
		if types == nil {
			types = BuiltinTypes()
		}
		labDir := l.Dir
		if labDir == "" {
			labDir = filepath.Dir(nameOrFile)
		}
		v, err := loadFile(&evalEnv{kind: kindDevice, file: nameOrFile, labDir: labDir, types: types})
		if err != nil {
			return nil, err
		}
		d = v.(*Device)
	} else {
		d = l.Devices[nameOrFile]
		if d == nil {
			names := make([]string, 0, len(l.Devices))
			for n := range l.Devices {
				names = append(names, n)
			}
			sort.Strings(names)
			where := "the lab has no devices"
			if l.Dir != "" {
				where = fmt.Sprintf("no devices in %s", filepath.Join(l.Dir, "devices"))
			}
			if len(names) > 0 {
				where = "known: " + strings.Join(names, ", ")
			}
			return nil, fmt.Errorf("unknown device %q (%s)", nameOrFile, where)
		}
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return d, nil
}

// BuiltinSim returns a new built-in sim device called name ("sim" if
// empty): type sim, console over SOL, a locally administered MAC derived
// from the name. The sim node fills in IPMI host, port, user and password.
func BuiltinSim(name string) *Device {
	if name == "" {
		name = "sim"
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	// 02: locally administered, unicast (IEEE 802 address rules).
	mac := net.HardwareAddr{0x02, 0x42, byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
	return &Device{
		Name: name,
		Type: BuiltinTypes()["sim"],
		IPMI: IPMI{
			Port:         DefaultIPMIPort,
			CipherSuites: append([]int(nil), DefaultCipherSuites...),
			Timeout:      DefaultIPMITimeout,
			Retries:      DefaultIPMIRetries,
		},
		MAC:     mac.String(),
		Console: Console{Transport: "sol"},
		Facts:   map[string]any{},
	}
}

// Facts returns what a job sees as ctx.device: name, type, arch, mac,
// console, kernel_console, the effective per-character delays in ms
// (bootloader_serial_delay_ms, test_shell_serial_delay_ms), the prompts,
// loader, then the type's facts overlaid by the device's. Never secrets.
func Facts(d *Device) map[string]any {
	out := map[string]any{}
	if d == nil {
		return out
	}
	dt := d.Type
	if dt == nil {
		dt = &DeviceType{}
	}
	for k, v := range dt.Facts {
		out[k] = v
	}
	for k, v := range d.Facts {
		out[k] = v
	}
	out["name"] = d.Name
	out["type"] = dt.Name
	out["arch"] = dt.Arch
	out["mac"] = d.MAC
	out["console"] = d.Console.Transport
	out["kernel_console"] = dt.KernelConsole
	out["bootloader_serial_delay_ms"] = int(d.BootloaderDelay() / time.Millisecond)
	out["test_shell_serial_delay_ms"] = int(d.TestShellDelay() / time.Millisecond)
	out["master_prompt"] = dt.MasterPrompt
	out["login_prompt"] = dt.LoginPrompt
	out["shell_prompt"] = dt.ShellPrompt
	out["loader"] = dt.Loader
	return out
}
