package initrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/cavaliergopher/cpio"
	"github.com/ulikunitz/xz"
)

// Module is one kernel module the image carries and /init loads.
type Module struct {
	// Name is the module's name with '-' folded to '_', as the kernel
	// shows it in /sys/module.
	Name string `json:"name"`
	// Path is where the module is in the archive
	// (/lib/modules/VERSION/kernel/...; a compressed module loses its
	// .xz or .gz suffix: it is stored decompressed).
	Path string `json:"path"`
	// Source is the host file it came from.
	Source string `json:"source"`
	// Deps are the modules it needs, as its dependency source lists them.
	Deps []string `json:"deps,omitempty"`
}

// Dependency sources recorded in Manifest.ModuleDeps.
const (
	DepsFromModulesDep = "modules.dep"
	DepsFromModinfo    = ".modinfo depends"
)

// modSuffixes are the module file suffixes depmod knows, longest first.
var modSuffixes = []string{".ko.zst", ".ko.xz", ".ko.gz", ".ko"}

// modName returns the module name of a module file path ("" if the path
// is not a module) and its compression suffix ("" when uncompressed).
func modName(p string) (name, comp string) {
	base := path.Base(filepath.ToSlash(p))
	for _, s := range modSuffixes {
		if n, ok := strings.CutSuffix(base, s); ok && n != "" {
			return normName(n), strings.TrimPrefix(s, ".ko")
		}
	}
	return "", ""
}

// normName folds '-' to '_': modprobe and the kernel treat them alike.
func normName(n string) string { return strings.ReplaceAll(n, "-", "_") }

// modIndex is what a modules directory says about its modules.
type modIndex struct {
	dir     string            // host path of lib/modules/VERSION
	version string            // base name of dir
	source  string            // DepsFromModulesDep or DepsFromModinfo
	paths   map[string]string // name -> path relative to dir
	deps    map[string][]string
	builtin map[string]bool
}

// loadModIndex reads dir's modules.dep and modules.builtin. Without a
// modules.dep (Debian's linux-image packages ship none: depmod writes it
// when the package is installed) the module files under dir are indexed by
// name and each module's dependencies are read from the "depends=" entry of
// its .modinfo section, which modpost writes from the same symbol
// references depmod follows. useDep false forces that fallback.
func loadModIndex(dir string, useDep bool) (*modIndex, error) {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("modules dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("modules dir %s: not a directory", dir)
	}
	ix := &modIndex{dir: dir, version: filepath.Base(dir), paths: map[string]string{},
		deps: map[string][]string{}, builtin: map[string]bool{}}
	if ix.version == "." || ix.version == "/" || strings.IndexFunc(ix.version, func(r rune) bool {
		return !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '\'' || r == '"'
	}) >= 0 {
		return nil, fmt.Errorf("modules dir %s: its name %q is not a kernel release", dir, ix.version)
	}

	if err := ix.readBuiltin(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	switch {
	case err == nil && useDep:
		defer f.Close()
		ix.source = DepsFromModulesDep
		if err := ix.parseDep(f); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "modules.dep"), err)
		}
		return ix, nil
	case err == nil:
		f.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	ix.source = DepsFromModinfo
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil // directories are walked; symlinks (build, source) are not
		}
		name, _ := modName(p)
		if name == "" {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if _, dup := ix.paths[name]; !dup { // WalkDir is lexical: the first is kept
			ix.paths[name] = filepath.ToSlash(rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("modules dir: %w", err)
	}
	return ix, nil
}

// readBuiltin reads modules.builtin (one "kernel/.../name.ko" a line);
// a missing file means no built-in modules.
func (ix *modIndex) readBuiltin() error {
	data, err := os.ReadFile(filepath.Join(ix.dir, "modules.builtin"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if n, _ := modName(strings.TrimSpace(l)); n != "" {
			ix.builtin[n] = true
		}
	}
	return nil
}

// parseDep reads depmod's modules.dep: one line per module,
// "kernel/a/b.ko: kernel/c.ko kernel/d.ko", paths relative to the modules
// directory (absolute for modules depmod found elsewhere), listing every
// module it needs directly or not; modprobe loads the list from its end.
func (ix *modIndex) parseDep(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("line %d: no ':' in %q", n, line)
		}
		name, p, err := ix.depPath(file)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := ix.deps[name]; dup {
			continue // depmod lists the module it chose first
		}
		ix.paths[name] = p
		deps := []string{}
		for _, d := range strings.Fields(rest) {
			dn, dp, err := ix.depPath(d)
			if err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			if _, ok := ix.paths[dn]; !ok {
				ix.paths[dn] = dp
			}
			deps = append(deps, dn)
		}
		ix.deps[name] = deps
	}
	return sc.Err()
}

// depPath checks a module path from modules.dep and returns its name and
// its path relative to the modules directory.
func (ix *modIndex) depPath(p string) (name, rel string, err error) {
	name, _ = modName(p)
	if name == "" {
		return "", "", fmt.Errorf("%q is not a module file", p)
	}
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(ix.dir, filepath.Clean(p))
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return "", "", fmt.Errorf("%s is outside %s", p, ix.dir)
		}
		return name, filepath.ToSlash(r), nil
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", "", fmt.Errorf("%q is outside the modules dir", p)
	}
	return name, c, nil
}

