package simshell

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/interp"
)

// file is an open file of the target: a file under Root, a disk, or a
// character device.
type file interface {
	io.ReadWriteCloser
	io.Seeker
}

// vfs maps the target's absolute slash paths to files under Root (through an
// os.Root, so no path or symlink reaches outside it), to the configured disk
// files, and to a few character devices.
type vfs struct {
	root *os.Root
	// hostRoot is Root's absolute host path. The interpreter's working
	// directory is kept as a host path under it (see Shell.call), so host
	// paths under hostRoot are mapped back to target paths.
	hostRoot string
	disks    map[string]string         // cleaned target path → host file
	console  atomic.Pointer[ttyWriter] // where /dev/console and /dev/tty writes go
}

// chardevs are the character devices the target has besides its disks.
var chardevs = []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/console", "/dev/tty", "/dev/ttyAMA0"}

// virt maps a path the interpreter produced to a target path: host paths
// under hostRoot lose that prefix, other absolute paths are target paths.
func (v *vfs) virt(p string) string {
	p = path.Clean(p)
	if p == v.hostRoot {
		return "/"
	}
	if rest, ok := strings.CutPrefix(p, v.hostRoot+"/"); ok {
		return "/" + rest
	}
	return p
}

// host returns the host path of the target directory p (absolute, cleaned),
// for the interpreter's working directory only: files are always opened
// through the os.Root.
func (v *vfs) host(p string) string {
	if p == "/" {
		return v.hostRoot
	}
	return v.hostRoot + p
}

// resolve returns the target path of p as given to a handler.
func (v *vfs) resolve(ctx context.Context, p string) string {
	if !path.IsAbs(p) {
		p = path.Join(handlerDir(ctx), p)
	}
	return v.virt(p)
}

// abs returns the cleaned absolute target path of p relative to dir.
func abs(dir, p string) string {
	if !path.IsAbs(p) {
		p = path.Join(dir, p)
	}
	return path.Clean(p)
}

// rel returns the os.Root name of an absolute target path.
func rel(p string) string {
	r := strings.TrimLeft(path.Clean("/"+p), "/")
	if r == "" {
		return "."
	}
	return r
}

// pathError returns a *os.PathError naming the target path (never the host
// path) with the underlying errno of err.
func pathError(op, p string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	if !isErrno(err) {
		// os.Root reports escapes with its own error; the target sees
		// them as missing files, like a chroot would.
		err = syscall.ENOENT
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

func isErrno(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno)
}

// errnoText is how busybox prints an errno: "No such file or directory".
func errnoText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	return err.Error()
}

// open opens the target path p (absolute, cleaned).
func (v *vfs) open(p string, flag int, perm fs.FileMode) (file, error) {
	if host, ok := v.disks[p]; ok {
		// A disk is a block device: never truncated, never appended to.
		flag &^= os.O_TRUNC | os.O_APPEND | os.O_EXCL
		if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
			flag |= os.O_CREATE
		}
		f, err := os.OpenFile(host, flag, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			return devNull{}, nil // a blank disk of no size
		}
		if err != nil {
			return nil, pathError("open", p, err)
		}
		return f, nil
	}
	if host, part, ok := v.partition(p); ok {
		return openPartition(p, host, part, flag)
	}
	switch p {
	case "/dev/null":
		return devNull{}, nil
	case "/dev/zero":
		return devZero{}, nil
	case "/dev/random", "/dev/urandom":
		return devRandom{}, nil
	case "/dev/console", "/dev/tty", "/dev/ttyAMA0":
		d := devConsole{}
		if t := v.console.Load(); t != nil {
			d.w = t
		}
		return d, nil
	}
	f, err := v.root.OpenFile(rel(p), flag, perm)
	if err != nil {
		return nil, pathError("open", p, err)
	}
	if pseudo(p) && flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o444 == 0 {
			return writeOnly{f}, nil
		}
	}
	return f, nil
}

