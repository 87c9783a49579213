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

// predeclared holds one builtin per Schema entry; impls are their Go
// sides (a map, not a Func field, which would make an initialization
// cycle: the functions read Schema).
var (
	predeclared = starlark.StringDict{}
	impls       = map[string]func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error){
		"lab":         builtinLab,
		"device_type": builtinDeviceType,
		"device":      builtinDevice,
		"secret":      builtinSecret,
	}
)

func init() {
	for _, f := range Schema {
		predeclared[f.Name] = starlark.NewBuiltin(f.Name, impls[f.Name])
	}
}

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

// args are the keyword arguments of one call, checked against the
// function's Schema entry and then taken one by one.
type args struct {
	fn   string
	f    *Func
	pos  syntax.Position
	vals map[string]starlark.Value
	keys []string
	used map[string]bool
}

func newArgs(thread *starlark.Thread, b *starlark.Builtin, positional starlark.Tuple, kwargs []starlark.Tuple) (*args, *evalEnv, error) {
	a := &args{fn: b.Name(), pos: thread.CallFrame(1).Pos, vals: map[string]starlark.Value{}, used: map[string]bool{}}
	env, _ := thread.Local(envLocal).(*evalEnv)
	if env == nil {
		return nil, nil, a.errorf("called outside a lab file")
	}
	if len(positional) > 0 {
		return nil, nil, a.errorf("takes keyword arguments only (name = value)")
	}
	a.f = schemaFunc(a.fn)
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		if _, ok := a.f.key(k); !ok {
			return nil, nil, &posError{pos: keyPos(env, a.pos, k), msg: a.fn + ": " + a.f.unknownKey(k)}
		}
		a.vals[k] = kv[1]
		a.keys = append(a.keys, k)
	}
	if want := env.kind.fn(); want != a.fn {
		return nil, nil, a.errorf("not allowed in %s; this file may only call %s()", filepath.Base(env.file), want)
	}
	if env.called {
		return nil, nil, a.errorf("called twice; a file describes one %s", strings.ReplaceAll(a.fn, "_", " "))
	}
	env.called = true
	return a, env, nil
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

// done fails on a key the schema lists but this build does not parse, so
// that no key is ever dropped silently.
func (a *args) done() error {
	for _, k := range a.keys {
		if !a.used[k] {
			return a.errorf("key %s is not supported by this build of basalt", k)
		}
	}
	return nil
}

func (a *args) errorf(format string, v ...any) error {
	return &posError{pos: a.pos, msg: a.fn + ": " + fmt.Sprintf(format, v...)}
}

// get returns the argument called name; None counts as absent.
func (a *args) get(name string) (starlark.Value, bool) {
	a.used[name] = true
	v, ok := a.vals[name]
	if !ok || v == starlark.None {
		return nil, false
	}
	return v, true
}

func (a *args) has(name string) bool {
	_, ok := a.get(name)
	return ok
}

func (a *args) str(name, def string) (string, error) {
	v, ok := a.get(name)
	if !ok {
		return def, nil
	}
	s, ok := v.(starlark.String)
	if !ok {
		return "", a.errorf("%s must be a string, not %s", name, v.Type())
	}
	return string(s), nil
}

func (a *args) integer(name string, def, lo, hi int) (int, error) {
	v, ok := a.get(name)
	if !ok {
		return def, nil
	}
	i, ok := v.(starlark.Int)
	if !ok {
		return 0, a.errorf("%s must be an integer, not %s", name, v.Type())
	}
	n, ok := i.Int64()
	if !ok || n < int64(lo) || n > int64(hi) {
		return 0, a.errorf("%s = %s is out of range %d..%d", name, i, lo, hi)
	}
	return int(n), nil
}

func (a *args) millis(name string) (time.Duration, bool, error) {
	if !a.has(name) {
		return 0, false, nil
	}
	ms, err := a.integer(name, 0, 0, 60_000)
	return time.Duration(ms) * time.Millisecond, true, err
}