// depsOf returns a module's dependencies in modules.dep order (the last
// one loads first).
func (ix *modIndex) depsOf(name string) ([]string, error) {
	if d, ok := ix.deps[name]; ok {
		return d, nil
	}
	data, err := readModule(filepath.Join(ix.dir, filepath.FromSlash(ix.paths[name])))
	if err != nil {
		return nil, err
	}
	d, err := modinfoDepends(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ix.paths[name], err)
	}
	ix.deps[name] = d
	return d, nil
}

// resolve returns the modules to load for the requested names in load
// order (every module after the ones it needs), and the requested names
// the kernel has built in, which are skipped.
func (ix *modIndex) resolve(names []string) (order, builtin []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var stack []string
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case done:
			return nil
		case visiting:
			i := slices.Index(stack, n)
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(slices.Clone(stack[i:]), n), " -> "))
		}
		if _, ok := ix.paths[n]; !ok {
			if ix.builtin[n] {
				state[n] = done
				return nil
			}
			return fmt.Errorf("module %q (needed by %s) is not in %s", n, stack[len(stack)-1], ix.dir)
		}
		state[n] = visiting
		stack = append(stack, n)
		deps, err := ix.depsOf(n)
		if err != nil {
			if len(stack) > 1 {
				return fmt.Errorf("module %s (needed by %s): %w", n, stack[len(stack)-2], err)
			}
			return fmt.Errorf("module %s: %w", n, err)
		}
		// modules.dep lists the deepest dependency last and modprobe loads
		// from the end; a module's own line orders its own needs.
		for _, d := range slices.Backward(deps) {
			if err := visit(d); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		order = append(order, n)
		return nil
	}
	for _, raw := range names {
		n := normName(strings.TrimSpace(raw))
		if n == "" || strings.ContainsAny(n, "/\x00") || strings.HasSuffix(n, ".ko") {
			return nil, nil, fmt.Errorf("module %q: want a module name such as e1000", raw)
		}
		if _, ok := ix.paths[n]; !ok {
			if ix.builtin[n] {
				if !slices.Contains(builtin, n) {
					builtin = append(builtin, n)
				}
				continue
			}
			where := filepath.Join(ix.dir, "modules.dep")
			if ix.source == DepsFromModinfo {
				where = ix.dir
			}
			return nil, nil, fmt.Errorf("module %q: not in %s nor built in (modules.builtin)", raw, where)
		}
		if err := visit(n); err != nil {
			return nil, nil, err
		}
	}
	return order, builtin, nil
}

// readModule returns a module file's contents, decompressed.
func readModule(p string) ([]byte, error) {
	_, comp := modName(p)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch comp {
	case "":
	case ".xz":
		xr, err := xz.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		r = xr
	case ".gz":
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("%s: %s-compressed modules are not supported (decompress it, e.g. with unzstd, and run depmod again)", p, strings.TrimPrefix(comp, "."))
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return data, nil
}

// modinfoDepends returns the "depends=" list of a module's .modinfo
// section: NUL-terminated key=value strings.
func modinfoDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf(".modinfo: %w", err)
	}
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, normName(d))
				}
			}
		}
	}
	return deps, nil
}

// addModules resolves o.Modules in o.ModulesDir, puts the module files into
// t under /lib/modules/VERSION with a modules.dep for them, and records
// them in m. It returns the modules in load order.
func addModules(t *tree, o *Options, m *Manifest) ([]Module, error) {
	if len(o.Modules) == 0 {
		return nil, nil
	}
	if o.ModulesDir == "" {
		return nil, fmt.Errorf("modules %s: no modules dir given", strings.Join(o.Modules, ", "))
	}
	ix, err := loadModIndex(o.ModulesDir, true)
	if err != nil {
		return nil, err
	}
	order, builtin, err := ix.resolve(o.Modules)
	if err != nil {
		return nil, err
	}
	m.KernelVersion, m.ModuleDeps, m.BuiltinModules = ix.version, ix.source, builtin
	base := "/lib/modules/" + ix.version + "/"
	var mods []Module
	var dep strings.Builder
	for _, n := range order {
		rel := ix.paths[n]
		src := filepath.Join(ix.dir, filepath.FromSlash(rel))
		_, comp := modName(rel)
		mod := Module{Name: n, Path: base + strings.TrimSuffix(rel, comp), Source: src, Deps: ix.deps[n]}
		if comp == "" {
			err = t.copyFile(mod.Path, src, 0o644)
		} else {
			var data []byte
			if data, err = readModule(src); err == nil {
				_, err = t.put(mod.Path, &node{typ: cpio.TypeReg, perm: 0o644, data: data, size: int64(len(data))})
			}
		}
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", n, err)
		}
		// modules.dep for busybox modprobe on the target: the deps' own
		// archive paths, relative to the modules dir.
		fmt.Fprintf(&dep, "%s:", strings.TrimSuffix(rel, comp))
		for _, d := range mod.Deps {
			r := ix.paths[d]
			_, c := modName(r)
			fmt.Fprintf(&dep, " %s", strings.TrimSuffix(r, c))
		}
		dep.WriteString("\n")
		mods = append(mods, mod)
	}
	if len(mods) > 0 {
		d := dep.String()
		if _, err := t.put(base+"modules.dep", &node{typ: cpio.TypeReg, perm: 0o644, data: []byte(d), size: int64(len(d))}); err != nil {
			return nil, err
		}
	}
	m.Modules = mods
	return mods, nil
}
