package lab

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/spell"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Lab files are small Starlark programs run in a sandbox: no load(), no
// while loops or recursion, output of print() discarded, a step limit, and
// only the predeclared functions lab, device_type, device and secret.
const (
	maxFileSize   = 1 << 20
	maxSteps      = 1_000_000
	maxSecretSize = 64 << 10
	maxFactDepth  = 16
)

var fileOptions = &syntax.FileOptions{Set: true, TopLevelControl: true}

type fileKind int

const (
	kindLab fileKind = iota
	kindType
	kindDevice
)

func (k fileKind) fn() string { return [...]string{"lab", "device_type", "device"}[k] }

// evalEnv is the state of one file's evaluation, shared with the
// predeclared functions through a thread local.
type evalEnv struct {
	kind    fileKind
	file    string                 // path shown in errors and kept in File fields
	base    string                 // file name without directory and ".star"
	builtin bool                   // a built-in type: File stays ""
	labDir  string                 // secret(file=) and relative directories resolve here
	types   map[string]*DeviceType // device types a device may name, or a type may extend

	src []byte // the file's text, to find a keyword's line

	called bool
	result any // *Lab, *DeviceType or *Device
}

const envLocal = "basalt.lab.eval"

// posError is an error at a position in a lab file. Its message never holds
// a secret's value.
type posError struct {
	pos syntax.Position
	msg string
}

func (e *posError) Error() string { return e.pos.String() + ": " + e.msg }

// evalFile runs one lab file and returns what its single call built.
func evalFile(env *evalEnv, src []byte) (any, error) {
	if len(src) > maxFileSize {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", env.file, maxFileSize)
	}
	thread := &starlark.Thread{
		Name: env.file,
		Load: func(*starlark.Thread, string) (starlark.StringDict, error) {
			return nil, errors.New("load() is not allowed in lab files")
		},
		Print: func(*starlark.Thread, string) {},
	}
	thread.SetMaxExecutionSteps(maxSteps)
	thread.SetLocal(envLocal, env)
	env.src = src
	if _, err := starlark.ExecFileOptions(fileOptions, thread, env.file, src, predeclared); err != nil {
		return nil, fileError(env.file, err)
	}
	if !env.called {
		return nil, fmt.Errorf("%s: no %s(...) call; the file must call %s() once", env.file, env.kind.fn(), env.kind.fn())
	}
	return env.result, nil
}

// fileError gives err the position in file where it happened.
func fileError(file string, err error) error {
	var pe *posError
	if errors.As(err, &pe) {
		return pe
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return se
	}
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		for i := range ee.CallStack {
			if fr := ee.CallStack.At(i); fr.Pos.Filename() == file {
				return &posError{pos: fr.Pos, msg: ee.Msg}
			}
		}
		return fmt.Errorf("%s: %s", file, ee.Msg)
	}
	if strings.HasPrefix(err.Error(), file) {
		return err // resolver errors already start with file:line:col
	}
	return fmt.Errorf("%s: %w", file, err)
}

// Table is the lab files' functions, lab, device_type, device and secret,
// predeclared in every lab file. Their parameters are Schema's keys (a
// key not listed there is an error naming the key where it is written, with
// a did-you-mean), unpacked by builtins' Opt unpackers: None is the same as
// leaving a key out.
var Table = newTable()

// impls are the Go sides of Table's members.
var impls = map[string]builtins.Func{
	"lab":         builtinLab,
	"device_type": builtinDeviceType,
	"device":      builtinDevice,
	"secret":      builtinSecret,
}

func newTable() *builtins.Table {
	t := &builtins.Table{Doc: "The functions of lab files (basalt doc lab)."}
	for _, f := range Schema {
		params := make([]string, len(f.Keys))
		for i, k := range f.Keys {
			params[i] = k.Name + "=None"
		}
		t.Members = append(t.Members, builtins.Builtin{Name: f.Name, Params: strings.Join(params, ", "), Doc: f.Doc, Fn: impls[f.Name]})
	}
	return t
}

// predeclared is what every lab file sees.
var predeclared = Table.Values()

// call is one call of a lab function, for its errors.
type call struct {
	fn  string
	pos syntax.Position // the call's
	env *evalEnv
}

func (c *call) errorf(format string, v ...any) error {
	return &posError{pos: c.pos, msg: c.fn + ": " + fmt.Sprintf(format, v...)}
}

