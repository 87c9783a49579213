package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// node is one archive entry before it is written.
type node struct {
	typ          uint32 // cpio.TypeReg, TypeDir, TypeSymlink or TypeChar
	perm         uint32 // permission bits, including setuid/setgid/sticky
	src          string // host file whose content is copied (regular files)
	data         []byte // generated content (regular files without src)
	size         int64
	link         string // symlink target, as written
	major, minor uint32 // character devices
}

func (n *node) same(o *node) bool {
	return n.typ == o.typ && n.src == o.src && n.link == o.link && bytes.Equal(n.data, o.data) &&
		n.major == o.major && n.minor == o.minor
}

// maxHops bounds symlink resolution, as the kernel's ELOOP limit does.
const maxHops = 40

// tree is the archive being assembled, keyed by clean relative path
// ("usr/bin/wget"). Directory components that are symlinks on the build
// host become the same symlinks in the archive (a merged-/usr host gives
// bin -> usr/bin), so every path resolves in the archive exactly as it did
// on the host: RPATH $ORIGIN, relative library symlinks and PT_INTERP all
// keep working without rewriting.
type tree struct {
	nodes map[string]*node
}

func newTree() *tree { return &tree{nodes: map[string]*node{}} }

// rel turns an absolute archive path into a tree key.
func rel(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("archive path %q is not absolute", p)
	}
	k := strings.TrimPrefix(path.Clean(p), "/")
	if k == "" {
		return "", fmt.Errorf("archive path %q names the root", p)
	}
	return k, nil
}

// linkTarget resolves a symlink found in directory dir (a tree key, "" for
// the root) to a tree key.
func linkTarget(dir, link string) string {
	var p string
	if path.IsAbs(link) {
		p = path.Clean(link)
	} else {
		p = path.Join("/", dir, link) // Join cleans; ".." above the root stays at the root
	}
	return strings.TrimPrefix(p, "/")
}

// dir makes sure the directory key exists, mirroring host symlinks on the
// way, and returns the key it resolves to.
func (t *tree) dir(key string, hops *int) (string, error) {
	if key == "" || key == "." {
		return "", nil
	}
	cur := ""
	for _, c := range strings.Split(key, "/") {
		next := path.Join(cur, c)
		n, ok := t.nodes[next]
		if !ok {
			n = &node{typ: cpio.TypeDir, perm: 0o755}
			if fi, err := os.Lstat("/" + next); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				link, err := os.Readlink("/" + next)
				if err != nil {
					return "", err
				}
				n = &node{typ: cpio.TypeSymlink, perm: 0o777, link: link}
			}
			t.nodes[next] = n
		}
		switch n.typ {
		case cpio.TypeDir:
			cur = next
		case cpio.TypeSymlink:
			if *hops++; *hops > maxHops {
				return "", fmt.Errorf("/%s: too many levels of symbolic links", next)
			}
			r, err := t.dir(linkTarget(cur, n.link), hops)
			if err != nil {
				return "", err
			}
			cur = r
		default:
			return "", fmt.Errorf("/%s is not a directory in the archive", next)
		}
	}
	return cur, nil
}

// mkdir creates the directory at absolute path p with the given mode bits
// (the target of p when p is a symlink on the host).
func (t *tree) mkdir(p string, perm uint32) error {
	k, err := rel(p)
	if err != nil {
		return err
	}
	hops := 0
	d, err := t.dir(k, &hops)
	if err != nil {
		return err
	}
	t.nodes[d].perm = perm
	return nil
}

// put places n at absolute path p. An identical entry already there is
// kept; a different one is a conflict. It returns the key used.
func (t *tree) put(p string, n *node) (string, error) {
	k, err := rel(p)
	if err != nil {
		return "", err
	}
	hops := 0
	d, err := t.dir(path.Dir(k), &hops)
	if err != nil {
		return "", err
	}
	k = path.Join(d, path.Base(k))
	if old, ok := t.nodes[k]; ok {
		if old.same(n) {
			return k, nil
		}
		return "", fmt.Errorf("/%s: %w", k, errConflict)
	}
	t.nodes[k] = n
	return k, nil
}

var errConflict = errors.New("added twice with different contents")

// has reports whether absolute path p already names an entry (following
// the directory symlinks, not the final one).
func (t *tree) has(p string) bool {
	k, err := rel(p)
	if err != nil {
		return false
	}
	// Resolve the parent without creating anything new.
	cur := ""
	comps := strings.Split(path.Dir(k), "/")
	if path.Dir(k) == "." {
		comps = nil
	}
	for hops := 0; len(comps) > 0; {
		next := path.Join(cur, comps[0])
		comps = comps[1:]
		n, ok := t.nodes[next]
		if !ok {
			return false
		}
		if n.typ == cpio.TypeSymlink {
			if hops++; hops > maxHops {
				return false
			}
			target := linkTarget(cur, n.link)
			cur = ""
			if target != "" {
				comps = append(strings.Split(target, "/"), comps...)
			}
			continue
		}
		cur = next
	}
	_, ok := t.nodes[path.Join(cur, path.Base(k))]
	return ok
}

