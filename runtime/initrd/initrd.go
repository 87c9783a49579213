// Package initrd builds the master image's initrd: a gzipped newc cpio
// archive that a PXE-booted target runs from RAM to deploy images to its
// disk and serve files back (seed 001: "copy_exec" hooks for
// update-initramfs, done here without the host's initramfs-tools).
//
// The archive holds a static busybox and its applet links, the host
// binaries the caller names with every shared library they load (found from
// the ELF headers the way the host's dynamic loader would find them), kernel
// modules with the modules they need (from a kernel's lib/modules/VERSION:
// its modules.dep, or the modules' .modinfo when there is none), extra host
// files, and a generated /init. /init mounts proc, sysfs and devtmpfs, loads
// the modules with busybox insmod (a distribution kernel such as Debian's
// builds e1000 and virtio_blk as modules), brings lo and eth0 up (eth0 by
// DHCP with busybox udhcpc; it waits basalt.netwait=N seconds from the
// kernel command line, default 5, for eth0 to appear), prints
// "basalt master image VERSION" and the kernel command line, then hands PID 1
// to busybox init, which keeps a login shell on the kernel's console with
// PS1 set to the prompt the job waits for.
//
// The version is written at build time to /etc/basalt-master-image-info and,
// for LAVA users, as the script /sbin/lava-master-image-info that prints it.
// There is no console option: the console is whatever the kernel's
// console= names (ttyS0, ttyAMA0 ...), found at run time by busybox cttyhack,
// so one image serves device types with different UARTs.
//
// Builds are reproducible: entries are sorted, every mtime is fixed, owners
// are root and the gzip header carries no time or name, so the same inputs
// give byte-identical archives.
//
// The CLI wiring this package expects (cmd/ owns the flags):
//
//	basalt initrd build -o FILE [--busybox PATH] [--add HOSTPATH]... [--file SRC:DEST]...
//	    [--modules-dir DIR --module NAME...] [--version V] [--hostname NAME] [--prompt PS1] [--applets LIST] [--gzip-level N]
//	    [--no-compress] [--manifest[=json]]
//
// -o maps to the writer; --add to Options.Binaries, --file to Options.Files,
// --module to Options.Modules, the rest to the field of the same name; --manifest prints the returned
// Manifest with WriteText (or as JSON) to stdout.
package initrd

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/cavaliergopher/cpio"
)

// Options says what goes into the image. The zero value builds a busybox-only
// image from /bin/busybox.
type Options struct {
	// Busybox is the host path of a statically linked busybox, installed as
	// /bin/busybox. Default /bin/busybox (Debian's busybox-static). A
	// dynamically linked busybox is refused.
	Busybox string

	// Applets are the archive paths of busybox's applet links ("bin/sh",
	// "usr/bin/wget"), each a symlink to /bin/busybox. Default: what
	// `busybox --list-full` prints, run at build time; if the busybox cannot
	// run on the build host (another architecture), a built-in list.
	Applets []string

	// Binaries are absolute host paths copied to the same path in the
	// archive together with their ELF interpreter and shared libraries.
	// Symlinks stay symlinks and their targets come along. Scripts ("#!")
	// are copied as they are; their interpreter is not added (busybox
	// provides /bin/sh; name /bin/bash here too if a script needs it).
	// Libraries loaded with dlopen (glibc's libnss_*) are not in DT_NEEDED:
	// name them here or in Files.
	Binaries []string

	// Files maps a host file to its absolute path in the archive. Symlinks
	// on the host side are followed. A file given here replaces the
	// generated file of the same path (/init, /etc/profile ...).
	Files map[string]string

	// ModulesDir is a kernel's modules directory, lib/modules/VERSION (from
	// an unpacked linux-image package, for instance), whose base name is
	// the kernel release. Modules are looked up in its modules.dep, or,
	// without one (Debian's packages ship none: depmod writes it at
	// install), by file name with dependencies from each module's
	// .modinfo section. Built-in modules are listed by modules.builtin.
	ModulesDir string

	// Modules are kernel module names ("e1000", "virtio_blk";
	// '-' and '_' are the same) that /init loads with busybox insmod,
	// together with every module they need, in dependency order, before it
	// brings eth0 up. Modules the kernel has built in are skipped. Files
	// go to /lib/modules/VERSION/ under their path in ModulesDir, with a
	// modules.dep for them; .ko.xz and .ko.gz are stored decompressed,
	// .ko.zst is refused.
	Modules []string

	// Version is written to /etc/basalt-master-image-info. Default
	// "unversioned". One line of printable characters.
	Version string

	// Hostname goes to /etc/hostname. Default "basalt-master".
	Hostname string

	// Prompt is the shell's PS1. Default "basalt-master# ".
	Prompt string

	// ModTime is the mtime of every entry. Default the Unix epoch.
	ModTime time.Time

	// GzipLevel is the compress/gzip level; 0 means gzip.DefaultCompression.
	GzipLevel int

	// Uncompressed writes the bare cpio archive (the kernel accepts both).
	Uncompressed bool

	// LDConf is the host's ld.so.conf, for library directories beyond the
	// loader's built-in ones. Default /etc/ld.so.conf; "-" for none.
	LDConf string

	// Log receives progress at debug level; nil discards.
	Log *slog.Logger
}