// begin checks one call of fn against its Schema entry and the file it is
// in, then unpacks its keyword arguments into pairs (as for
// starlark.UnpackArgs; every name optional).
func begin(thread *starlark.Thread, fn string, positional starlark.Tuple, kwargs []starlark.Tuple, pairs ...any) (*call, error) {
	c := &call{fn: fn}
	if thread.CallStackDepth() > 1 {
		c.pos = thread.CallFrame(1).Pos
	}
	env, _ := thread.Local(envLocal).(*evalEnv)
	if env == nil {
		return nil, c.errorf("called outside a lab file")
	}
	c.env = env
	if len(positional) > 0 {
		return nil, c.errorf("takes keyword arguments only (name = value)")
	}
	f := schemaFunc(fn)
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		if _, ok := f.key(k); !ok {
			return nil, &posError{pos: keyPos(env, c.pos, k), msg: fn + ": " + f.unknownKey(k)}
		}
	}
	if want := env.kind.fn(); want != fn {
		return nil, c.errorf("not allowed in %s; this file may only call %s()", filepath.Base(env.file), want)
	}
	if env.called {
		return nil, c.errorf("called twice; a file describes one %s", strings.ReplaceAll(fn, "_", " "))
	}
	env.called = true
	if err := starlark.UnpackArgs(fn, nil, kwargs, pairs...); err != nil {
		return nil, c.unpackError(err)
	}
	return c, nil
}

var (
	forParam   = regexp.MustCompile(`^\w+: for parameter "?(\w+)"?: (.*)$`)
	unexpected = regexp.MustCompile(`unexpected keyword argument "?(\w+)"?`)
)

// unpackError words an error of starlark.UnpackArgs as the lab's other
// errors are: "device: ipmi_port must be an integer, not string", at the
// call.
func (c *call) unpackError(err error) error {
	msg := err.Error()
	if m := forParam.FindStringSubmatch(msg); m != nil {
		sep := " "
		if strings.HasPrefix(m[2], "[") {
			sep = ""
		}
		return c.errorf("%s%s%s", m[1], sep, m[2])
	}
	if m := unexpected.FindStringSubmatch(msg); m != nil {
		// A key of the schema that the function does not unpack: never
		// dropped silently.
		return c.errorf("key %s is not supported by this build of basalt", m[1])
	}
	return c.errorf("%s", strings.TrimPrefix(msg, c.fn+": "))
}

// keyPos returns where the keyword key of the call at call is written in
// the file, or call when it cannot tell (the call's keywords came from
// **kwargs).
func keyPos(env *evalEnv, call syntax.Position, key string) syntax.Position {
	if env == nil || env.src == nil {
		return call
	}
	f, err := fileOptions.Parse(env.file, env.src, 0)
	if err != nil {
		return call
	}
	pos := call
	syntax.Walk(f, func(n syntax.Node) bool {
		c, ok := n.(*syntax.CallExpr)
		if !ok || c.Lparen.Line != call.Line || c.Lparen.Col != call.Col {
			return true
		}
		for _, arg := range c.Args {
			if b, ok := arg.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
				if id, ok := b.X.(*syntax.Ident); ok && id.Name == key {
					pos = id.NamePos
				}
			}
		}
		return false
	})
	return pos
}

func schemaFunc(name string) *Func {
	for _, f := range Schema {
		if f.Name == name {
			return f
		}
	}
	panic("lab: no schema for " + name)
}

// inRange is o's value, def when not given, if it lies in lo..hi.
func (c *call) inRange(name string, o builtins.OptInt, def, lo, hi int) (int, error) {
	n, err := o.In(def, lo, hi)
	if err != nil {
		return 0, c.errorf("%s %v", name, err)
	}
	return n, nil
}

// millis is a delay in ms, 0..60000, and whether it was given.
func (c *call) millis(name string, o builtins.OptInt) (time.Duration, bool, error) {
	ms, err := c.inRange(name, o, 0, 0, 60_000)
	return time.Duration(ms) * time.Millisecond, o.Set, err
}

// pattern checks that a string argument compiles as a regular expression.
func (c *call) pattern(name string, o builtins.OptStr) (string, error) {
	if _, err := regexp.Compile(o.V); err != nil {
		return "", c.errorf("%s is not a valid regular expression: %v", name, err)
	}
	return o.V, nil
}

func (c *call) oneOf(name string, o builtins.OptStr, allowed ...string) (string, error) {
	if slices.Contains(allowed, o.V) {
		return o.V, nil
	}
	return "", c.errorf("%s = %q is not one of %s", name, o.V, strings.Join(allowed, ", "))
}

// reservedFacts are the keys ctx.device shows on its own (see Facts); a
// file may not set them in facts = {...}.
var reservedFacts = map[string]bool{
	"name": true, "type": true, "arch": true, "mac": true, "console": true,
	"kernel_console": true, "bootloader_serial_delay_ms": true,
	"test_shell_serial_delay_ms": true, "master_prompt": true,
	"login_prompt": true, "shell_prompt": true, "loader": true,
	"error_patterns": true,
}

