// Package simshell is the shell of the sim target: a POSIX shell interpreter
// (mvdan.cc/sh/v3/interp) behind the sim node's serial console, with
// busybox-like commands over a private filesystem.
//
// The target's filesystem is a host directory (Config.Root) opened as an
// [os.Root], so no path, ".." or symlink reaches a host file outside it; its
// disks are host files (Config.Disks); /dev/null, /dev/zero, /dev/urandom and
// /dev/console are simulated. No command runs a host program.
//
// Commands (also callable as `busybox NAME ...`; the shell's own builtins —
// echo, printf, test, [, true, false, cd, pwd, read, export, exit ... — come
// from the interpreter): cat, ls, mkdir, rm, rmdir, cp, mv, touch, chmod, ln, head, tail,
// wc, grep, sed (s/// only), sort, uniq, cut, tr, tee, seq, dd, gzip, gunzip, zcat, xz, unxz, xzcat, sha256sum, md5sum, wget,
// httpd, mount, umount, ip, ifconfig, uname, hostname, kexec, reboot,
// poweroff, halt, sync, sleep, date, uptime, dmesg, free, df, id, whoami, sh,
// stty, which, basename, dirname, env, blockdev, clear; and libubootenv's fw_printenv
// and fw_setenv (not busybox applets: what A/B images ship beside busybox).
// Partition devices (/dev/sda1 ...) exist for each entry of a disk's MBR. An unknown command
// prints "sh: NAME: not found" and exits 127, like busybox ash.
//
// Network commands only reach loopback addresses: wget refuses any other,
// and httpd listens on Config.IP when it is a loopback address, else on
// 127.0.0.1.
package simshell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// Hooks are called when the target's power and kexec commands run. They are
// called from the command's goroutine before Serve returns and must not block
// for long. A nil hook is skipped.
type Hooks struct {
	// Kexec receives the kernel and initrd loaded by `kexec -l` and the
	// command line, when `kexec -e` runs.
	Kexec func(kernel, initrd []byte, append string)
	// Reboot is called by `reboot`.
	Reboot func()
	// Poweroff is called by `poweroff` and `halt`.
	Poweroff func()
}