// Manifest describes a built archive.
type Manifest struct {
	Version string `json:"version"`
	Busybox string `json:"busybox"`
	// AppletSource is where the applet list came from: "options",
	// "busybox --list-full" or "built-in".
	AppletSource string `json:"applet_source"`
	// Entries lists every archive entry in archive order.
	Entries []Entry `json:"entries"`
	// Objects is the library resolution: every ELF object copied and the
	// libraries it needed, sorted by path.
	Objects []Object `json:"objects,omitempty"`
	// LibraryPath lists library directories outside the loader's built-in
	// path (found through ld.so.conf); /init and /etc/profile export them
	// as LD_LIBRARY_PATH because the image has no ld.so.cache.
	LibraryPath []string `json:"library_path,omitempty"`
	// KernelVersion is the base name of Options.ModulesDir when modules
	// were asked for.
	KernelVersion string `json:"kernel_version,omitempty"`
	// ModuleDeps says where module dependencies came from:
	// DepsFromModulesDep or DepsFromModinfo.
	ModuleDeps string `json:"module_deps,omitempty"`
	// Modules are the modules /init loads, in load order.
	Modules []Module `json:"modules,omitempty"`
	// BuiltinModules are requested modules the kernel has built in.
	BuiltinModules []string `json:"builtin_modules,omitempty"`
	// Overridden lists generated files replaced by Options.Files.
	Overridden []string `json:"overridden,omitempty"`
	// Warnings are things the caller should know about.
	Warnings []string `json:"warnings,omitempty"`
}

// Entry is one file in the archive.
type Entry struct {
	Path   string `json:"path"` // absolute, as seen on the target
	Type   string `json:"type"` // "file", "dir", "symlink" or "char"
	Mode   uint32 `json:"mode"` // permission bits (with setuid, setgid, sticky)
	Size   int64  `json:"size"`
	Source string `json:"source,omitempty"` // host file the content came from
	Target string `json:"target,omitempty"` // symlink target
	Rdev   string `json:"rdev,omitempty"`   // "major:minor" of a device node
}

// Object is one ELF object and the libraries it needed.
type Object struct {
	Path        string `json:"path"`
	Interpreter string `json:"interpreter,omitempty"`
	Needed      []Lib  `json:"needed,omitempty"`
}

// Lib is one DT_NEEDED entry and where it was found.
type Lib struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Via is how: "rpath", "runpath", "ld.so.conf", "system" or "path".
	Via string `json:"via"`
}