// facts converts the facts = {...} argument to Go values.
func (c *call) facts(o builtins.OptDict) (map[string]any, error) {
	d := o.V
	if d == nil {
		return nil, nil
	}
	out := map[string]any{}
	for _, kv := range d.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok {
			return nil, c.errorf("facts key %s is not a string", kv[0])
		}
		if reservedFacts[string(k)] {
			return nil, c.errorf("facts[%q]: basalt sets ctx.device.%s itself; it cannot be a fact", string(k), string(k))
		}
		v, err := toGo(kv[1], 0)
		if err != nil {
			return nil, c.errorf("facts[%q]: %v", string(k), err)
		}
		out[string(k)] = v
	}
	return out, nil
}

// toGo converts a fact to nil, bool, int, float64, string, []any or
// map[string]any.
func toGo(v starlark.Value, depth int) (any, error) {
	if depth > maxFactDepth {
		return nil, errors.New("nested too deeply")
	}
	switch v := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(v), nil
	case starlark.Int:
		n, ok := v.Int64()
		if !ok || int64(int(n)) != n {
			return nil, fmt.Errorf("integer %s is too large", v)
		}
		return int(n), nil
	case starlark.Float:
		return float64(v), nil
	case starlark.String:
		return string(v), nil
	case *starlark.List, starlark.Tuple:
		seq := v.(starlark.Indexable)
		out := make([]any, seq.Len())
		for i := range out {
			x, err := toGo(seq.Index(i), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case *starlark.Dict:
		out := map[string]any{}
		for _, kv := range v.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("dict key %s is not a string", kv[0].Type())
			}
			x, err := toGo(kv[1], depth+1)
			if err != nil {
				return nil, err
			}
			out[string(k)] = x
		}
		return out, nil
	case *secretValue:
		return nil, errors.New("secret() is only allowed for ipmi_password")
	}
	return nil, fmt.Errorf("a %s cannot be a fact", v.Type())
}

func builtinLab(thread *starlark.Thread, fn string, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		name, dhcpIface              builtins.OptStr
		loaderDir, lockDir, cacheDir builtins.OptStr
		tftp                         = builtins.OptStr{V: DefaultTFTPAddr}
		http                         = builtins.OptStr{V: DefaultHTTPAddr}
		dhcp                         = builtins.OptStr{V: DefaultDHCP}
	)
	var srv dhcpServerArgs
	c, err := begin(thread, fn, positional, kwargs,
		"name?", &name, "tftp?", &tftp, "http?", &http, "dhcp?", &dhcp, "dhcp_interface?", &dhcpIface,
		"dhcp_range?", &srv.rng, "dhcp_subnet?", &srv.subnet, "dhcp_router?", &srv.router, "dhcp_dns?", &srv.dns,
		"dhcp_lease_s?", &srv.lease,
		"loader_dir?", &loaderDir, "lock_dir?", &lockDir, "cache_dir?", &cacheDir)
	if err != nil {
		return nil, err
	}
	env := c.env
	l := &Lab{Dir: env.labDir, Name: name.V, TFTPAddr: tftp.V, HTTPAddr: http.V, DHCPInterface: dhcpIface.V}
	for _, f := range []struct{ name, addr string }{{"tftp", l.TFTPAddr}, {"http", l.HTTPAddr}} {
		if _, err := hostPort(f.addr, true); err != nil {
			return nil, c.errorf("%s = %q: %v", f.name, f.addr, err)
		}
	}
	if l.DHCP, err = c.oneOf("dhcp", dhcp, "none", "proxy", "server"); err != nil {
		return nil, err
	}
	if l.DHCP != "none" && l.DHCPInterface == "" {
		return nil, c.errorf(`dhcp = %q needs dhcp_interface (the interface the targets boot on)`, l.DHCP)
	}
	if err := labDHCPServer(c, l, srv); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		dst *string
		src builtins.OptStr
	}{{&l.LoaderDir, loaderDir}, {&l.LockDir, lockDir}, {&l.CacheDir, cacheDir}} {
		*f.dst = f.src.V
		if *f.dst != "" && !filepath.IsAbs(*f.dst) {
			*f.dst = filepath.Join(env.labDir, *f.dst)
		}
	}
	env.result = l
	return starlark.None, nil
}

// hostPort checks a host:port address; port 0 is allowed when zeroOK.
func hostPort(addr string, zeroOK bool) (int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("not host:port: %v", err)
	}
	if host == "" && !zeroOK {
		return 0, errors.New("no host")
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 || (port == 0 && !zeroOK) {
		return 0, fmt.Errorf("bad port %q", p)
	}
	return port, nil
}