// copyFile adds the host file src at archive path dest, following symlinks
// on src: the archive gets a regular file.
func (t *tree) copyFile(dest, src string, perm uint32) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	if perm == 0 {
		perm = hostPerm(fi)
	}
	_, err = t.put(dest, &node{typ: cpio.TypeReg, perm: perm, src: src, size: fi.Size()})
	return err
}

// mirror adds the host file at absolute path p at the same path in the
// archive. A symlink stays a symlink with the same target text, and the
// target is added too.
func (t *tree) mirror(p string) error {
	for hops := 0; ; hops++ {
		if hops > maxHops {
			return fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		k, err := rel(p)
		if err != nil {
			return err
		}
		dh := 0
		d, err := t.dir(path.Dir(k), &dh)
		if err != nil {
			return err
		}
		k = path.Join(d, path.Base(k))
		host := "/" + k // the tree mirrors the host, so this is the physical path
		fi, err := os.Lstat(host)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(host)
			if err != nil {
				return err
			}
			if _, err := t.put(host, &node{typ: cpio.TypeSymlink, perm: 0o777, link: link}); err != nil {
				return err
			}
			p = "/" + linkTarget(d, link)
		case fi.Mode().IsRegular():
			_, err := t.put(host, &node{typ: cpio.TypeReg, perm: hostPerm(fi), src: host, size: fi.Size()})
			return err
		default:
			return fmt.Errorf("%s: not a regular file or symlink (%v)", host, fi.Mode().Type())
		}
	}
}

// hostPerm converts the permission bits of a host file to cpio's.
func hostPerm(fi fs.FileInfo) uint32 {
	m := fi.Mode()
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= cpio.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		perm |= cpio.ModeSetgid
	}
	if m&fs.ModeSticky != 0 {
		perm |= cpio.ModeSticky
	}
	return perm
}

// keys returns the entry keys in archive order: sorted, which puts every
// directory before its contents.
func (t *tree) keys() []string {
	ks := make([]string, 0, len(t.nodes))
	for k := range t.nodes {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// write writes the tree as a newc cpio archive to w with every mtime set
// to mtime.
func (t *tree) write(w io.Writer, mtime time.Time) error {
	rw := &rdevWriter{w: w}
	cw := cpio.NewWriter(rw)
	for _, k := range t.keys() {
		n := t.nodes[k]
		h := &cpio.Header{
			Name:    k,
			Mode:    cpio.FileMode(n.typ | n.perm),
			ModTime: mtime,
			Links:   1,
		}
		switch n.typ {
		case cpio.TypeDir:
			h.Links = 2
		case cpio.TypeSymlink:
			h.Size = int64(len(n.link)) // newc stores the target as the body
		case cpio.TypeReg:
			h.Size = n.size
		case cpio.TypeChar:
			rw.arm(n.major, n.minor)
		}
		if err := cw.WriteHeader(h); err != nil {
			return fmt.Errorf("write /%s: %w", k, err)
		}
		if rw.armed {
			return fmt.Errorf("write /%s: device numbers not set: cpio header not seen", k)
		}
		var err error
		switch {
		case n.typ == cpio.TypeSymlink:
			_, err = io.WriteString(cw, n.link)
		case n.typ == cpio.TypeReg && n.src != "":
			err = copyN(cw, n.src, n.size)
		case n.typ == cpio.TypeReg:
			_, err = cw.Write(n.data)
		}
		if err != nil {
			return fmt.Errorf("write /%s: %w", k, err)
		}
	}
	return cw.Close()
}

// copyN copies exactly size bytes of the host file src.
func copyN(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: shrank from %d to %d bytes while building", src, size, n)
	}
	return nil
}

// rdevWriter sets the rdevmajor and rdevminor fields of one newc header.
// cavaliergopher/cpio v1.0.1 has no field for them and writes zeros, which
// would turn /dev/console into a 0:0 node; everything else about the header
// is the library's. The library writes each 110-byte header with a single
// Write call, so the armed writer patches the next such write and disarms;
// tree.write checks that it did.
type rdevWriter struct {
	w            io.Writer
	armed        bool
	major, minor uint32
}

// newc header layout (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst):
// magic[6] ino[8] mode[8] uid[8] gid[8] nlink[8] mtime[8] filesize[8]
// devmajor[8] devminor[8] rdevmajor[8] rdevminor[8] namesize[8] check[8].
const (
	newcHeaderLen = 110
	newcRdevMajor = 78
	newcRdevMinor = 86
)

func (r *rdevWriter) arm(major, minor uint32) {
	r.armed, r.major, r.minor = true, major, minor
}

func (r *rdevWriter) Write(p []byte) (int, error) {
	if r.armed && len(p) == newcHeaderLen && bytes.HasPrefix(p, []byte("070701")) {
		h := bytes.Clone(p)
		copy(h[newcRdevMajor:], fmt.Sprintf("%08X", r.major))
		copy(h[newcRdevMinor:], fmt.Sprintf("%08X", r.minor))
		r.armed = false
		return r.w.Write(h)
	}
	return r.w.Write(p)
}