// Config describes the target the shell runs on. Root is required; the
// other fields have the defaults stated beside them.
type Config struct {
	// Root is the host directory that is the target's filesystem. It is
	// created if missing and populated with /dev, /etc, /proc, /root, /tmp,
	// /mnt and friends. The caller owns it (and removes it).
	Root string
	// Disks maps a target device path ("/dev/sda") to the host file that
	// is the disk. Disks are never truncated; a missing file is a blank
	// disk that is created on the first write.
	Disks map[string]string
	// Cmdline is the content of /proc/cmdline.
	Cmdline string
	// Hostname of the target; default "sim".
	Hostname string
	// IP is the address ip and ifconfig report for eth0 and where httpd
	// listens when it is a loopback address; default "127.0.0.1".
	IP string
	// MAC is eth0's hardware address; default "52:54:00:12:34:56".
	MAC string
	// Prompt is the initial $PS1; default "root@<hostname>:~# ". A job may
	// change it with `export PS1=...`; \u, \h, \w, \W and \$ are expanded.
	Prompt string
	// Uname is what `uname -a` prints; the other uname flags pick its
	// fields (sysname, nodename, release, version..., machine). Default
	// "Linux <hostname> 3.13.0-sim #1 SMP Thu Jan 1 00:00:00 UTC 2015 armv7l GNU/Linux".
	Uname string
	// BootLog is what dmesg prints.
	BootLog string
	// CPUs is the number of cores /proc/cpuinfo lists; default 4 (a
	// Highbank ECX-1000 has four Cortex-A9). Memory is the RAM in bytes
	// behind /proc/meminfo; default 512 MiB.
	CPUs   int
	Memory int64
	// Init is a script the first Serve runs before its first prompt, as a
	// master image's /init runs its daemons before the shell starts; its
	// output goes to the console. Servers it starts run until the shell
	// stops.
	Init  string
	Hooks Hooks
	// Emit records machine events ("sim.httpd", "sim.wget", "sim.kexec",
	// "sim.reboot", "sim.poweroff"); nil discards them.
	Emit func(typ string, fields map[string]any)
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// Errors Serve returns when the target stopped itself.
var (
	ErrPoweroff = errors.New("simshell: target powered off")
	ErrReboot   = errors.New("simshell: target rebooted")
	ErrKexec    = errors.New("simshell: target kexec'd a new kernel")
)

// Shell is the target's shell. Serve runs it on a console; the filesystem
// and the state a shell keeps between commands (mounts, a loaded kexec
// kernel, the hostname) belong to the Shell, so Serve may be called again
// after it returned.
type Shell struct {
	cfg   Config
	fs    *vfs
	log   *slog.Logger
	start time.Time

	mu       sync.Mutex
	hostname string
	mounts   []mountEntry
	kexec    *kexecImage
	servers  map[*http.Server]struct{}
	halt     error         // why the target stopped, once it did
	halted   chan struct{} // closed when halt is set
	console  *ttyWriter    // the running Serve's console, or nil
	echo     bool          // tty echo (stty echo / -echo)
	fgCancel context.CancelFunc
	initRan  bool
	serveCtx context.Context // of the running Serve: background jobs end with it
	jobSeq   int             // background jobs started (see jobs.go)
	jobs     map[int]func()  // running background jobs by number: kill
}

type mountEntry struct{ dev, dir, typ, opts string }

type kexecImage struct {
	kernel, initrd []byte
	cmdline        string
}

// New prepares the target's filesystem under cfg.Root and returns its shell.
func New(cfg Config) (*Shell, error) {
	if cfg.Root == "" {
		return nil, errors.New("simshell: Config.Root is required")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "sim"
	}
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.MAC == "" {
		cfg.MAC = "52:54:00:12:34:56"
	}
	if cfg.Prompt == "" {
		cfg.Prompt = "root@" + cfg.Hostname + ":~# "
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = 4
	}
	if cfg.Memory <= 0 {
		cfg.Memory = 512 << 20
	}
	if cfg.Uname == "" {
		cfg.Uname = "Linux " + cfg.Hostname + " 3.13.0-sim #1 SMP Thu Jan 1 00:00:00 UTC 2015 armv7l GNU/Linux"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
		return nil, fmt.Errorf("simshell: %w", err)
	}
	hostRoot, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("simshell: %w", err)
	}
	root, err := os.OpenRoot(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("simshell: %w", err)
	}
	disks := map[string]string{}
	for dev, host := range cfg.Disks {
		disks[abs("/", dev)] = host
	}
	s := &Shell{
		cfg:      cfg,
		fs:       &vfs{root: root, hostRoot: filepath.ToSlash(hostRoot), disks: disks},
		log:      log,
		start:    time.Now(),
		hostname: cfg.Hostname,
		servers:  map[*http.Server]struct{}{},
		jobs:     map[int]func(){},
		halted:   make(chan struct{}),
		echo:     true,
	}
	if err := s.populate(); err != nil {
		root.Close()
		return nil, fmt.Errorf("simshell: prepare %s: %w", cfg.Root, err)
	}
	return s, nil
}