// writeOnly is a write-only procfs file opened for reading. Root opens it
// (permissions do not stop root) but a read fails with EINVAL: busybox 1.35
// on Linux 6.18 prints "cat: read error: Invalid argument" and exits 1 for
// `cat /proc/self/clear_refs`, mode 0200.
type writeOnly struct{ *os.File }

func (writeOnly) Read([]byte) (int, error) { return 0, syscall.EINVAL }

// stat returns the file information of the target path p.
func (v *vfs) stat(p string, follow bool) (fs.FileInfo, error) {
	if host, ok := v.disks[p]; ok {
		var size int64
		if fi, err := os.Stat(host); err == nil {
			size = fi.Size()
		}
		return devInfo{name: path.Base(p), mode: fs.ModeDevice | 0o660, size: size}, nil
	}
	if slices.Contains(chardevs, p) {
		return devInfo{name: path.Base(p), mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}, nil
	}
	if _, part, ok := v.partition(p); ok {
		return partInfo(p, part), nil
	}
	var fi fs.FileInfo
	var err error
	if follow {
		fi, err = v.root.Stat(rel(p))
	} else {
		fi, err = v.root.Lstat(rel(p))
	}
	if err != nil {
		return nil, pathError("stat", p, err)
	}
	if pseudo(p) && fi.Mode().IsRegular() {
		fi = pseudoInfo{fi, pseudoSize(p)}
	}
	return fi, nil
}

// pseudo reports whether the target path p is on procfs or sysfs. Linux
// does not report the size of their files to stat(2) (and so to `ls -l`,
// busybox httpd's Content-Length and anything else that trusts st_size),
// though a read returns their content: procfs files have size 0, sysfs
// attributes the page size, 4096, whatever their length. Checked with
// busybox 1.35 on Linux 6.18: `ls -l /proc/version` shows 0,
// /sys/class/net/lo/address 4096, `wc -c` counts the bytes read.
func pseudo(p string) bool {
	return p == "/proc" || p == "/sys" || strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/")
}

// pseudoSize is the size stat reports for the pseudo-file p.
func pseudoSize(p string) int64 {
	if strings.HasPrefix(p, "/sys/") {
		return 4096
	}
	return 0
}

// pseudoInfo is the FileInfo of a procfs or sysfs file.
type pseudoInfo struct {
	fs.FileInfo
	size int64
}

func (i pseudoInfo) Size() int64 { return i.size }

// pseudoFS is an fs.FS of the target directory dir in which procfs and
// sysfs files stat to size 0, as they do on Linux; httpd serves it.
type pseudoFS struct {
	fsys fs.FS
	dir  string // target path of fsys's root
}

func (p pseudoFS) Open(name string) (fs.File, error) {
	f, err := p.fsys.Open(name)
	full := path.Join(p.dir, name)
	if err != nil || !pseudo(full) {
		return f, err
	}
	return pseudoFile{f, pseudoSize(full)}, nil
}

// pseudoFile is an open procfs or sysfs file; net/http's file server takes
// Content-Length from its Stat, as busybox httpd does from fstat(2).
type pseudoFile struct {
	fs.File
	size int64
}

func (f pseudoFile) Seek(off int64, whence int) (int64, error) {
	if s, ok := f.File.(io.Seeker); ok {
		return s.Seek(off, whence)
	}
	return 0, &fs.PathError{Op: "seek", Err: syscall.ESPIPE}
}

func (f pseudoFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	if err == nil && fi.Mode().IsRegular() {
		fi = pseudoInfo{fi, f.size}
	}
	return fi, err
}

func (f pseudoFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if d, ok := f.File.(fs.ReadDirFile); ok {
		return d.ReadDir(n)
	}
	return nil, &fs.PathError{Op: "readdir", Err: syscall.ENOTDIR}
}