// WriteText writes the manifest as lines like `ls -l` prints, followed by the
// library resolution.
func (m *Manifest) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# basalt master image %s (busybox %s, applets from %s)\n", m.Version, m.Busybox, m.AppletSource)
	for _, e := range m.Entries {
		switch e.Type {
		case "symlink":
			fmt.Fprintf(bw, "%-7s %04o %9d %s -> %s\n", e.Type, e.Mode, e.Size, e.Path, e.Target)
		case "char":
			fmt.Fprintf(bw, "%-7s %04o %9s %s\n", e.Type, e.Mode, e.Rdev, e.Path)
		default:
			fmt.Fprintf(bw, "%-7s %04o %9d %s\n", e.Type, e.Mode, e.Size, e.Path)
		}
	}
	for _, o := range m.Objects {
		if o.Interpreter != "" {
			fmt.Fprintf(bw, "# %s: interpreter %s\n", o.Path, o.Interpreter)
		}
		for _, l := range o.Needed {
			fmt.Fprintf(bw, "# %s: needs %s => %s (%s)\n", o.Path, l.Name, l.Path, l.Via)
		}
	}
	for _, mod := range m.Modules {
		fmt.Fprintf(bw, "# module %s: %s", mod.Name, mod.Path)
		if len(mod.Deps) > 0 {
			fmt.Fprintf(bw, " (needs %s)", strings.Join(mod.Deps, ", "))
		}
		bw.WriteString("\n")
	}
	for _, n := range m.BuiltinModules {
		fmt.Fprintf(bw, "# module %s: built into the kernel\n", n)
	}
	for _, s := range m.Warnings {
		fmt.Fprintf(bw, "# warning: %s\n", s)
	}
	return bw.Flush()
}

// Defaults.
const (
	DefaultBusybox  = "/bin/busybox"
	DefaultVersion  = "unversioned"
	DefaultHostname = "basalt-master"
	DefaultPrompt   = "basalt-master# "
	defaultLDConf   = "/etc/ld.so.conf"
)

// requiredApplets are the applets /init and the udhcpc script run.
var requiredApplets = []string{"sh", "mount", "mkdir", "cat", "hostname", "ip", "sleep", "udhcpc", "init"}

// builtinApplets is the fallback when `busybox --list-full` cannot run: the
// applets a master image uses, placed where Debian's busybox puts them.
var builtinApplets = []string{
	"bin/cat", "bin/cp", "bin/cttyhack", "bin/dd", "bin/df", "bin/dmesg", "bin/echo", "bin/false",
	"bin/grep", "bin/gunzip", "bin/gzip", "bin/hostname", "bin/kill", "bin/ln", "bin/ls", "bin/mkdir",
	"bin/mknod", "bin/mount", "bin/mv", "bin/ping", "bin/ps", "bin/pwd", "bin/rm", "bin/rmdir",
	"bin/sed", "bin/sh", "bin/sleep", "bin/stty", "bin/sync", "bin/tar", "bin/touch", "bin/true",
	"bin/umount", "bin/uname", "bin/zcat",
	"sbin/blkid", "sbin/fdisk", "sbin/halt", "sbin/ifconfig", "sbin/init", "sbin/insmod", "sbin/ip",
	"sbin/mdev", "sbin/modprobe", "sbin/poweroff", "sbin/reboot", "sbin/route", "sbin/udhcpc",
	"usr/bin/awk", "usr/bin/cut", "usr/bin/env", "usr/bin/find", "usr/bin/free", "usr/bin/head",
	"usr/bin/hexdump", "usr/bin/md5sum", "usr/bin/nc", "usr/bin/setsid", "usr/bin/sha1sum",
	"usr/bin/sha256sum", "usr/bin/sort", "usr/bin/tail", "usr/bin/tee", "usr/bin/tr", "usr/bin/uniq",
	"usr/bin/unxz", "usr/bin/wc", "usr/bin/wget", "usr/bin/xargs", "usr/bin/xz", "usr/bin/xzcat",
	"usr/sbin/chroot", "usr/sbin/httpd",
}

// skeleton directories and their modes.
var skeleton = []struct {
	path string
	perm uint32
}{
	{"/bin", 0o755}, {"/sbin", 0o755}, {"/usr/bin", 0o755}, {"/usr/sbin", 0o755},
	{"/proc", 0o555}, {"/sys", 0o555}, {"/dev", 0o755}, {"/tmp", 0o1777},
	{"/etc", 0o755}, {"/root", 0o700}, {"/mnt", 0o755}, {"/var", 0o755}, {"/run", 0o755},
	{"/lava", 0o755},
}