// populate creates the directories and files every target has.
func (s *Shell) populate() error {
	r := s.fs.root
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "dev", "etc", "proc", "sys", "root", "tmp", "mnt", "var/log", "var/www", "run", "boot", "home", "sys/class/net/lo", "sys/class/net/eth0", "proc/self"} {
		if err := r.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"proc/cmdline": s.cfg.Cmdline + "\n",
		"proc/version": s.cfg.Uname + "\n",
		// sysfs attributes, as Linux has them for lo and eth0.
		"sys/class/net/lo/address":     "00:00:00:00:00:00\n",
		"sys/class/net/eth0/address":   s.cfg.MAC + "\n",
		"sys/class/net/lo/operstate":   "unknown\n",
		"sys/class/net/lo/carrier":     "1\n",
		"sys/class/net/eth0/operstate": "up\n",
		"sys/class/net/eth0/carrier":   "1\n",
		"sys/class/net/eth0/mtu":       "1500\n",
		"proc/cpuinfo":                 cpuinfo(s.cfg.CPUs),
		"proc/meminfo":                 meminfo(s.cfg.Memory),
		"etc/hostname":                 s.cfg.Hostname + "\n",
		"etc/passwd":                   "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":                    "root:x:0:\n",
	}
	for name, content := range files {
		if err := r.WriteFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	// sysfs block devices: size in 512-byte sectors whatever the sector
	// size (Documentation/ABI/stable/sysfs-block), and the SCSI INQUIRY
	// vendor (8 bytes) and model (16 bytes), space-padded, as libata shows
	// a SATA disk.
	for dev, host := range s.cfg.Disks {
		name := path.Base(dev)
		var size int64
		if fi, err := os.Stat(host); err == nil {
			size = fi.Size()
		}
		d := "sys/block/" + name
		if err := r.MkdirAll(d+"/device", 0o755); err != nil {
			return err
		}
		for f, content := range map[string]string{
			d + "/size":          fmt.Sprintf("%d\n", size/512),
			d + "/ro":            "0\n",
			d + "/device/vendor": fmt.Sprintf("%-8s\n", "ATA"),
			d + "/device/model":  fmt.Sprintf("%-16s\n", "basalt sim disk"),
		} {
			if err := r.WriteFile(f, []byte(content), 0o644); err != nil {
				return err
			}
		}
	}
	// A write-only procfs file (see writeOnly).
	if err := r.WriteFile("proc/self/clear_refs", nil, 0o200); err != nil {
		return err
	}
	if err := r.Chmod("proc/self/clear_refs", 0o200); err != nil { // whatever the umask
		return err
	}
	return nil
}

// Close stops what the shell started (httpd servers) and releases Root.
func (s *Shell) Close() error {
	s.stopServers()
	return s.fs.root.Close()
}

func (s *Shell) emit(typ string, fields map[string]any) {
	if s.cfg.Emit != nil {
		s.cfg.Emit(typ, fields)
	}
}

// setHalt records that the target stopped and stops the running command line.
func (s *Shell) setHalt(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.halt != nil {
		return
	}
	s.halt = err
	close(s.halted)
	if s.fgCancel != nil {
		s.fgCancel()
	}
}

func (s *Shell) stopServers() {
	s.mu.Lock()
	srvs := s.servers
	s.servers = map[*http.Server]struct{}{}
	s.mu.Unlock()
	for srv := range srvs {
		srv.Close()
	}
}

// newRunner returns an interpreter whose every command, file, stat and glob
// goes through the shell.
func (s *Shell) newRunner(stdin *os.File, stdout, stderr io.Writer, dir string, params ...string) (*interp.Runner, error) {
	return s.newRunnerEnv([]string{
		"PATH=/sbin:/usr/sbin:/bin:/usr/bin",
		"HOME=/root",
		"USER=root",
		"LOGNAME=root",
		"SHELL=/bin/sh",
		"TERM=vt102",
		"PS1=" + s.cfg.Prompt,
		"PS2=> ",
	}, stdin, stdout, stderr, dir, params...)
}

// exported lists the exported variables of env as NAME=value.
func exported(env expand.Environ) []string {
	var out []string
	env.Each(func(name string, vr expand.Variable) bool {
		if vr.Exported && vr.IsSet() && name != "TMPDIR" {
			out = append(out, name+"="+vr.String())
		}
		return true
	})
	return out
}

