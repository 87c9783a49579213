package initrd

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNotELF is returned (wrapped) when a file handed to the dependency
// resolver is not an ELF object.
var ErrNotELF = errors.New("not an ELF file")

// elfInfo is what the resolver needs from one ELF object.
type elfInfo struct {
	class   elf.Class
	data    elf.Data
	machine elf.Machine
	flags   uint32 // e_flags, for the ARM float ABI
	interp  string // PT_INTERP, "" for a static binary
	needed  []string
	rpath   []string // DT_RPATH, split on ':'
	runpath []string // DT_RUNPATH, split on ':'
}

// static reports whether the object needs no loader and no shared library.
func (e *elfInfo) static() bool { return e.interp == "" && len(e.needed) == 0 }

// compatible reports whether a library could be loaded into e's process.
func (e *elfInfo) compatible(lib *elfInfo) bool {
	return e.class == lib.class && e.data == lib.data && e.machine == lib.machine
}

// readELF reads the dynamic-linking facts of the file at name.
func readELF(name string) (*elfInfo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	info, err := parseELF(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return info, nil
}

// parseELF parses an ELF object from r. A file that does not start with the
// ELF magic yields an error wrapping ErrNotELF; a damaged ELF yields the
// debug/elf error.
func parseELF(r io.ReaderAt) (*elfInfo, error) {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, ErrNotELF
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("bad ELF file: %w", err)
	}
	defer f.Close()
	info := &elfInfo{class: f.Class, data: f.Data, machine: f.Machine}
	if f.Class == elf.ELFCLASS32 || f.Class == elf.ELFCLASS64 {
		// FileHeader has no Flags field; read e_flags directly.
		off := int64(36)
		if f.Class == elf.ELFCLASS64 {
			off = 48
		}
		var b [4]byte
		if _, err := r.ReadAt(b[:], off); err == nil {
			info.flags = f.ByteOrder.Uint32(b[:])
		}
	}
	hasDynamic := false
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			// The segment holds a NUL-terminated path; cap the read so a
			// hostile p_filesz cannot make us allocate gigabytes.
			if p.Filesz == 0 || p.Filesz > 4096 {
				return nil, fmt.Errorf("bad ELF file: PT_INTERP of %d bytes", p.Filesz)
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("bad ELF file: read PT_INTERP: %w", err)
			}
			info.interp = strings.TrimRight(string(b), "\x00")
		case elf.PT_DYNAMIC:
			hasDynamic = true
		}
	}
	if !hasDynamic {
		return info, nil
	}
	if info.needed, err = f.DynString(elf.DT_NEEDED); err != nil {
		return nil, fmt.Errorf("bad ELF file: DT_NEEDED: %w", err)
	}
	rpath, err := f.DynString(elf.DT_RPATH)
	if err != nil {
		return nil, fmt.Errorf("bad ELF file: DT_RPATH: %w", err)
	}
	runpath, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		return nil, fmt.Errorf("bad ELF file: DT_RUNPATH: %w", err)
	}
	for _, s := range rpath {
		info.rpath = append(info.rpath, strings.Split(s, ":")...)
	}
	for _, s := range runpath {
		info.runpath = append(info.runpath, strings.Split(s, ":")...)
	}
	return info, nil
}

// multiarch returns Debian's multiarch triplet for the object, "" if unknown.
func (e *elfInfo) multiarch() string {
	const efARMABIFloatHard = 0x400
	switch e.machine {
	case elf.EM_X86_64:
		if e.class == elf.ELFCLASS32 {
			return "x86_64-linux-gnux32"
		}
		return "x86_64-linux-gnu"
	case elf.EM_386:
		return "i386-linux-gnu"
	case elf.EM_AARCH64:
		return "aarch64-linux-gnu"
	case elf.EM_ARM:
		if e.flags&efARMABIFloatHard != 0 {
			return "arm-linux-gnueabihf"
		}
		return "arm-linux-gnueabi"
	case elf.EM_RISCV:
		return "riscv64-linux-gnu"
	case elf.EM_PPC64:
		if e.data == elf.ELFDATA2LSB {
			return "powerpc64le-linux-gnu"
		}
		return "powerpc64-linux-gnu"
	case elf.EM_S390:
		return "s390x-linux-gnu"
	case elf.EM_LOONGARCH:
		return "loongarch64-linux-gnu"
	}
	return ""
}