// readDir lists the target directory p, devices included under /dev.
func (v *vfs) readDir(p string) ([]fs.DirEntry, error) {
	f, err := v.root.Open(rel(p))
	if err != nil {
		return nil, pathError("open", p, err)
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, pathError("readdir", p, err)
	}
	out := ents[:0]
	seen := map[string]bool{}
	for _, e := range ents {
		full := path.Join(p, e.Name())
		if _, ok := v.disks[full]; ok || slices.Contains(chardevs, full) {
			continue // replaced below by the device's own entry
		}
		out = append(out, e)
	}
	for dev := range v.devices() {
		if path.Dir(dev) == p && !seen[dev] {
			seen[dev] = true
			fi, _ := v.stat(dev, true)
			out = append(out, fs.FileInfoToDirEntry(fi))
		}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// devices yields every device path.
func (v *vfs) devices() func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, d := range chardevs {
			if !yield(d) {
				return
			}
		}
		for d := range v.disks {
			if !yield(d) {
				return
			}
		}
		v.partitions(yield)
	}
}

// handlers for mvdan.cc/sh/v3/interp: every path the interpreter opens,
// stats or globs goes through the vfs.

func (v *vfs) openHandler(ctx context.Context, p string, flag int, perm os.FileMode) (io.ReadWriteCloser, error) {
	return v.open(v.resolve(ctx, p), flag, perm)
}

func (v *vfs) statHandler(ctx context.Context, p string, follow bool) (fs.FileInfo, error) {
	return v.stat(v.resolve(ctx, p), follow)
}

func (v *vfs) readDirHandler(ctx context.Context, p string) ([]fs.DirEntry, error) {
	return v.readDir(v.resolve(ctx, p))
}

// handlerDir returns the interpreter's directory. The interpreter calls the
// stat handler (with absolute paths) without a HandlerContext, on which
// interp.HandlerCtx panics.
func handlerDir(ctx context.Context) (dir string) {
	defer func() {
		if recover() != nil {
			dir = "/"
		}
	}()
	return interp.HandlerCtx(ctx).Dir
}

// devInfo describes a device node.
type devInfo struct {
	name string
	mode fs.FileMode
	size int64
}

func (d devInfo) Name() string       { return d.name }
func (d devInfo) Size() int64        { return d.size }
func (d devInfo) Mode() fs.FileMode  { return d.mode }
func (d devInfo) ModTime() time.Time { return time.Time{} }
func (d devInfo) IsDir() bool        { return false }
func (d devInfo) Sys() any           { return nil }

type devNull struct{}

func (devNull) Read([]byte) (int, error)          { return 0, io.EOF }
func (devNull) Write(p []byte) (int, error)       { return len(p), nil }
func (devNull) Seek(int64, int) (int64, error)    { return 0, nil }
func (devNull) Close() error                      { return nil }
func (devNull) String() string                    { return "/dev/null" }
func (devZero) Read(p []byte) (int, error)        { clear(p); return len(p), nil }
func (devZero) Write(p []byte) (int, error)       { return len(p), nil }
func (devZero) Seek(int64, int) (int64, error)    { return 0, nil }
func (devZero) Close() error                      { return nil }
func (devRandom) Read(p []byte) (int, error)      { return rand.Read(p) }
func (devRandom) Write(p []byte) (int, error)     { return len(p), nil }
func (devRandom) Seek(int64, int) (int64, error)  { return 0, nil }
func (devRandom) Close() error                    { return nil }
func (devConsole) Read([]byte) (int, error)       { return 0, io.EOF }
func (devConsole) Seek(int64, int) (int64, error) { return 0, nil }
func (devConsole) Close() error                   { return nil }

type devZero struct{}
type devRandom struct{}

// devConsole writes to the serial console.
type devConsole struct{ w io.Writer }

func (d devConsole) Write(p []byte) (int, error) {
	if d.w == nil {
		return len(p), nil
	}
	return d.w.Write(p)
}

// fileSize returns the size of an open file, or -1.
func fileSize(f any) int64 {
	if s, ok := f.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := s.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size()
		}
	}
	return -1
}

func describe(p string, err error) string { return fmt.Sprintf("%s: %s", p, errnoText(err)) }