func (o *Options) defaults() error {
	if o.Busybox == "" {
		o.Busybox = DefaultBusybox
	}
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.Hostname == "" {
		o.Hostname = DefaultHostname
	}
	if o.Prompt == "" {
		o.Prompt = DefaultPrompt
	}
	if o.ModTime.IsZero() {
		o.ModTime = time.Unix(0, 0)
	}
	if o.LDConf == "" {
		o.LDConf = defaultLDConf
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Version) > 256 || strings.IndexFunc(o.Version, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("version %q: want one line of at most 256 printable characters", o.Version)
	}
	if len(o.Hostname) > 64 || strings.IndexFunc(o.Hostname, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.')
	}) >= 0 {
		return fmt.Errorf("hostname %q: want at most 64 letters, digits, '-' or '.'", o.Hostname)
	}
	if strings.ContainsAny(o.Prompt, "\x00\n\r") {
		return fmt.Errorf("prompt %q: must be one line", o.Prompt)
	}
	if o.GzipLevel == 0 {
		o.GzipLevel = gzip.DefaultCompression
	}
	if o.GzipLevel < gzip.HuffmanOnly || o.GzipLevel > gzip.BestCompression {
		return fmt.Errorf("gzip level %d: want %d..%d", o.GzipLevel, gzip.HuffmanOnly, gzip.BestCompression)
	}
	return nil
}

// Build writes the master initrd to w and describes it. Nothing is written
// to w unless the whole archive could be assembled; an error while writing
// leaves w holding a partial archive.
func Build(ctx context.Context, w io.Writer, o Options) (*Manifest, error) {
	if err := o.defaults(); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	log := o.Log
	m := &Manifest{Version: o.Version, Busybox: o.Busybox}

	bb, err := readELF(o.Busybox)
	if err != nil {
		return nil, fmt.Errorf("initrd: busybox: %w", err)
	}
	if !bb.static() {
		return nil, fmt.Errorf("initrd: busybox %s is dynamically linked (interpreter %q, needs %s); "+
			"use a static one such as Debian's busybox-static", o.Busybox, bb.interp, strings.Join(bb.needed, ", "))
	}

	applets, err := appletList(ctx, &o, m)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	names := map[string]bool{}
	for _, a := range applets {
		names[path.Base(a)] = true
	}
	var missing []string
	required := requiredApplets
	if len(o.Modules) > 0 {
		required = append(slices.Clone(required), "insmod")
	}
	for _, a := range required {
		if !names[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("initrd: busybox %s lacks applets /init needs: %s", o.Busybox, strings.Join(missing, ", "))
	}
	cttyhack := names["cttyhack"]

	t := newTree()
	for _, d := range skeleton {
		if err := t.mkdir(d.path, d.perm); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}
	if err := t.copyFile("/bin/busybox", o.Busybox, 0o755); err != nil {
		return nil, fmt.Errorf("initrd: busybox: %w", err)
	}

	// Host binaries and what they load.
	conf := o.LDConf
	if conf == "-" {
		conf = ""
	}
	res, err := newResolver(conf)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	for _, b := range o.Binaries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !path.IsAbs(b) {
			return nil, fmt.Errorf("initrd: binary %q: want an absolute host path", b)
		}
		b = path.Clean(b)
		if err := addBinary(t, res, b); err != nil {
			return nil, fmt.Errorf("initrd: binary %s: %w", b, err)
		}
		log.Debug("initrd binary", "path", b)
	}
	for _, p := range res.order {
		if err := t.mirror(p); err != nil {
			return nil, fmt.Errorf("initrd: library %s: %w", p, err)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(res.objects)) {
		m.Objects = append(m.Objects, *res.objects[p])
	}
	m.LibraryPath = slices.Sorted(maps.Keys(res.extra))
	libPath := strings.Join(m.LibraryPath, ":")

	mods, err := addModules(t, &o, m)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}

	// Extra files, sorted by destination so errors are deterministic.
	dests := map[string]string{}
	for src, dest := range o.Files {
		if !path.IsAbs(dest) {
			return nil, fmt.Errorf("initrd: file %s: destination %q is not absolute", src, dest)
		}
		dests[path.Clean(dest)] = src
	}
	for _, dest := range slices.Sorted(maps.Keys(dests)) {
		if err := t.copyFile(dest, dests[dest], 0); err != nil {
			return nil, fmt.Errorf("initrd: file %s -> %s: %w", dests[dest], dest, err)
		}
	}

	// Generated files, unless the caller supplied their own.
	gen := []struct {
		path string
		perm uint32
		data string
	}{
		{"/init", 0o755, initScript(cttyhack, libPath, mods)},
		{"/etc/inittab", 0o644, inittab(cttyhack)},
		{"/etc/profile", 0o644, profile(&o, libPath)},
		{"/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"},
		{"/etc/group", 0o644, "root:x:0:\n"},
		{"/etc/hostname", 0o644, o.Hostname + "\n"},
		{"/etc/udhcpc.script", 0o755, udhcpcScript},
		{"/etc/basalt-master-image-info", 0o644, o.Version + "\n"},
		{"/sbin/lava-master-image-info", 0o755, lavaInfo(o.Version)},
	}
	for _, g := range gen {
		if _, ok := dests[g.path]; ok {
			m.Overridden = append(m.Overridden, g.path)
			continue
		}
		n := &node{typ: cpio.TypeReg, perm: g.perm, data: []byte(g.data), size: int64(len(g.data))}
		if _, err := t.put(g.path, n); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}

	// The kernel opens /dev/console for /init before devtmpfs exists.
	for _, d := range []struct {
		path         string
		perm         uint32
		major, minor uint32
	}{{"/dev/console", 0o600, 5, 1}, {"/dev/null", 0o666, 1, 3}} {
		n := &node{typ: cpio.TypeChar, perm: d.perm, major: d.major, minor: d.minor}
		if _, err := t.put(d.path, n); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}

	// Applet links last: a real binary of the same name wins.
	for _, a := range applets {
		p := "/" + a
		if t.has(p) {
			continue
		}
		if _, err := t.put(p, &node{typ: cpio.TypeSymlink, perm: 0o777, link: "/bin/busybox"}); err != nil {
			return nil, fmt.Errorf("initrd: applet %s: %w", a, err)
		}
	}

	m.Entries = t.manifest()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	out := io.Writer(&ctxWriter{ctx: ctx, w: w})
	var zw *gzip.Writer
	if !o.Uncompressed {
		zw, _ = gzip.NewWriterLevel(out, o.GzipLevel) // level checked in defaults
		out = zw
	}
	if err := t.write(out, o.ModTime); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}
	log.Debug("initrd built", "entries", len(m.Entries), "objects", len(m.Objects), "modules", len(m.Modules))
	return m, nil
}