// systemDirs are the directories the dynamic loader searches without any
// configuration (glibc's "system search path" on Debian, and musl's default).
func (e *elfInfo) systemDirs() []string {
	var dirs []string
	if t := e.multiarch(); t != "" {
		dirs = append(dirs, "/lib/"+t, "/usr/lib/"+t)
	}
	return append(dirs, "/lib", "/usr/lib")
}

// How a library was found, recorded in the manifest.
const (
	viaRPATH   = "rpath"
	viaRUNPATH = "runpath"
	viaConf    = "ld.so.conf"
	viaSystem  = "system"
	viaPath    = "path" // DT_NEEDED held a path, not a bare name
)

// resolver finds the shared libraries an executable needs, the way the
// dynamic loader would on the build host: DT_RPATH (of the object and the
// objects that loaded it, unless the object has DT_RUNPATH), DT_RUNPATH,
// the directories in ld.so.conf, then the system directories. It reads
// ld.so.conf rather than ld.so.cache: the cache is a binary format with no
// library behind it, and the directories give the same answer for the
// libraries a master image carries.
type resolver struct {
	confDirs []string
	infos    map[string]*elfInfo // by host path
	objects  map[string]*Object  // resolution of every object seen, by host path
	order    []string            // host paths to include, in discovery order
	extra    map[string]bool     // library dirs outside the loader's built-in path
}

// newResolver reads the ld.so.conf at conf ("" for none).
func newResolver(conf string) (*resolver, error) {
	r := &resolver{
		infos:   map[string]*elfInfo{},
		objects: map[string]*Object{},
		extra:   map[string]bool{},
	}
	if conf != "" {
		dirs, err := readLDConf(conf, 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		r.confDirs = dirs
	}
	return r, nil
}

// readLDConf returns the library directories listed in an ld.so.conf file,
// following "include" lines (globs, relative to the file's directory).
func readLDConf(name string, depth int) ([]string, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%s: include nested too deep", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "include":
			for _, pat := range fields[1:] {
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(filepath.Dir(name), pat)
				}
				matches, _ := filepath.Glob(pat)
				slices.Sort(matches)
				for _, m := range matches {
					sub, err := readLDConf(m, depth+1)
					if err != nil {
						return nil, err
					}
					dirs = append(dirs, sub...)
				}
			}
		case "hwcap":
			// Obsolete ldconfig directive; names no directory.
		default:
			for _, d := range fields {
				// libc5-era "dir=TYPE" syntax.
				d, _, _ = strings.Cut(d, "=")
				if filepath.IsAbs(d) {
					dirs = append(dirs, filepath.Clean(d))
				}
			}
		}
	}
	return dirs, sc.Err()
}

// info returns the cached ELF facts of the host file p.
func (r *resolver) info(p string) (*elfInfo, error) {
	if i, ok := r.infos[p]; ok {
		return i, nil
	}
	i, err := readELF(p)
	if err != nil {
		return nil, err
	}
	r.infos[p] = i
	return i, nil
}

// expand substitutes the dynamic string tokens of one RPATH/RUNPATH entry.
// It returns "" for entries the loader would skip or that name a token we
// cannot evaluate on the build host ($PLATFORM).
func expand(entry, origin string, e *elfInfo) string {
	lib := "lib"
	if t := e.multiarch(); t != "" {
		lib = "lib/" + t // Debian's glibc expands $LIB to the multiarch dir
	}
	r := strings.NewReplacer("${ORIGIN}", origin, "$ORIGIN", origin, "${LIB}", lib, "$LIB", lib)
	s := r.Replace(entry)
	if s == "" || strings.Contains(s, "$") || !path.IsAbs(s) {
		return ""
	}
	return path.Clean(s)
}

// search is one directory to look in and why.
type search struct{ dir, via string }