func (a *args) boolean(name string, def bool) (bool, error) {
	v, ok := a.get(name)
	if !ok {
		return def, nil
	}
	b, ok := v.(starlark.Bool)
	if !ok {
		return false, a.errorf("%s must be True or False, not %s", name, v.Type())
	}
	return bool(b), nil
}

func (a *args) list(name string) ([]starlark.Value, error) {
	v, ok := a.get(name)
	if !ok {
		return nil, nil
	}
	seq, ok := v.(starlark.Indexable)
	if _, isStr := v.(starlark.String); !ok || isStr {
		return nil, a.errorf("%s must be a list, not %s", name, v.Type())
	}
	out := make([]starlark.Value, seq.Len())
	for i := range out {
		out[i] = seq.Index(i)
	}
	return out, nil
}

func (a *args) strList(name string) ([]string, error) {
	vs, err := a.list(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, v := range vs {
		s, ok := v.(starlark.String)
		if !ok {
			return nil, a.errorf("%s[%d] must be a string, not %s", name, i, v.Type())
		}
		out = append(out, string(s))
	}
	return out, nil
}

// pattern returns a string argument that must compile as a regular
// expression.
func (a *args) pattern(name, def string) (string, error) {
	s, err := a.str(name, def)
	if err != nil {
		return "", err
	}
	if _, err := regexp.Compile(s); err != nil {
		return "", a.errorf("%s is not a valid regular expression: %v", name, err)
	}
	return s, nil
}

func (a *args) oneOf(name, def string, allowed ...string) (string, error) {
	s, err := a.str(name, def)
	if err != nil {
		return "", err
	}
	for _, x := range allowed {
		if s == x {
			return s, nil
		}
	}
	return "", a.errorf("%s = %q is not one of %s", name, s, strings.Join(allowed, ", "))
}

func (a *args) dict(name string) (*starlark.Dict, error) {
	v, ok := a.get(name)
	if !ok {
		return nil, nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		return nil, a.errorf("%s must be a dict, not %s", name, v.Type())
	}
	return d, nil
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

// facts returns the facts = {...} argument, converted to Go values.
func (a *args) facts() (map[string]any, error) {
	d, err := a.dict("facts")
	if err != nil || d == nil {
		return nil, err
	}
	out := map[string]any{}
	for _, kv := range d.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok {
			return nil, a.errorf("facts key %s is not a string", kv[0])
		}
		if reservedFacts[string(k)] {
			return nil, a.errorf("facts[%q]: basalt sets ctx.device.%s itself; it cannot be a fact", string(k), string(k))
		}
		v, err := toGo(kv[1], 0)
		if err != nil {
			return nil, a.errorf("facts[%q]: %v", string(k), err)
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

func builtinLab(thread *starlark.Thread, b *starlark.Builtin, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	a, env, err := newArgs(thread, b, positional, kwargs)
	if err != nil {
		return nil, err
	}
	l := &Lab{Dir: env.labDir}
	if l.Name, err = a.str("name", ""); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *string
		def  string
	}{{"tftp", &l.TFTPAddr, DefaultTFTPAddr}, {"http", &l.HTTPAddr, DefaultHTTPAddr}} {
		if *f.dst, err = a.str(f.name, f.def); err != nil {
			return nil, err
		}
		if _, err := hostPort(*f.dst, true); err != nil {
			return nil, a.errorf("%s = %q: %v", f.name, *f.dst, err)
		}
	}
	if l.DHCP, err = a.oneOf("dhcp", DefaultDHCP, "none", "proxy", "server"); err != nil {
		return nil, err
	}
	if l.DHCPInterface, err = a.str("dhcp_interface", ""); err != nil {
		return nil, err
	}
	if l.DHCP != "none" && l.DHCPInterface == "" {
		return nil, a.errorf(`dhcp = %q needs dhcp_interface (the interface the targets boot on)`, l.DHCP)
	}
	if err := labDHCPServer(a, l); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"loader_dir", &l.LoaderDir}, {"lock_dir", &l.LockDir}, {"cache_dir", &l.CacheDir}} {
		if *f.dst, err = a.str(f.name, ""); err != nil {
			return nil, err
		}
		if *f.dst != "" && !filepath.IsAbs(*f.dst) {
			*f.dst = filepath.Join(env.labDir, *f.dst)
		}
	}
	if err := a.done(); err != nil {
		return nil, err
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

func builtinDeviceType(thread *starlark.Thread, b *starlark.Builtin, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	a, env, err := newArgs(thread, b, positional, kwargs)
	if err != nil {
		return nil, err
	}
	// Every key left out keeps the value of the type extended (or the zero
	// value, pxelinux and pxe = True without extends).
	dt := &DeviceType{Loader: "pxelinux", PXE: true}
	if parent, err := a.str("extends", ""); err != nil {
		return nil, err
	} else if parent != "" {
		p := env.types[parent]
		if p == nil {
			msg := fmt.Sprintf("extends = %q: no such built-in device type (built-in types: %s)", parent, knownTypes(env.types))
			if s := spell.Suggest(parent, typeNames(env.types)); s != "" {
				msg = fmt.Sprintf("extends = %q: no such built-in device type (did you mean %q?)", parent, s)
			}
			return nil, a.errorf("%s", msg)
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
	if dt.Name, err = a.str("name", env.base); err != nil {
		return nil, err
	}
	if dt.Name != env.base {
		return nil, a.errorf("name %q does not match the file name %s.star", dt.Name, env.base)
	}
	if dt.Arch, err = a.str("arch", dt.Arch); err != nil {
		return nil, err
	}
	if dt.KernelConsole, err = a.str("kernel_console", dt.KernelConsole); err != nil {
		return nil, err
	}
	if d, ok, err := a.millis("bootloader_serial_delay_ms"); err != nil {
		return nil, err
	} else if ok {
		dt.BootloaderDelay = d
	}
	if d, ok, err := a.millis("test_shell_serial_delay_ms"); err != nil {
		return nil, err
	} else if ok {
		dt.TestShellDelay = d
	}
	if a.has("error_patterns") {
		if dt.ErrorPatterns, err = a.strList("error_patterns"); err != nil {
			return nil, err
		}
	}
	for i, p := range dt.ErrorPatterns {
		if _, err := regexp.Compile(p); err != nil {
			return nil, a.errorf("error_patterns[%d] is not a valid regular expression: %v", i, err)
		}
	}
	if dt.MasterPrompt, err = a.pattern("master_prompt", dt.MasterPrompt); err != nil {
		return nil, err
	}
	if dt.LoginPrompt, err = a.pattern("login_prompt", dt.LoginPrompt); err != nil {
		return nil, err
	}
	if dt.ShellPrompt, err = a.pattern("shell_prompt", dt.ShellPrompt); err != nil {
		return nil, err
	}
	if dt.Loader, err = a.oneOf("loader", dt.Loader, "pxelinux", "ipxe", "grub"); err != nil {
		return nil, err
	}
	if dt.PXE, err = a.boolean("pxe", dt.PXE); err != nil {
		return nil, err
	}
	facts, err := a.facts()
	if err != nil {
		return nil, err
	}
	if dt.Facts == nil {
		dt.Facts = map[string]any{}
	}
	maps.Copy(dt.Facts, facts)
	if err := a.done(); err != nil {
		return nil, err
	}
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

func builtinDevice(thread *starlark.Thread, b *starlark.Builtin, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	a, env, err := newArgs(thread, b, positional, kwargs)
	if err != nil {
		return nil, err
	}
	d := &Device{File: env.file, VM: map[string]any{}}
	if d.Name, err = a.str("name", env.base); err != nil {
		return nil, err
	}
	if err := checkName(d.Name); err != nil {
		return nil, a.errorf("%v", err)
	}
	if d.Name != env.base {
		return nil, a.errorf("name %q does not match the file name %s.star", d.Name, env.base)
	}
	typ, err := a.str("type", "")
	if err != nil {
		return nil, err
	}
	if typ == "" {
		return nil, a.errorf("type is required (known types: %s)", knownTypes(env.types))
	}
	if d.Type = env.types[typ]; d.Type == nil {
		return nil, a.errorf("unknown device type %q (known types: %s)", typ, knownTypes(env.types))
	}
	sim := d.Type.Is("sim")

	// IPMI.
	ip := &d.IPMI
	if ip.Host, err = a.str("ipmi_host", ""); err != nil {
		return nil, err
	}
	if ip.Port, err = a.integer("ipmi_port", DefaultIPMIPort, 1, 65535); err != nil {
		return nil, err
	}
	if ip.User, err = a.str("ipmi_user", ""); err != nil {
		return nil, err
	}
	if v, ok := a.get("ipmi_password"); ok {
		sv, ok := v.(*secretValue)
		if !ok {
			// Never echo the value: it may be a real password.
			return nil, a.errorf(`ipmi_password must be secret("ENV_VAR") or secret(file = "path"), not a %s; passwords never go in lab files`, v.Type())
		}
		ip.Password = sv.s
	}
	if ip.Host != "" && ip.Password.IsZero() {
		return nil, a.errorf(`ipmi_host is set but ipmi_password is missing; use ipmi_password = secret("ENV_VAR") or secret(file = "path")`)
	}
	suites, err := a.list("cipher_suites")
	if err != nil {
		return nil, err
	}
	for i, v := range suites {
		c, ok := int64Of(v)
		if !ok || c < 0 || c > 17 {
			return nil, a.errorf("cipher_suites[%d] = %s is not an IPMI v2.0 cipher suite (0..17)", i, v)
		}
		ip.CipherSuites = append(ip.CipherSuites, int(c))
	}
	if len(ip.CipherSuites) == 0 {
		ip.CipherSuites = append([]int(nil), DefaultCipherSuites...)
	}
	ms, err := a.integer("ipmi_timeout_ms", int(DefaultIPMITimeout/time.Millisecond), 1, 600_000)
	if err != nil {
		return nil, err
	}
	ip.Timeout = time.Duration(ms) * time.Millisecond
	if ip.Retries, err = a.integer("ipmi_retries", DefaultIPMIRetries, 0, 100); err != nil {
		return nil, err
	}
	// 0 turns the keepalive off, for a BMC that keeps sessions forever.
	ka, err := a.integer("ipmi_keepalive_ms", int(DefaultIPMIKeepalive/time.Millisecond), 0, 3_600_000)
	if err != nil {
		return nil, err
	}
	ip.Keepalive = time.Duration(ka) * time.Millisecond
	if ka == 0 {
		ip.Keepalive = -1
	}

	// Tags put the device in pools beside its type: `basalt run
	// --device-tag TAG` picks among the devices that carry every tag given.
	if d.Tags, err = a.strList("tags"); err != nil {
		return nil, err
	}
	for i, t := range d.Tags {
		if checkName(t) != nil {
			return nil, a.errorf("tags[%d] = %q is not a tag: [A-Za-z0-9][A-Za-z0-9._-]*, at most 64", i, t)
		}
	}

	if mac, err := a.str("mac", ""); err != nil {
		return nil, err
	} else if mac != "" {
		if d.MAC, err = parseMAC(mac); err != nil {
			return nil, a.errorf("%v", err)
		}
	}

	// Console.
	c := &d.Console
	if c.Command, err = a.str("console_command", ""); err != nil {
		return nil, err
	}
	if c.Address, err = a.str("console_address", ""); err != nil {
		return nil, err
	}
	def := "sol"
	switch {
	case c.Command != "":
		def = "command"
	case c.Address != "":
		def = "tcp"
	}
	if c.Transport, err = a.oneOf("console", def, "sol", "command", "tcp", "sim"); err != nil {
		return nil, err
	}
	switch c.Transport {
	case "command":
		if strings.TrimSpace(c.Command) == "" {
			return nil, a.errorf(`console = "command" needs console_command (e.g. "telnet localhost 4006")`)
		}
	case "tcp":
		if c.Address == "" {
			return nil, a.errorf(`console = "tcp" needs console_address (host:port of the console server)`)
		}
		if _, err := hostPort(c.Address, false); err != nil {
			return nil, a.errorf("console_address = %q: %v", c.Address, err)
		}
	case "sim":
		if !sim {
			return nil, a.errorf(`console = "sim" is only for devices of type sim`)
		}
	}
	if c.Command != "" && c.Transport != "command" {
		return nil, a.errorf(`console_command is set but console = %q; use console = "command"`, c.Transport)
	}
	if c.Address != "" && c.Transport != "tcp" {
		return nil, a.errorf(`console_address is set but console = %q; use console = "tcp"`, c.Transport)
	}
	if c.BootloaderDelay, c.bootloaderDelaySet, err = a.millis("bootloader_serial_delay_ms"); err != nil {
		return nil, err
	}
	if c.TestShellDelay, c.testShellDelaySet, err = a.millis("test_shell_serial_delay_ms"); err != nil {
		return nil, err
	}

	// Power.
	pc, err := a.dict("power_command")
	if err != nil {
		return nil, err
	}
	if pc != nil {
		d.PowerCommand = map[string]string{}
		for _, kv := range pc.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok || !contains(powerActions, string(k)) {
				return nil, a.errorf("power_command key %s is not one of %s", kv[0], strings.Join(powerActions, ", "))
			}
			v, ok := kv[1].(starlark.String)
			if !ok || strings.TrimSpace(string(v)) == "" {
				return nil, a.errorf("power_command[%s] must be a non-empty string", k)
			}
			if _, err := SplitCommand(string(v)); err != nil {
				return nil, a.errorf("power_command[%s]: %v", k, err)
			}
			d.PowerCommand[string(k)] = string(v)
		}
	}
	// A sim or qemu device that names no BMC gets one from basalt: a
	// simulated node, or a VM basalt starts behind go-ipmi's BMC.
	ownBMC := sim || d.Type.Is("qemu")
	if !ownBMC && ip.Host == "" && (c.Transport == "sol" || pc == nil) {
		need := "console = \"sol\""
		if pc == nil {
			need = "power through the BMC (no power_command)"
		}
		return nil, a.errorf("ipmi_host is required for %s", need)
	}

	// Sim faults.
	if sd, err := a.dict("sim"); err != nil {
		return nil, err
	} else if sd != nil {
		if !sim {
			return nil, a.errorf("sim = {...} is only for devices of type sim")
		}
		if d.Sim, err = simFaults(sd); err != nil {
			return nil, a.errorf("sim: %v", err)
		}
	}

	// VM settings of a qemu device basalt starts itself.
	for _, k := range a.keys {
		if !strings.HasPrefix(k, "vm_") {
			continue
		}
		v, _ := a.get(k)
		if v == nil {
			continue
		}
		if !d.Type.Is("qemu") {
			return nil, a.errorf("%s is only for devices of type qemu", k)
		}
		key, _ := a.f.key(k)
		switch x := v.(type) {
		case starlark.String:
			if key.Type == "int" {
				return nil, a.errorf("%s must be an integer, not string", k)
			}
			d.VM[k] = string(x)
		case starlark.Int:
			n, ok := x.Int64()
			if key.Type != "int" || !ok || n < 0 || n > 1<<30 {
				return nil, a.errorf("%s = %s: want a %s", k, x, key.Type)
			}
			d.VM[k] = int(n)
		default:
			return nil, a.errorf("%s must be a %s, not %s", k, key.Type, v.Type())
		}
	}

	if err := deviceSegment(a, d); err != nil {
		return nil, err
	}
	if d.Facts, err = a.facts(); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	// The secret is a reference until a job runs: Lab.Device reads it.
	d.secretPos, d.labDir = a.pos, env.labDir
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

func builtinSecret(thread *starlark.Thread, b *starlark.Builtin, positional starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	pos := thread.CallFrame(1).Pos
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
