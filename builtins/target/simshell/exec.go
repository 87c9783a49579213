package simshell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
)

// call is one run of a command: its arguments (without the name), standard
// streams and working directory. Commands are shaped run(call) error, so
// tests can reach them through the shell like a user does.
type call struct {
	sh     *Shell
	ctx    context.Context
	name   string
	args   []string
	stdin  io.Reader
	raw    io.Reader // the interpreter's stdin, an *os.File
	stdout io.Writer
	stderr io.Writer
	dir    string
	env    expand.Environ
}

type cmdFunc func(c *call) error

// commands is the command table; filled in init to avoid an initialization
// cycle (sh and busybox look commands up).
var commands map[string]cmdFunc

func init() {
	commands = map[string]cmdFunc{
		"cat": cmdCat, "ls": cmdLs, "mkdir": cmdMkdir, "rm": cmdRm, "rmdir": cmdRmdir, "cp": cmdCp, "mv": cmdMv,
		"touch": cmdTouch, "chmod": cmdChmod, "ln": cmdLn, "head": cmdHead, "tail": cmdTail, "wc": cmdWc, "grep": cmdGrep,
		"basename": cmdBasename, "dirname": cmdDirname, "echo": cmdEcho,
		"dd": cmdDd, "gzip": cmdGzip, "gunzip": cmdGzip, "zcat": cmdGzip,
		"xz": cmdXz, "unxz": cmdXz, "xzcat": cmdXz,
		"sha256sum": cmdSum, "md5sum": cmdSum,
		"wget": cmdWget, "httpd": cmdHttpd, "ip": cmdIP, "ifconfig": cmdIfconfig,
		"mount": cmdMount, "umount": cmdUmount, "uname": cmdUname, "hostname": cmdHostname,
		"kexec": cmdKexec, "reboot": cmdPower, "poweroff": cmdPower, "halt": cmdPower,
		"sync": cmdSync, "sleep": cmdSleep, "date": cmdDate, "uptime": cmdUptime, "dmesg": cmdDmesg,
		"free": cmdFree, "df": cmdDf, "id": cmdID, "whoami": cmdWhoami,
		"sh": cmdSh, "ash": cmdSh, "stty": cmdStty, "which": cmdWhich, "env": cmdEnv, "printenv": cmdEnv,
		"blockdev": cmdBlockdev, "sort": cmdSort, "uniq": cmdUniq, "cut": cmdCut, "tr": cmdTr, "tee": cmdTee, "seq": cmdSeq, "sed": cmdSed, "clear": cmdClear, "busybox": cmdBusybox,
		"fw_printenv": cmdFwPrintenv, "fw_setenv": cmdFwSetenv,
		"tar": cmdTar,
	}
}

// binDirs are where the target's commands appear to live.
var binDirs = map[string]bool{"/bin": true, "/sbin": true, "/usr/bin": true, "/usr/sbin": true}

// sbin lists the commands `which` places in /sbin.
var sbin = map[string]bool{"fw_printenv": true, "fw_setenv": true, "ifconfig": true, "ip": true, "kexec": true, "reboot": true, "poweroff": true, "halt": true, "httpd": true, "blockdev": true}

// exec is the interpreter's ExecHandler: it runs our commands and never a
// host program.
func (s *Shell) exec(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	dir := s.fs.virt(hc.Dir)
	name := args[0]
	switch name {
	case jobCommand:
		return s.runJob(ctx, args[1:])
	case killCommand:
		args[0] = "kill"
		c := &call{sh: s, ctx: ctx, name: "kill", args: args[1:], stdout: hc.Stdout, stderr: hc.Stderr, dir: dir, env: hc.Env}
		return c.status(cmdKill(c))
	}
	if name == pwdCommand {
		fmt.Fprintln(hc.Stdout, dir)
		return nil
	}
	if strings.Contains(name, "/") {
		p := abs(dir, name)
		switch fi, err := s.fs.stat(p, true); {
		case binDirs[path.Dir(p)] && commands[path.Base(p)] != nil:
			name = path.Base(p)
		case err != nil:
			fmt.Fprintf(hc.Stderr, "sh: %s: not found\n", name)
			return interp.ExitStatus(127)
		case fi.IsDir() || fi.Mode()&0o111 == 0 || !s.isScript(p):
			fmt.Fprintf(hc.Stderr, "sh: %s: Permission denied\n", name)
			return interp.ExitStatus(126)
		default:
			name, args = "sh", append([]string{"sh", p}, args[1:]...)
		}
	}
	if !strings.Contains(name, "/") {
		switch p, denied := s.lookPath(hc.Env.Get("PATH").String(), name); {
		case p != "":
			name, args = "sh", append([]string{"sh", p}, args[1:]...)
		case denied:
			fmt.Fprintf(hc.Stderr, "sh: %s: Permission denied\n", name)
			return interp.ExitStatus(126)
		}
	}
	fn := commands[name]
	if fn == nil {
		fmt.Fprintf(hc.Stderr, "sh: %s: not found\n", name)
		return interp.ExitStatus(127)
	}
	c := &call{
		sh: s, ctx: ctx, name: name, args: args[1:],
		stdin: ctxReader{ctx, hc.Stdin}, raw: hc.Stdin, stdout: ctxWriter{ctx, hc.Stdout}, stderr: hc.Stderr,
		dir: dir, env: hc.Env,
	}
	return c.status(fn(c))
}