// add resolves the executable at host path exe and everything it needs.
// exe must be an ELF object; the interpreter and every library found are
// added to r.order.
func (r *resolver) add(exe string) (*Object, error) {
	info, err := r.info(exe)
	if err != nil {
		return nil, err
	}
	// $ORIGIN of the main program is where the kernel found it after
	// resolving symlinks (/proc/self/exe).
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return nil, err
	}
	if info.interp != "" {
		if _, err := os.Stat(info.interp); err != nil {
			return nil, fmt.Errorf("%s: interpreter %s: %w", exe, info.interp, err)
		}
		r.include(info.interp)
	}
	var loaderRPATH []search
	if len(info.runpath) == 0 {
		for _, d := range info.rpath {
			if x := expand(d, path.Dir(real), info); x != "" {
				loaderRPATH = append(loaderRPATH, search{x, viaRPATH})
			}
		}
	}
	return r.walk(exe, path.Dir(real), info, info, loaderRPATH)
}

// walk resolves the DT_NEEDED entries of the object at p (already read as
// info) and, depth first, of every library they name. main is the
// executable's info (libraries must match its class and machine); inherited
// holds the DT_RPATH directories of the objects that loaded this one.
func (r *resolver) walk(p, origin string, info, main *elfInfo, inherited []search) (*Object, error) {
	if o, ok := r.objects[p]; ok {
		return o, nil
	}
	obj := &Object{Path: p, Interpreter: info.interp}
	r.objects[p] = obj

	var dirs []search
	if len(info.runpath) == 0 {
		for _, d := range info.rpath {
			if x := expand(d, origin, info); x != "" {
				dirs = append(dirs, search{x, viaRPATH})
			}
		}
		dirs = append(dirs, inherited...)
	}
	for _, d := range info.runpath {
		if x := expand(d, origin, info); x != "" {
			dirs = append(dirs, search{x, viaRUNPATH})
		}
	}
	for _, d := range r.confDirs {
		dirs = append(dirs, search{d, viaConf})
	}
	system := main.systemDirs()
	for _, d := range system {
		dirs = append(dirs, search{d, viaSystem})
	}

	// Only DT_RPATH propagates to the libraries this object loads, and only
	// while no DT_RUNPATH interrupts the chain.
	var pass []search
	if len(info.runpath) == 0 {
		for _, s := range dirs {
			if s.via == viaRPATH {
				pass = append(pass, s)
			}
		}
	}

	for _, name := range info.needed {
		lib, via, err := r.find(name, dirs, main)
		if err != nil {
			return nil, fmt.Errorf("%s needs %s: %w", p, name, err)
		}
		obj.Needed = append(obj.Needed, Lib{Name: name, Path: lib, Via: via})
		if via == viaConf && !slices.Contains(system, path.Dir(lib)) {
			r.extra[path.Dir(lib)] = true
		}
		r.include(lib)
		li, err := r.info(lib)
		if err != nil {
			return nil, err
		}
		if _, err := r.walk(lib, path.Dir(lib), li, main, pass); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// find looks name up in dirs and returns the first compatible library.
func (r *resolver) find(name string, dirs []search, main *elfInfo) (string, string, error) {
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			return "", "", fmt.Errorf("relative library path %q is not supported", name)
		}
		if _, err := os.Stat(name); err != nil {
			return "", "", err
		}
		return path.Clean(name), viaPath, nil
	}
	seen := map[string]bool{}
	var tried []string
	for _, s := range dirs {
		if seen[s.dir] {
			continue
		}
		seen[s.dir] = true
		tried = append(tried, s.dir)
		cand := path.Join(s.dir, name)
		fi, err := os.Stat(cand)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		li, err := r.info(cand)
		if err != nil || !main.compatible(li) {
			continue // the loader skips files of the wrong class or machine
		}
		return cand, s.via, nil
	}
	return "", "", fmt.Errorf("not found in %s", strings.Join(tried, ":"))
}

// include records a host path to copy into the archive.
func (r *resolver) include(p string) {
	if !slices.Contains(r.order, p) {
		r.order = append(r.order, p)
	}
}