func builtinDeviceType(thread *starlark.Thread, fn string, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		name, extends, arch, kernelConsole     builtins.OptStr
		masterPrompt, loginPrompt, shellPrompt builtins.OptStr
		loader                                 builtins.OptStr
		bootDelay, shellDelay                  builtins.OptInt
		errorPatterns                          builtins.OptStrList
		pxe                                    builtins.OptBool
		facts                                  builtins.OptDict
	)
	c, err := begin(thread, fn, positional, kwargs,
		"name?", &name, "extends?", &extends, "arch?", &arch, "kernel_console?", &kernelConsole,
		"bootloader_serial_delay_ms?", &bootDelay, "test_shell_serial_delay_ms?", &shellDelay,
		"error_patterns?", &errorPatterns, "master_prompt?", &masterPrompt, "login_prompt?", &loginPrompt,
		"shell_prompt?", &shellPrompt, "loader?", &loader, "pxe?", &pxe, "facts?", &facts)
	if err != nil {
		return nil, err
	}
	env := c.env
	// Every key left out keeps the value of the type extended (or the zero
	// value, pxelinux and pxe = True without extends).
	dt := &DeviceType{Loader: "pxelinux", PXE: true}
	if parent := extends.V; parent != "" {
		p := env.types[parent]
		if p == nil {
			msg := fmt.Sprintf("extends = %q: no such built-in device type (built-in types: %s)", parent, knownTypes(env.types))
			if s := spell.Suggest(parent, typeNames(env.types)); s != "" {
				msg = fmt.Sprintf("extends = %q: no such built-in device type (did you mean %q?)", parent, s)
			}
			return nil, c.errorf("%s", msg)
		}
		*dt = *p
		dt.Extends = p.Name
		dt.ErrorPatterns = append([]string(nil), p.ErrorPatterns...)
		dt.Facts = maps.Clone(p.Facts)
	}
	dt.File = ""
	if !env.builtin {
		dt.File = env.file
	}
	// set gives a string key's value to dst when the file gave one.
	set := func(dst *string, o builtins.OptStr) {
		if o.Set {
			*dst = o.V
		}
	}
	dt.Name = env.base
	set(&dt.Name, name)
	if dt.Name != env.base {
		return nil, c.errorf("name %q does not match the file name %s.star", dt.Name, env.base)
	}
	set(&dt.Arch, arch)
	set(&dt.KernelConsole, kernelConsole)
	if d, ok, err := c.millis("bootloader_serial_delay_ms", bootDelay); err != nil {
		return nil, err
	} else if ok {
		dt.BootloaderDelay = d
	}
	if d, ok, err := c.millis("test_shell_serial_delay_ms", shellDelay); err != nil {
		return nil, err
	} else if ok {
		dt.TestShellDelay = d
	}
	if errorPatterns.Set {
		dt.ErrorPatterns = errorPatterns.V
	}
	for i, p := range dt.ErrorPatterns {
		if _, err := regexp.Compile(p); err != nil {
			return nil, c.errorf("error_patterns[%d] is not a valid regular expression: %v", i, err)
		}
	}
	for _, p := range []struct {
		name string
		dst  *string
		o    builtins.OptStr
	}{{"master_prompt", &dt.MasterPrompt, masterPrompt}, {"login_prompt", &dt.LoginPrompt, loginPrompt}, {"shell_prompt", &dt.ShellPrompt, shellPrompt}} {
		set(p.dst, p.o)
		if _, err := c.pattern(p.name, builtins.OptStr{V: *p.dst}); err != nil {
			return nil, err
		}
	}
	set(&dt.Loader, loader)
	if dt.Loader, err = c.oneOf("loader", builtins.OptStr{V: dt.Loader}, "pxelinux", "ipxe", "grub"); err != nil {
		return nil, err
	}
	if pxe.Set {
		dt.PXE = pxe.V
	}
	f, err := c.facts(facts)
	if err != nil {
		return nil, err
	}
	if dt.Facts == nil {
		dt.Facts = map[string]any{}
	}
	maps.Copy(dt.Facts, f)
	env.result = dt
	return starlark.None, nil
}

func typeNames(types map[string]*DeviceType) []string {
	out := make([]string, 0, len(types))
	for n := range types {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q is not valid (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64)", name)
	}
	return nil
}

// parseMAC returns mac in lower case colon form.
func parseMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("mac %q is not a MAC address (want aa:bb:cc:dd:ee:ff)", mac)
	}
	return hw.String(), nil
}

