package simshell

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
)

// cmdTar is busybox 1.35's tar for what test.run_definition types:
// extracting (x) or listing (t) an archive, gzip'd with -z, from -f FILE
// ("-" or none: standard input), into -C DIR, -v listing what it extracts;
// the first argument may omit its "-" (tar xzf F). Directories, regular
// files and symlinks are extracted with their modes; creating an archive
// is not emulated. Messages and statuses are busybox's (checked with
// busybox-static 1.35 by the differential test: a missing archive, one
// that is not gzip, a missing -C directory).
func cmdTar(c *call) error {
	if len(c.args) > 0 && !strings.HasPrefix(c.args[0], "-") {
		c.args = append([]string{"-" + c.args[0]}, c.args[1:]...)
	}
	o, _, err := c.getopt("xtczvf:C:mok")
	if err != nil {
		return err
	}
	if o.has('c') {
		return c.fail("creating an archive is not emulated by the sim")
	}
	if !o.has('x') && !o.has('t') {
		fmt.Fprintln(c.stderr, "BusyBox v1.35.0 multi-call binary.\n\nUsage: tar c|x|t [-ZzJjahmvokO] [-f TARFILE] [-C DIR] [FILE]...")
		return exitCode(1)
	}
	dir := c.dir
	if ds := o.vals['C']; len(ds) > 0 {
		d := c.abs(ds[len(ds)-1])
		if fi, err := c.sh.fs.stat(d, true); err != nil || !fi.IsDir() {
			if err == nil {
				err = &os.PathError{Op: "chdir", Path: d, Err: syscall.ENOTDIR}
			}
			return c.fail("can't change directory to '%s': %s", ds[len(ds)-1], errnoText(err))
		}
		dir = d
	}
	in := io.Reader(c.stdin)
	if fs := o.vals['f']; len(fs) > 0 && fs[len(fs)-1] != "-" {
		f, err := c.open(fs[len(fs)-1])
		if err != nil {
			return c.fail("can't open '%s': %s", fs[len(fs)-1], errnoText(err))
		}
		defer f.Close()
		in = ctxReader{c.ctx, f}
	}
	br := bufio.NewReader(in)
	if o.has('z') {
		if magic, _ := br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
			return c.fail("invalid magic")
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			return c.fail("invalid magic")
		}
		in = zr
	} else {
		in = br
	}
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.fail("short read")
		}
		if o.has('t') || o.has('v') {
			fmt.Fprintln(c.stdout, h.Name)
		}
		if !o.has('x') {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue
		}
		p := rel(path.Join(dir, name))
		root := c.sh.fs.root
		if d := path.Dir(p); d != "." {
			root.MkdirAll(d, 0o755)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(p, 0o755)
			if err == nil {
				err = root.Chmod(p, os.FileMode(h.Mode&0o777))
			}
		case tar.TypeReg:
			root.Remove(p) // busybox unlinks what it replaces
			var f *os.File
			f, err = root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(h.Mode&0o777))
			if err == nil {
				_, err = io.Copy(f, ctxReader{c.ctx, tr})
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err == nil {
				err = root.Chmod(p, os.FileMode(h.Mode&0o777))
			}
		case tar.TypeSymlink:
			root.Remove(p)
			err = root.Symlink(h.Linkname, p)
		default:
			continue
		}
		if err != nil {
			return c.fail("can't create '%s': %s", h.Name, errnoText(err))
		}
	}
}