// addBinary adds one host binary (ELF or script) and resolves its libraries.
func addBinary(t *tree, res *resolver, b string) error {
	fi, err := os.Stat(b)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	if _, err := res.add(b); err != nil {
		if !errors.Is(err, ErrNotELF) || !isScript(b) {
			return err
		}
	}
	return t.mirror(b)
}

// isScript reports whether the file starts with "#!".
func isScript(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [2]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == "#!"
}

// appletList returns the applet link paths and records their source.
func appletList(ctx context.Context, o *Options, m *Manifest) ([]string, error) {
	var list []string
	switch {
	case o.Applets != nil:
		m.AppletSource = "options"
		list = o.Applets
	default:
		out, err := exec.CommandContext(ctx, o.Busybox, "--list-full").Output()
		if err == nil {
			m.AppletSource = "busybox --list-full"
			list = strings.Fields(string(out))
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		m.AppletSource = "built-in"
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s --list-full: %v; using the built-in applet list", o.Busybox, err))
		list = builtinApplets
	}
	var clean []string
	for _, a := range list {
		c := path.Clean(strings.TrimPrefix(a, "/"))
		if c == "." || c == ".." || strings.HasPrefix(c, "../") || strings.ContainsAny(c, "\x00") {
			return nil, fmt.Errorf("applet path %q is not inside the archive", a)
		}
		clean = append(clean, c)
	}
	slices.Sort(clean)
	return slices.Compact(clean), nil
}

// manifest lists the tree's entries in archive order.
func (t *tree) manifest() []Entry {
	var es []Entry
	for _, k := range t.keys() {
		n := t.nodes[k]
		e := Entry{Path: "/" + k, Mode: n.perm, Size: n.size, Source: n.src}
		switch n.typ {
		case cpio.TypeDir:
			e.Type = "dir"
		case cpio.TypeSymlink:
			e.Type, e.Target, e.Size = "symlink", n.link, int64(len(n.link))
		case cpio.TypeChar:
			e.Type, e.Rdev = "char", fmt.Sprintf("%d:%d", n.major, n.minor)
		default:
			e.Type = "file"
		}
		es = append(es, e)
	}
	return es
}

// ctxWriter stops a long write when ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