func knownTypes(types map[string]*DeviceType) string {
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// powerActions are the keys of power_command: the actions of the power
// module and the status command.
var powerActions = []string{"on", "off", "reset", "cycle", "status"}

// secretArg unpacks ipmi_password: a secret(...), never a plain value
// (whose text the error must not show: it may be a real password).
type secretArg struct{ v *secretValue }

func (a *secretArg) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	sv, ok := v.(*secretValue)
	if !ok {
		return fmt.Errorf(`must be secret("ENV_VAR") or secret(file = "path"), not a %s; passwords never go in lab files`, v.Type())
	}
	a.v = sv
	return nil
}

func builtinDevice(thread *starlark.Thread, fn string, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		name, typ, ipmiHost, ipmiUser, mac            builtins.OptStr
		console, consoleCommand, consoleAddress       builtins.OptStr
		ipmiPort, ipmiTimeout, ipmiRetries, keepalive builtins.OptInt
		bootDelay, shellDelay                         builtins.OptInt
		password                                      secretArg
		suites                                        builtins.OptList
		tags                                          builtins.OptStrList
		powerCommand, simDict, facts                  builtins.OptDict
	)
	var seg segmentArgs
	pairs := []any{
		"name?", &name, "type?", &typ, "ipmi_host?", &ipmiHost, "ipmi_port?", &ipmiPort, "ipmi_user?", &ipmiUser,
		"ipmi_password?", &password, "cipher_suites?", &suites, "ipmi_timeout_ms?", &ipmiTimeout,
		"ipmi_retries?", &ipmiRetries, "ipmi_keepalive_ms?", &keepalive, "mac?", &mac, "console?", &console,
		"console_command?", &consoleCommand, "console_address?", &consoleAddress,
		"bootloader_serial_delay_ms?", &bootDelay, "test_shell_serial_delay_ms?", &shellDelay,
		"power_command?", &powerCommand, "sim?", &simDict, "tags?", &tags, "facts?", &facts,
		"segment?", &seg.kind, "segment_parent?", &seg.parent, "segment_vlan?", &seg.vlan, "segment_addr?", &seg.addr,
	}
	// The VM keys, by the schema's list and type.
	var vmKeys []Key
	vm := map[string]*builtins.OptValue{}
	for _, k := range deviceFunc.Keys {
		if strings.HasPrefix(k.Name, "vm_") {
			vmKeys = append(vmKeys, k)
			vm[k.Name] = &builtins.OptValue{}
			pairs = append(pairs, k.Name+"?", vm[k.Name])
		}
	}
	c, err := begin(thread, fn, positional, kwargs, pairs...)
	if err != nil {
		return nil, err
	}
	env := c.env
	d := &Device{File: env.file, VM: map[string]any{}, Name: env.base}
	if name.Set {
		d.Name = name.V
	}
	if err := checkName(d.Name); err != nil {
		return nil, c.errorf("%v", err)
	}
	if d.Name != env.base {
		return nil, c.errorf("name %q does not match the file name %s.star", d.Name, env.base)
	}
	if typ.V == "" {
		return nil, c.errorf("type is required (known types: %s)", knownTypes(env.types))
	}
	if d.Type = env.types[typ.V]; d.Type == nil {
		return nil, c.errorf("unknown device type %q (known types: %s)", typ.V, knownTypes(env.types))
	}
	sim := d.Type.Is("sim")

	// IPMI.
	ip := &d.IPMI
	ip.Host, ip.User = ipmiHost.V, ipmiUser.V
	if ip.Port, err = c.inRange("ipmi_port", ipmiPort, DefaultIPMIPort, 1, 65535); err != nil {
		return nil, err
	}
	if password.v != nil {
		ip.Password = password.v.s
	}
	if ip.Host != "" && ip.Password.IsZero() {
		return nil, c.errorf(`ipmi_host is set but ipmi_password is missing; use ipmi_password = secret("ENV_VAR") or secret(file = "path")`)
	}
	for i, v := range suites.V {
		cs, ok := int64Of(v)
		if !ok || cs < 0 || cs > 17 {
			return nil, c.errorf("cipher_suites[%d] = %s is not an IPMI v2.0 cipher suite (0..17)", i, v)
		}
		ip.CipherSuites = append(ip.CipherSuites, int(cs))
	}
	if len(ip.CipherSuites) == 0 {
		ip.CipherSuites = append([]int(nil), DefaultCipherSuites...)
	}
	ms, err := c.inRange("ipmi_timeout_ms", ipmiTimeout, int(DefaultIPMITimeout/time.Millisecond), 1, 600_000)
	if err != nil {
		return nil, err
	}
	ip.Timeout = time.Duration(ms) * time.Millisecond
	if ip.Retries, err = c.inRange("ipmi_retries", ipmiRetries, DefaultIPMIRetries, 0, 100); err != nil {
		return nil, err
	}
	// 0 turns the keepalive off, for a BMC that keeps sessions forever.
	ka, err := c.inRange("ipmi_keepalive_ms", keepalive, int(DefaultIPMIKeepalive/time.Millisecond), 0, 3_600_000)
	if err != nil {
		return nil, err
	}
	ip.Keepalive = time.Duration(ka) * time.Millisecond
	if ka == 0 {
		ip.Keepalive = -1
	}

	// Tags put the device in pools beside its type: `basalt run
	// --device-tag TAG` picks among the devices that carry every tag given.
	d.Tags = tags.V
	for i, t := range d.Tags {
		if checkName(t) != nil {
			return nil, c.errorf("tags[%d] = %q is not a tag: [A-Za-z0-9][A-Za-z0-9._-]*, at most 64", i, t)
		}
	}

	if mac.V != "" {
		if d.MAC, err = parseMAC(mac.V); err != nil {
			return nil, c.errorf("%v", err)
		}
	}

	// Console.
	con := &d.Console
	con.Command, con.Address = consoleCommand.V, consoleAddress.V
	def := "sol"
	switch {
	case con.Command != "":
		def = "command"
	case con.Address != "":
		def = "tcp"
	}
	if !console.Set {
		console.V = def
	}
	if con.Transport, err = c.oneOf("console", console, "sol", "command", "tcp", "sim"); err != nil {
		return nil, err
	}
	switch con.Transport {
	case "command":
		if strings.TrimSpace(con.Command) == "" {
			return nil, c.errorf(`console = "command" needs console_command (e.g. "telnet localhost 4006")`)
		}
	case "tcp":
		if con.Address == "" {
			return nil, c.errorf(`console = "tcp" needs console_address (host:port of the console server)`)
		}
		if _, err := hostPort(con.Address, false); err != nil {
			return nil, c.errorf("console_address = %q: %v", con.Address, err)
		}
	case "sim":
		if !sim {
			return nil, c.errorf(`console = "sim" is only for devices of type sim`)
		}
	}
	if con.Command != "" && con.Transport != "command" {
		return nil, c.errorf(`console_command is set but console = %q; use console = "command"`, con.Transport)
	}
	if con.Address != "" && con.Transport != "tcp" {
		return nil, c.errorf(`console_address is set but console = %q; use console = "tcp"`, con.Transport)
	}
	if con.BootloaderDelay, con.bootloaderDelaySet, err = c.millis("bootloader_serial_delay_ms", bootDelay); err != nil {
		return nil, err
	}
	if con.TestShellDelay, con.testShellDelaySet, err = c.millis("test_shell_serial_delay_ms", shellDelay); err != nil {
		return nil, err
	}

	// Power.
	pc := powerCommand.V
	if pc != nil {
		d.PowerCommand = map[string]string{}
		for _, kv := range pc.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok || !contains(powerActions, string(k)) {
				return nil, c.errorf("power_command key %s is not one of %s", kv[0], strings.Join(powerActions, ", "))
			}
			v, ok := kv[1].(starlark.String)
			if !ok || strings.TrimSpace(string(v)) == "" {
				return nil, c.errorf("power_command[%s] must be a non-empty string", k)
			}
			if _, err := SplitCommand(string(v)); err != nil {
				return nil, c.errorf("power_command[%s]: %v", k, err)
			}
			d.PowerCommand[string(k)] = string(v)
		}
	}
	// A sim or qemu device that names no BMC gets one from basalt: a
	// simulated node, or a VM basalt starts behind go-ipmi's BMC.
	ownBMC := sim || d.Type.Is("qemu")
	if !ownBMC && ip.Host == "" && (con.Transport == "sol" || pc == nil) {
		need := "console = \"sol\""
		if pc == nil {
			need = "power through the BMC (no power_command)"
		}
		return nil, c.errorf("ipmi_host is required for %s", need)
	}

	// Sim faults.
	if sd := simDict.V; sd != nil {
		if !sim {
			return nil, c.errorf("sim = {...} is only for devices of type sim")
		}
		if d.Sim, err = simFaults(sd); err != nil {
			return nil, c.errorf("sim: %v", err)
		}
		if d.Sim.Disk != "" && !filepath.IsAbs(d.Sim.Disk) {
			d.Sim.Disk = filepath.Join(env.labDir, d.Sim.Disk)
		}
	}

	// VM settings of a qemu device basalt starts itself.
	for _, key := range vmKeys {
		k, v := key.Name, vm[key.Name].V
		if v == nil {
			continue
		}
		if !d.Type.Is("qemu") {
			return nil, c.errorf("%s is only for devices of type qemu", k)
		}
		switch x := v.(type) {
		case starlark.String:
			if key.Type == "int" {
				return nil, c.errorf("%s must be an integer, not string", k)
			}
			d.VM[k] = string(x)
		case starlark.Int:
			n, ok := x.Int64()
			if key.Type != "int" || !ok || n < 0 || n > 1<<30 {
				return nil, c.errorf("%s = %s: want a %s", k, x, key.Type)
			}
			d.VM[k] = int(n)
		default:
			return nil, c.errorf("%s must be a %s, not %s", k, key.Type, v.Type())
		}
	}

	if err := deviceSegment(c, d, seg); err != nil {
		return nil, err
	}
	if d.Facts, err = c.facts(facts); err != nil {
		return nil, err
	}
	// The secret is a reference until a job runs: Lab.Device reads it.
	d.secretPos, d.labDir = c.pos, env.labDir
	env.result = d
	return starlark.None, nil
}