// newRunnerEnv is newRunner with the environment vars (NAME=value).
func (s *Shell) newRunnerEnv(vars []string, stdin *os.File, stdout, stderr io.Writer, dir string, params ...string) (*interp.Runner, error) {
	env := expand.ListEnviron(append(vars,
		// The interpreter opens "$TMPDIR/sh-interp-*" on the host
		// directly (for process substitution, which we refuse). A
		// directory under /dev/null cannot exist, so no target path
		// takes that shortcut. It is unset before any command runs.
		"TMPDIR=/dev/null/simshell",
	)...)
	opts := []interp.RunnerOption{
		interp.Env(env),
		func(r *interp.Runner) error { r.Dir = s.fs.host(dir); return nil }, // see call
		interp.Interactive(true),
		interp.StdIO(stdin, stdout, stderr),
		interp.ExecHandlers(func(interp.ExecHandlerFunc) interp.ExecHandlerFunc { return s.exec }),
		interp.CallHandler(s.call),
		interp.OpenHandler(s.fs.openHandler),
		interp.ReadDirHandler2(s.fs.readDirHandler),
		interp.StatHandler(s.fs.statHandler),
	}
	if len(params) > 0 {
		opts = append(opts, interp.Params(append([]string{"--"}, params...)...))
	}
	r, err := interp.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("simshell: %w", err)
	}
	unset, _ := syntax.NewParser().Parse(strings.NewReader("unset TMPDIR"), "")
	if err := r.Run(context.Background(), unset); err != nil {
		return nil, fmt.Errorf("simshell: %w", err)
	}
	return r, nil
}

// call rewrites commands before the interpreter runs them: `busybox X` for
// a shell builtin X runs the builtin, and the PATH lookups of `type` and
// `command -v` use our command table instead of the host's PATH.
//
// The interpreter's cd (and test -r/-w/-x) check access(2) on the host path
// of the directory, so its working directory is the host directory under
// Root: `cd DIR` becomes `cd HOSTROOT/DIR` once DIR is known to be a
// directory of the target, and `pwd` prints the target path. $PWD shows the
// host path.
func (s *Shell) call(ctx context.Context, args []string) ([]string, error) {
	switch {
	case args[0] == "cd":
		return s.cdArgs(ctx, args), nil
	case args[0] == "pwd":
		return []string{pwdCommand}, nil
	case args[0] == "eval" && len(args) > 1:
		return evalArgs(args), nil
	case args[0] == "kill":
		return append([]string{killCommand}, args[1:]...), nil
	case args[0] == "test" || args[0] == "[":
		out := slices.Clone(args)
		for i := 1; i+1 < len(out); i++ {
			if (out[i] == "-r" || out[i] == "-w" || out[i] == "-x") && path.IsAbs(out[i+1]) {
				out[i+1] = s.fs.host(s.fs.virt(out[i+1]))
			}
		}
		return out, nil
	case args[0] == "busybox" && len(args) > 1 && interp.IsBuiltin(args[1]):
		return args[1:], nil
	case args[0] == "type" && len(args) > 1:
		return append([]string{"which", "-type"}, args[1:]...), nil
	case args[0] == "command" && len(args) > 2 && (args[1] == "-v" || args[1] == "-V"):
		return append([]string{"which", "-v"}, args[2:]...), nil
	}
	return args, nil
}

// pwdCommand is the internal command `pwd` becomes; a name no one types.
const pwdCommand = "\x00pwd"

// cdArgs rewrites a cd command line to the host path of its target
// directory; left as it is, the interpreter's cd reports the error.
func (s *Shell) cdArgs(ctx context.Context, args []string) []string {
	rest := args[1:]
	for len(rest) > 0 && (rest[0] == "-P" || rest[0] == "-L") {
		rest = rest[1:]
	}
	hc := interp.HandlerCtx(ctx)
	cwd := s.fs.virt(hc.Dir)
	var dir string
	switch {
	case len(rest) == 0:
		dir = hc.Env.Get("HOME").String()
	case rest[0] == "-":
		dir = hc.Env.Get("OLDPWD").String()
		if dir == "" {
			return args
		}
	default:
		dir = rest[0]
	}
	v := abs(cwd, s.fs.virt(dir))
	if !path.IsAbs(dir) {
		v = abs(cwd, dir)
	}
	if fi, err := s.fs.stat(v, true); err != nil || !fi.IsDir() {
		return []string{"cd", v}
	}
	if len(rest) > 0 && rest[0] == "-" {
		fmt.Fprintln(hc.Stdout, v)
	}
	return []string{"cd", s.fs.host(v)}
}