// lookPath finds name on PATH as ash does, directory by directory: a
// command of ours in a bin directory first, else the shell script in that
// directory (a test definition's helpers, lava-test-case). It returns the
// script's path, or "" when a command of ours comes first or none is
// found (exec then runs ours or says "not found"); denied when no command
// was found but a file that cannot be executed was (ash: status 126).
func (s *Shell) lookPath(pathVar, name string) (p string, denied bool) {
	for _, d := range strings.Split(pathVar, ":") {
		if d == "" || !path.IsAbs(d) {
			continue
		}
		d = path.Clean(d)
		if binDirs[d] && commands[name] != nil {
			return "", false
		}
		p := path.Join(d, name)
		fi, err := s.fs.stat(p, true)
		switch {
		case err != nil || fi.IsDir():
		case fi.Mode()&0o111 != 0 && s.isScript(p):
			return p, false
		default:
			denied = true
		}
	}
	return "", denied && commands[name] == nil
}

// scriptOnPath is the script lookPath finds for name on the call's PATH.
func (c *call) scriptOnPath(name string) string {
	p, _ := c.sh.lookPath(c.env.Get("PATH").String(), name)
	return p
}

// isScript reports whether the target file p starts with a #! line naming a
// shell we emulate.
func (s *Shell) isScript(p string) bool {
	f, err := s.fs.open(p, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 64)
	n, _ := io.ReadFull(f, buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if !strings.HasPrefix(line, "#!") || len(fields) == 0 {
		return false
	}
	switch path.Base(fields[0]) {
	case "sh", "ash", "bash", "busybox":
		return true
	}
	return false
}

// exitCode is an error whose message was already printed.
type exitCode uint8

func (e exitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// status turns a command's error into the interpreter's exit status,
// printing "name: message" for errors not printed yet.
func (c *call) status(err error) error {
	var code exitCode
	var status interp.ExitStatus
	switch {
	case err == nil:
		return nil
	case errors.As(err, &status):
		return status // an applet run through busybox: already a status
	case errors.As(err, &code):
		if code == 0 {
			return nil
		}
		return interp.ExitStatus(code)
	case c.ctx.Err() != nil:
		return interp.ExitStatus(130) // interrupted
	case errors.Is(err, syscall.EPIPE):
		return interp.ExitStatus(141) // the reader went away: SIGPIPE
	case errors.Is(err, errConsoleClosed):
		return interp.ExitStatus(1)
	}
	fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
	return interp.ExitStatus(1)
}

// fail prints "name: message" and returns exit status 1.
func (c *call) fail(format string, args ...any) error {
	fmt.Fprintf(c.stderr, "%s: %s\n", c.name, fmt.Sprintf(format, args...))
	return exitCode(1)
}

// failErr prints "name: path: Errno text" for a file error.
func (c *call) failErr(p string, err error) error {
	return c.fail("%s", describe(p, err))
}

func (c *call) abs(p string) string { return abs(c.dir, p) }

func (c *call) open(p string) (file, error) {
	return c.sh.fs.open(c.abs(p), os.O_RDONLY, 0)
}

func (c *call) create(p string, flag int) (file, error) {
	return c.sh.fs.open(c.abs(p), os.O_WRONLY|os.O_CREATE|flag, 0o644)
}

func (c *call) stat(p string) (fs.FileInfo, error) { return c.sh.fs.stat(c.abs(p), true) }

// input opens an input file, "-" being standard input.
func (c *call) input(p string) (io.ReadCloser, error) {
	if p == "-" {
		return io.NopCloser(c.stdin), nil
	}
	if fi, err := c.stat(p); err == nil && fi.IsDir() {
		return nil, &os.PathError{Op: "read", Path: p, Err: syscall.EISDIR}
	}
	f, err := c.open(p)
	if err != nil {
		return nil, err
	}
	return ctxReadCloser{ctxReader{c.ctx, f}, f}, nil
}

// forEachInput calls fn for each named file (standard input when none),
// printing errors and returning status 1 if any failed.
// openError is how busybox 1.35's applet c.name words the failure to open
// or read the input file n (checked with `busybox APPLET nope` and
// `busybox APPLET DIR`; the differential test compares cat and sha256sum).
func (c *call) openError(n string, err error) string {
	var errno syscall.Errno
	errors.As(err, &errno)
	switch {
	case errno == syscall.EISDIR && c.name == "cat":
		return "read error: " + errnoText(err)
	case errno == syscall.EISDIR && (c.name == "sha256sum" || c.name == "md5sum"):
		return fmt.Sprintf("can't read '%s': %s", n, errnoText(err))
	case errno != syscall.EISDIR && (c.name == "cat" || c.name == "sha256sum" || c.name == "md5sum" || c.name == "tail" || c.name == "uniq"):
		return fmt.Sprintf("can't open '%s': %s", n, errnoText(err))
	}
	return describe(n, err)
}

// errReported is an error of one input that its command already printed.
var errReported = errors.New("error reported")

func (c *call) forEachInput(names []string, fn func(name string, r io.Reader) error) error {
	if len(names) == 0 {
		names = []string{"-"}
	}
	failed := false
	for _, n := range names {
		r, err := c.input(n)
		if err != nil {
			fmt.Fprintf(c.stderr, "%s: %s\n", c.name, c.openError(n, err))
			failed = true
			continue
		}
		err = fn(n, r)
		r.Close()
		if err != nil {
			var code exitCode
			if errors.As(err, &code) || c.ctx.Err() != nil || errors.Is(err, syscall.EPIPE) {
				return err
			}
			if errors.Is(err, errReported) {
				failed = true
				continue
			}
			fmt.Fprintf(c.stderr, "%s: %s: %v\n", c.name, n, err)
			failed = true
		}
	}
	if failed {
		return exitCode(1)
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.r == nil {
		return 0, io.EOF
	}
	return r.r.Read(p)
}

type ctxReadCloser struct {
	ctxReader
	io.Closer
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (w ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}

// opts are parsed short options.
type opts struct {
	count map[byte]int
	vals  map[byte][]string
}

func (o opts) has(c byte) bool { return o.count[c] > 0 }

func (o opts) val(c byte, def string) string {
	if v := o.vals[c]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

// getopt parses busybox-style short options: spec lists the letters, a
// letter followed by ':' takes a value ("-p80" or "-p 80"). Options and
// operands may be mixed; "--" ends options; "-" alone is an operand.
func (c *call) getopt(spec string) (opts, []string, error) {
	o := opts{count: map[byte]int{}, vals: map[byte][]string{}}
	var rest []string
	args := c.args
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			k := strings.IndexByte(spec, a[j])
			if k < 0 || a[j] == ':' {
				return o, nil, c.fail("invalid option -- '%c'", a[j])
			}
			o.count[a[j]]++
			if k+1 < len(spec) && spec[k+1] == ':' {
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						return o, nil, c.fail("option requires an argument -- '%c'", a[j])
					}
					i++
					v = args[i]
				}
				o.vals[a[j]] = append(o.vals[a[j]], v)
				break
			}
		}
	}
	return o, rest, nil
}

// parseSize parses a busybox size: a decimal count with an optional suffix
// (c=1, w=2, b=512, kB=1000, k/K=1024, MB, M, GB, G).
func parseSize(s string) (int64, error) {
	suffixes := []struct {
		s string
		m int64
	}{{"kB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"KiB", 1024}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"c", 1}, {"w", 2}, {"b", 512}, {"k", 1024}, {"K", 1024}, {"M", 1 << 20}, {"G", 1 << 30}}
	mult := int64(1)
	for _, suf := range suffixes {
		if strings.HasSuffix(s, suf.s) && len(s) > len(suf.s) {
			s, mult = strings.TrimSuffix(s, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid number '%s'", s)
	}
	if mult > 1 && n > (1<<62)/mult {
		return 0, fmt.Errorf("number '%s' is too large", s)
	}
	return n * mult, nil
}

// commandNames returns the sorted command names.
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func cmdBusybox(c *call) error {
	if len(c.args) == 0 || c.args[0] == "--help" {
		fmt.Fprintf(c.stdout, "BusyBox v1.36.1 (basalt sim) multi-call binary.\n\nUsage: busybox [function [arguments]...]\n\nCurrently defined functions:\n\t%s\n", strings.Join(commandNames(), ", "))
		return nil
	}
	if c.args[0] == "--list" {
		for _, n := range commandNames() {
			fmt.Fprintln(c.stdout, n)
		}
		return nil
	}
	name := c.args[0]
	fn := commands[name]
	if fn == nil || name == "busybox" {
		return c.fail("applet not found")
	}
	sub := *c
	sub.name, sub.args = name, c.args[1:]
	return sub.status(fn(&sub))
}

func cmdWhich(c *call) error {
	mode := ""
	args := c.args
	if len(args) > 0 && (args[0] == "-type" || args[0] == "-v") {
		mode, args = args[0], args[1:]
	}
	status := 0
	for _, n := range args {
		dir := "/bin"
		if sbin[n] {
			dir = "/sbin"
		}
		switch {
		case mode != "" && interp.IsBuiltin(n):
			if mode == "-type" {
				fmt.Fprintf(c.stdout, "%s is a shell builtin\n", n)
			} else {
				fmt.Fprintln(c.stdout, n)
			}
		case !strings.Contains(n, "/") && c.scriptOnPath(n) != "":
			// A script on PATH before our commands (busybox which
			// searches PATH for an executable file).
			if mode == "-type" {
				fmt.Fprintf(c.stdout, "%s is %s\n", n, c.scriptOnPath(n))
			} else {
				fmt.Fprintln(c.stdout, c.scriptOnPath(n))
			}
		case commands[n] != nil:
			if mode == "-type" {
				fmt.Fprintf(c.stdout, "%s is %s/%s\n", n, dir, n)
			} else {
				fmt.Fprintf(c.stdout, "%s/%s\n", dir, n)
			}
		default:
			if mode == "-type" {
				fmt.Fprintf(c.stderr, "%s: not found\n", n)
			}
			status = 1
		}
	}
	return exitOr(status)
}

func exitOr(status int) error {
	if status == 0 {
		return nil
	}
	return exitCode(status)
}

func cmdEnv(c *call) error {
	var lines []string
	for name, vr := range c.env.Each {
		if vr.Exported && vr.IsSet() {
			lines = append(lines, name+"="+vr.String())
		}
	}
	slices.Sort(lines)
	if c.name == "printenv" && len(c.args) > 0 {
		status := 0
		for _, a := range c.args {
			if vr := c.env.Get(a); vr.IsSet() {
				fmt.Fprintln(c.stdout, vr.String())
			} else {
				status = 1
			}
		}
		return exitOr(status)
	}
	for _, l := range lines {
		fmt.Fprintln(c.stdout, l)
	}
	return nil
}

// cmdSh runs `sh -c SCRIPT [ARG0 ARGS...]` or `sh FILE [ARGS...]` in a new
// interpreter with this call's streams.
func cmdSh(c *call) error {
	args := c.args
	var src string
	var params []string // $1...; $0 is not settable in the interpreter
	switch {
	case len(args) >= 2 && args[0] == "-c":
		src = args[1]
		if len(args) > 2 {
			params = args[3:]
		}
	case len(args) >= 1 && !strings.HasPrefix(args[0], "-"):
		f, err := c.open(args[0])
		if err != nil {
			return c.fail("can't open '%s': %s", args[0], errnoText(err))
		}
		b, err := io.ReadAll(io.LimitReader(f, 16<<20))
		f.Close()
		if err != nil {
			return c.failErr(args[0], err)
		}
		src, params = string(b), args[1:]
	default:
		return nil // an interactive sub-shell would read the console: it reads EOF
	}
	f, err := parse(src)
	if err != nil {
		return c.fail("%s", syntaxMessage(err))
	}
	markJobs(f)
	stdin, ok := c.raw.(*os.File)
	if !ok {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		go func() { io.Copy(pw, c.stdin); pw.Close() }()
		defer pr.Close()
		stdin = pr
	}
	// A child shell inherits the exported variables (POSIX XCU 2.12).
	r, err := c.sh.newRunnerEnv(exported(c.env), stdin, c.stdout, c.stderr, c.dir, params...)
	if err != nil {
		return err
	}
	err = r.Run(c.ctx, f)
	var es interp.ExitStatus
	switch {
	case err == nil:
		return nil
	case errors.As(err, &es):
		return exitCode(es)
	}
	return err
}