// int64Of returns v as an int64 if it is a Starlark int that fits.
func int64Of(v starlark.Value) (int64, bool) {
	n, ok := v.(starlark.Int)
	if !ok {
		return 0, false
	}
	return n.Int64()
}

// osErr drops the path from an *fs.PathError; the caller names the file.
func osErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// simKey is one key of a sim device's sim = {...} dict. simKeys is the
// one list of them: add a key here and nowhere else.
type simKey struct {
	name, doc string
	set       func(f *SimFaults, v starlark.Value) error
}

var simKeys = []simKey{
	{"console_drops", "close the SOL session this many times during the job", func(f *SimFaults, v starlark.Value) (err error) {
		f.ConsoleDrops, err = simInt("console_drops", v)
		return err
	}},
	{"console_drop_interval_ms", "how long an SOL session lives before each console drop; default 400", func(f *SimFaults, v starlark.Value) error {
		ms, err := simInt("console_drop_interval_ms", v)
		f.ConsoleDropInterval = time.Duration(ms) * time.Millisecond
		return err
	}},
	{"udp_loss", "fraction of BMC datagrams dropped, 0..1", func(f *SimFaults, v starlark.Value) error {
		x, ok := starlark.AsFloat(v)
		if !ok || x < 0 || x > 1 {
			return fmt.Errorf("udp_loss must be a number in 0..1, not %s", v)
		}
		f.UDPLoss = x
		return nil
	}},
	{"sol_loss", "fraction of SOL datagrams dropped, 0..1, on top of udp_loss (the BMC retransmits them as IPMI v2.0 §15.9 and ipmi_sim do)", func(f *SimFaults, v starlark.Value) error {
		x, ok := starlark.AsFloat(v)
		if !ok || x < 0 || x > 1 {
			return fmt.Errorf("sol_loss must be a number in 0..1, not %s", v)
		}
		f.SOLLoss = x
		return nil
	}},
	{"type_interval_ms", "characters typed to the bootloader faster than this are dropped", func(f *SimFaults, v starlark.Value) error {
		ms, err := simInt("type_interval_ms", v)
		f.TypeInterval = time.Duration(ms) * time.Millisecond
		return err
	}},
	{"boot_failure", "the PXE ROM finds no boot file and hangs", func(f *SimFaults, v starlark.Value) (err error) {
		f.BootFailure, err = simBool("boot_failure", v)
		return err
	}},
	{"kernel_panic", "the booted kernel panics", func(f *SimFaults, v starlark.Value) (err error) {
		f.KernelPanic, err = simBool("kernel_panic", v)
		return err
	}},
	{"master_httpd", "the master image already runs httpd -p 80 -h /srv, as real master images may (target.fetch must not use it)", func(f *SimFaults, v starlark.Value) (err error) {
		f.MasterHTTPD, err = simBool("master_httpd", v)
		return err
	}},
	{"disk", "a raw disk image file (basalt sim image --out FILE.img) that is the node's disk, relative to the lab directory: what a job writes to it, the boot flag too, is there for the next job, as on a real board", func(f *SimFaults, v starlark.Value) error {
		s, ok := starlark.AsString(v)
		if !ok || s == "" {
			return fmt.Errorf("disk must be a file name, not %s", v)
		}
		if strings.HasSuffix(s, ".gz") || strings.HasSuffix(s, ".xz") {
			return fmt.Errorf("disk %q: the node writes to its disk, so it must be a raw image (.img), not a compressed one", s)
		}
		f.Disk = s
		return nil
	}},
	{"bootloader", `the firmware runs this bootloader before booting: "u-boot" (autoboot countdown, "=> " shell, tftpboot/wget from basalt's servers, bootz); default none`, func(f *SimFaults, v starlark.Value) error {
		s, ok := starlark.AsString(v)
		if !ok || (s != "u-boot" && s != "") {
			return fmt.Errorf("bootloader must be \"u-boot\", not %s", v)
		}
		f.Bootloader = s
		return nil
	}},
	{"bmc_session_timeout_ms", "the BMC forgets sessions silent this long and ignores their packets, as ipmi_sim does after 30 s; default 60000", func(f *SimFaults, v starlark.Value) error {
		ms, err := simInt("bmc_session_timeout_ms", v)
		f.SessionTimeout = time.Duration(ms) * time.Millisecond
		return err
	}},
}