// parse parses one command line. It refuses process substitution, which
// busybox ash does not have and which would make the interpreter create host
// FIFOs.
func parse(src string) (*syntax.File, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(src), "")
	if err != nil {
		return nil, err
	}
	var bad error
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n.(type) {
		case *syntax.ProcSubst:
			bad = errors.New(`syntax error: unexpected "("`)
		case *syntax.CoprocClause:
			bad = errors.New("syntax error: coproc is not supported")
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}
	return f, nil
}

// hasBackground reports whether f starts a background job.
func hasBackground(f *syntax.File) bool {
	bg := false
	syntax.Walk(f, func(n syntax.Node) bool {
		if st, ok := n.(*syntax.Stmt); ok && (st.Background || st.Disown) {
			bg = true
		}
		return !bg
	})
	return bg
}

// prompt expands the busybox ash escapes of PS1.
func (s *Shell) prompt(ps1, dir string) string {
	if !strings.Contains(ps1, `\`) {
		return ps1
	}
	s.mu.Lock()
	host := s.hostname
	s.mu.Unlock()
	w := dir
	if w == "/root" || strings.HasPrefix(w, "/root/") {
		w = "~" + strings.TrimPrefix(w, "/root")
	}
	var b strings.Builder
	for i := 0; i < len(ps1); i++ {
		c := ps1[i]
		if c != '\\' || i+1 == len(ps1) {
			b.WriteByte(c)
			continue
		}
		i++
		switch ps1[i] {
		case 'u':
			b.WriteString("root")
		case 'h':
			b.WriteString(strings.SplitN(host, ".", 2)[0])
		case 'H':
			b.WriteString(host)
		case 'w':
			b.WriteString(w)
		case 'W':
			if w == "~" || w == "/" {
				b.WriteString(w)
			} else {
				b.WriteString(path.Base(dir))
			}
		case '$':
			b.WriteByte('#')
		case 'n':
			b.WriteString("\n")
		case '\\':
			b.WriteByte('\\')
		case '[', ']':
		default:
			b.WriteByte('\\')
			b.WriteByte(ps1[i])
		}
	}
	return b.String()
}

// cpuinfo is /proc/cpuinfo as Linux 3.13 on a Cortex-A9 (arch/arm/kernel/
// setup.c c_show) prints it, on a Highbank.
func cpuinfo(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "processor\t: %d\nmodel name\t: ARMv7 Processor rev 0 (v7l)\nBogoMIPS\t: 2000.00\n"+
			"Features\t: swp half thumb fastmult vfp edsp thumbee neon vfpv3 tls vfpd32 \nCPU implementer\t: 0x41\n"+
			"CPU architecture: 7\nCPU variant\t: 0x2\nCPU part\t: 0xc09\nCPU revision\t: 0\n\n", i)
	}
	b.WriteString("Hardware\t: Highbank\nRevision\t: 0000\nSerial\t\t: 0000000000000000\n")
	return b.String()
}

// meminfo is the head of /proc/meminfo (fs/proc/meminfo.c: "%-15s%8lu kB"
// style, value right-aligned), MemTotal being RAM less what the kernel
// reserved for itself.
func meminfo(mem int64) string {
	total := mem / 1024 * 97 / 100
	free := total * 9 / 10
	return fmt.Sprintf("MemTotal:       %8d kB\nMemFree:        %8d kB\nMemAvailable:   %8d kB\nBuffers:        %8d kB\nCached:         %8d kB\n",
		total, free, free, 0, total/50)
}