func simKeyNames() string {
	names := make([]string, len(simKeys))
	for i, k := range simKeys {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

func simInt(name string, v starlark.Value) (int, error) {
	i, ok := int64Of(v)
	if !ok || i < 0 || i > 1_000_000 {
		return 0, fmt.Errorf("%s must be a non-negative integer, not %s", name, v)
	}
	return int(i), nil
}

func simBool(name string, v starlark.Value) (bool, error) {
	b, ok := v.(starlark.Bool)
	if !ok {
		return false, fmt.Errorf("%s must be True or False, not %s", name, v.Type())
	}
	return bool(b), nil
}

func simFaults(d *starlark.Dict) (SimFaults, error) {
	var f SimFaults
	names := strings.Split(simKeyNames(), ", ")
	for _, kv := range d.Items() {
		k, _ := kv[0].(starlark.String)
		i := slices.IndexFunc(simKeys, func(sk simKey) bool { return sk.name == string(k) })
		if i < 0 {
			return f, errors.New(unknownKey("sim", kv[0].String(), names))
		}
		if err := simKeys[i].set(&f, kv[1]); err != nil {
			return f, err
		}
	}
	return f, nil
}

// secretValue is what secret(...) returns in Starlark: the reference only.
// The value is read in Go by device() and never enters Starlark.
type secretValue struct{ s Secret }

func (v *secretValue) String() string        { return v.s.String() }
func (v *secretValue) Type() string          { return "secret" }
func (v *secretValue) Freeze()               {}
func (v *secretValue) Truth() starlark.Bool  { return true }
func (v *secretValue) Hash() (uint32, error) { return 0, errors.New("unhashable: secret") }

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func builtinSecret(thread *starlark.Thread, _ string, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pos syntax.Position
	if thread.CallStackDepth() > 1 {
		pos = thread.CallFrame(1).Pos
	}
	fail := func(format string, v ...any) error {
		return &posError{pos: pos, msg: "secret: " + fmt.Sprintf(format, v...)}
	}
	if env, _ := thread.Local(envLocal).(*evalEnv); env == nil || env.kind != kindDevice {
		return nil, fail("only allowed in device files")
	}
	var name, file string
	if err := starlark.UnpackArgs("secret", positional, kwargs, "env?", &name, "file?", &file); err != nil {
		return nil, fail("%v", err)
	}
	switch {
	case name != "" && file != "":
		return nil, fail(`give an environment variable or file = "...", not both`)
	case name != "":
		if !envNameRE.MatchString(name) {
			return nil, fail("%q is not an environment variable name", name)
		}
		return &secretValue{Secret{Env: name}}, nil
	case file != "":
		// Secret files live in the lab directory: a lab file must not be
		// able to read (and send as a password) any file the runner can.
		if !filepath.IsLocal(file) {
			return nil, fail("file %q is outside the lab directory; name a file under it", file)
		}
		return &secretValue{Secret{File: file}}, nil
	}
	return nil, fail(`want secret("ENV_VAR") or secret(file = "path")`)
}

// resolve reads the secret's value. Errors name the variable or file,
// never a value.
func (s Secret) resolve(labDir string) (Secret, error) {
	switch {
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return s, fmt.Errorf("environment variable %s is not set", s.Env)
		}
		if v == "" {
			return s, fmt.Errorf("environment variable %s is empty", s.Env)
		}
		s.value = v
	case s.File != "":
		s.path = filepath.Join(labDir, s.File)
		// os.Root also refuses a symlink that leaves the lab directory.
		root, err := os.OpenRoot(labDir)
		if err != nil {
			return s, fmt.Errorf("cannot read secret file %s: %v", s.path, osErr(err))
		}
		defer root.Close()
		f, err := root.Open(s.File)
		if err != nil && strings.Contains(err.Error(), "escapes") {
			return s, fmt.Errorf("secret file %s leads outside the lab directory %s; refused", s.path, labDir)
		}
		if err != nil {
			return s, fmt.Errorf("cannot read secret file %s: %v", s.path, osErr(err))
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
		if err != nil {
			return s, fmt.Errorf("cannot read secret file %s: %v", s.path, osErr(err))
		}
		if len(b) > maxSecretSize {
			return s, fmt.Errorf("secret file %s is larger than %d bytes", s.path, maxSecretSize)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return s, fmt.Errorf("secret file %s is empty", s.path)
		}
		s.value = v
	}
	return s, nil
}
