package initrd

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/google/go-cmp/cmp"
	"github.com/ulikunitz/xz"
)

// fakeKO returns a minimal relocatable ELF64 whose only section besides
// the section names is a .modinfo with the given key=value entries, which
// is all debug/elf and modinfoDepends read.
func fakeKO(t testing.TB, modinfo ...string) []byte {
	t.Helper()
	var info []byte
	for _, kv := range modinfo {
		info = append(info, kv...)
		info = append(info, 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(len(info))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	var b bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, hdr)
	b.Write(info)
	b.Write(shstr)
	b.Write(make([]byte, int(shOff)-b.Len()))
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: infoOff, Size: uint64(len(info)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	} {
		binary.Write(&b, binary.LittleEndian, s)
	}
	return b.Bytes()
}

// fakeModules writes a modules directory named 6.1.0-test-amd64 into a
// temp dir: files maps a path relative to it to the module's direct
// dependencies (written as .modinfo depends=); dep, when non-nil, is
// written as modules.dep; builtin lines go to modules.builtin.
func fakeModules(t testing.TB, files map[string][]string, dep []string, builtin ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.1.0-test-amd64")
	for rel, deps := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		name, comp := modName(rel)
		ko := fakeKO(t, "name="+name, "depends="+strings.Join(deps, ","), "vermagic=6.1.0-test-amd64 SMP mod_unload")
		var data bytes.Buffer
		switch comp {
		case "":
			data.Write(ko)
		case ".xz":
			w, err := xz.NewWriter(&data)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(ko)
			w.Close()
		case ".gz":
			w := gzip.NewWriter(&data)
			w.Write(ko)
			w.Close()
		case ".zst":
			data.WriteString("\x28\xb5\x2f\xfd not really zstd")
		}
		if err := os.WriteFile(p, data.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if dep != nil {
		if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(strings.Join(dep, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(builtin) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(strings.Join(builtin, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// virtioTree is the shape of Debian 12's virtio and e1000 modules: the
// files with their .modinfo depends, and the modules.dep depmod writes.
var virtioFiles = map[string][]string{
	"kernel/drivers/virtio/virtio.ko":                  {"virtio_ring"},
	"kernel/drivers/virtio/virtio_ring.ko":             nil,
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko":   nil,
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko":   nil,
	"kernel/drivers/virtio/virtio_pci.ko":              {"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"},
	"kernel/drivers/block/virtio_blk.ko":               {"virtio", "virtio_ring"},
	"kernel/drivers/net/ethernet/intel/e1000/e1000.ko": nil,
	"kernel/drivers/hid/hid-generic.ko":                nil,
	"kernel/loop/a.ko":                                 {"b"},
	"kernel/loop/b.ko":                                 {"c"},
	"kernel/loop/c.ko":                                 {"a"},
	"kernel/orphan/needy.ko":                           {"absent"},
}

var virtioDep = []string{
	"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio_ring.ko:",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko:",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko:",
	"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/net/ethernet/intel/e1000/e1000.ko:",
	"kernel/drivers/hid/hid-generic.ko:",
	// depmod would refuse a cycle; a hand-written or corrupt file may not.
	"kernel/loop/a.ko: kernel/loop/b.ko",
	"kernel/loop/b.ko: kernel/loop/c.ko",
	"kernel/loop/c.ko: kernel/loop/a.ko",
	"kernel/orphan/needy.ko: kernel/orphan/absent.ko",
}

var virtioBuiltin = []string{"kernel/drivers/block/loop.ko", "kernel/fs/ext4/ext4.ko"}

func TestResolveModules(t *testing.T) {
	tests := []struct {
		name       string
		mods       []string
		order      []string
		builtin    []string
		err        string // substring; "" for success
		modinfoErr string // when the .modinfo fallback fails differently
		// modinfoOrder, when set, is the order from .modinfo depends, which
		// lists dependencies in another (equally valid) order.
		modinfoOrder []string
	}{
		{name: "no deps", mods: []string{"e1000"}, order: []string{"e1000"}},
		{name: "deps first", mods: []string{"virtio_blk"}, order: []string{"virtio_ring", "virtio", "virtio_blk"}},
		{
			name:         "shared deps once",
			mods:         []string{"e1000", "virtio_pci", "virtio_blk"},
			order:        []string{"e1000", "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"},
			modinfoOrder: []string{"e1000", "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk"},
		},
		{name: "requested twice", mods: []string{"virtio", "virtio_ring", "virtio"}, order: []string{"virtio_ring", "virtio"}},
		{name: "dash and underscore", mods: []string{"hid_generic", "virtio-blk"}, order: []string{"hid_generic", "virtio_ring", "virtio", "virtio_blk"}},
		{name: "builtin skipped", mods: []string{"loop", "e1000", "ext4", "loop"}, order: []string{"e1000"}, builtin: []string{"loop", "ext4"}},
		{name: "only builtin", mods: []string{"ext4"}, builtin: []string{"ext4"}},
		{name: "unknown", mods: []string{"e1000", "nosuchmod"}, err: `module "nosuchmod": not in `},
		{name: "cycle", mods: []string{"a"}, err: "dependency cycle: a -> b -> c -> a", modinfoErr: "dependency cycle: a -> b -> c -> a"},
		{name: "missing dep", mods: []string{"needy"}, err: `module absent (needed by needy): open `, modinfoErr: `module "absent" (needed by needy) is not in`},
		{name: "path not name", mods: []string{"kernel/drivers/net/e1000.ko"}, err: "want a module name"},
		{name: "empty name", mods: []string{""}, err: "want a module name"},
	}
	for _, useDep := range []bool{true, false} {
		dep := virtioDep
		mode := "modules.dep"
		if !useDep {
			dep, mode = nil, "modinfo"
		}
		dir := fakeModules(t, virtioFiles, dep, virtioBuiltin...)
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				ix, err := loadModIndex(dir, true)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]string{true: DepsFromModulesDep, false: DepsFromModinfo}[useDep]; ix.source != want {
					t.Fatalf("source = %q, want %q", ix.source, want)
				}
				order, builtin, err := ix.resolve(tt.mods)
				wantErr := tt.err
				if !useDep && tt.modinfoErr != "" {
					wantErr = tt.modinfoErr
				}
				if wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), wantErr) {
						t.Fatalf("resolve(%q) = %v, %v, want error containing %q", tt.mods, order, err, wantErr)
					}
					if strings.Contains(wantErr, "not in ") && !strings.Contains(err.Error(), dir) {
						t.Errorf("resolve(%q) error %q does not name %s", tt.mods, err, dir)
					}
					return
				}
				if err != nil {
					t.Fatalf("resolve(%q): %v", tt.mods, err)
				}
				wantOrder := tt.order
				if !useDep && tt.modinfoOrder != nil {
					wantOrder = tt.modinfoOrder
				}
				if !slices.Equal(order, wantOrder) {
					t.Errorf("resolve(%q) order = %q, want %q", tt.mods, order, wantOrder)
				}
				if !slices.Equal(builtin, tt.builtin) {
					t.Errorf("resolve(%q) builtin = %q, want %q", tt.mods, builtin, tt.builtin)
				}
			})
		}
	}
}

func TestParseModulesDepErrors(t *testing.T) {
	for _, tt := range []struct{ line, err string }{
		{"kernel/a.ko kernel/b.ko", "no ':'"},
		{"kernel/a.txt:", "is not a module file"},
		{"../../etc/a.ko:", "outside the modules dir"},
		{"kernel/a.ko: /etc/b.ko", "is outside"},
	} {
		dir := fakeModules(t, nil, []string{tt.line})
		_, err := loadModIndex(dir, true)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("loadModIndex(modules.dep %q) = %v, want error containing %q", tt.line, err, tt.err)
		}
	}
	// Absolute paths inside the modules dir are fine.
	dir := fakeModules(t, map[string][]string{"kernel/x.ko": nil}, nil)
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(filepath.Join(dir, "kernel/x.ko")+":\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := loadModIndex(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.paths["x"]; got != "kernel/x.ko" {
		t.Errorf("absolute modules.dep path resolved to %q, want kernel/x.ko", got)
	}
}

func TestModinfoDepends(t *testing.T) {
	for _, tt := range []struct {
		info []string
		want []string
	}{
		{[]string{"license=GPL", "depends=", "name=x"}, nil},
		{[]string{"depends=virtio_ring,virtio-pci-modern-dev", "name=x"}, []string{"virtio_ring", "virtio_pci_modern_dev"}},
		{[]string{"name=x"}, nil},
	} {
		got, err := modinfoDepends(fakeKO(t, tt.info...))
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("modinfoDepends(%q) = %q, %v, want %q", tt.info, got, err, tt.want)
		}
	}
	if _, err := modinfoDepends([]byte("not an elf file at all, no")); err == nil {
		t.Errorf("modinfoDepends(garbage) = nil error, want one")
	}
}

// TestBuildModules builds an image with modules and reads it back: the
// module files (compressed ones stored decompressed), their modules.dep,
// the manifest and /init's insmod lines, in load order and before eth0.
func TestBuildModules(t *testing.T) {
	staticBusybox(t)
	files := map[string][]string{
		"kernel/drivers/virtio/virtio.ko":                    {"virtio_ring"},
		"kernel/drivers/virtio/virtio_ring.ko.xz":            nil,
		"kernel/drivers/block/virtio_blk.ko.gz":              {"virtio", "virtio_ring"},
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko":   nil,
		"kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko": nil,
	}
	dir := fakeModules(t, files, nil, "kernel/fs/ext4/ext4.ko")
	raw, m := build(t, Options{ModulesDir: dir, Modules: []string{"e1000", "ext4", "virtio_blk"}})
	a := readArchive(t, raw, true)

	const base = "/lib/modules/6.1.0-test-amd64/"
	wantMods := []Module{
		{Name: "e1000", Path: base + "kernel/drivers/net/ethernet/intel/e1000/e1000.ko", Source: filepath.Join(dir, "kernel/drivers/net/ethernet/intel/e1000/e1000.ko")},
		{Name: "virtio_ring", Path: base + "kernel/drivers/virtio/virtio_ring.ko", Source: filepath.Join(dir, "kernel/drivers/virtio/virtio_ring.ko.xz")},
		{Name: "virtio", Path: base + "kernel/drivers/virtio/virtio.ko", Source: filepath.Join(dir, "kernel/drivers/virtio/virtio.ko"), Deps: []string{"virtio_ring"}},
		{Name: "virtio_blk", Path: base + "kernel/drivers/block/virtio_blk.ko", Source: filepath.Join(dir, "kernel/drivers/block/virtio_blk.ko.gz"), Deps: []string{"virtio", "virtio_ring"}},
	}
	if diff := cmp.Diff(wantMods, m.Modules); diff != "" {
		t.Errorf("Manifest.Modules (-want +got):\n%s", diff)
	}
	if m.KernelVersion != "6.1.0-test-amd64" || m.ModuleDeps != DepsFromModinfo || !slices.Equal(m.BuiltinModules, []string{"ext4"}) {
		t.Errorf("Manifest kernel %q deps %q builtin %q, want 6.1.0-test-amd64, %q, [ext4]", m.KernelVersion, m.ModuleDeps, m.BuiltinModules, DepsFromModinfo)
	}
	for _, mod := range wantMods {
		_, e, err := a.lookup(mod.Path, true)
		if err != nil {
			t.Errorf("module %s: %v", mod.Name, err)
			continue
		}
		got, err := modinfoDepends(e.data) // the stored file is the plain ELF
		if err != nil || !slices.Equal(got, mod.Deps) {
			t.Errorf("archive %s: depends = %q, %v, want %q", mod.Path, got, err, mod.Deps)
		}
		if e.hdr.Mode&cpio.ModeType != cpio.TypeReg || e.hdr.Mode&cpio.ModePerm != 0o644 {
			t.Errorf("archive %s: mode %v, want a 0644 file", mod.Path, e.hdr.Mode)
		}
	}
	if _, _, err := a.lookup(base+"kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko", true); err == nil {
		t.Errorf("e1000e was not asked for but is in the archive")
	}
	_, dep, err := a.lookup(base+"modules.dep", true)
	if err != nil {
		t.Fatal(err)
	}
	wantDep := "kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n" +
		"kernel/drivers/virtio/virtio_ring.ko:\n" +
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
	if string(dep.data) != wantDep {
		t.Errorf("modules.dep = %q, want %q", dep.data, wantDep)
	}

	_, init, err := a.lookup("/init", true)
	if err != nil {
		t.Fatal(err)
	}
	var loads []string
	for _, l := range strings.Split(string(init.data), "\n") {
		if strings.HasPrefix(l, "modload ") {
			loads = append(loads, l)
		}
	}
	var want []string
	for _, mod := range wantMods {
		want = append(want, "modload "+mod.Name+" '"+mod.Path+"'")
	}
	if !slices.Equal(loads, want) {
		t.Errorf("/init modload lines = %q, want %q", loads, want)
	}
	if i, j := strings.Index(string(init.data), "modload e1000"), strings.Index(string(init.data), "ip link set $iface up"); i < 0 || j < i {
		t.Errorf("/init loads modules at %d, after bringing eth0 up at %d", i, j)
	}
	if _, _, err := a.lookup("/sbin/insmod", false); err != nil {
		t.Errorf("no insmod applet: %v", err)
	}
	var text bytes.Buffer
	m.WriteText(&text)
	if !strings.Contains(text.String(), "# module virtio_blk: "+base+"kernel/drivers/block/virtio_blk.ko (needs virtio, virtio_ring)\n") ||
		!strings.Contains(text.String(), "# module ext4: built into the kernel\n") {
		t.Errorf("WriteText lacks the module lines:\n%s", text.String())
	}

	// The same inputs give the same bytes, modules included.
	again, _ := build(t, Options{ModulesDir: dir, Modules: []string{"e1000", "ext4", "virtio_blk"}})
	if !bytes.Equal(raw, again) {
		t.Errorf("two builds with modules differ")
	}
}

func TestBuildModulesErrors(t *testing.T) {
	staticBusybox(t)
	dir := fakeModules(t, map[string][]string{"kernel/x.ko": nil, "kernel/z.ko.zst": nil}, nil)
	for _, tt := range []struct {
		name string
		o    Options
		err  string
	}{
		{"no dir", Options{Modules: []string{"x"}}, "no modules dir given"},
		{"dir missing", Options{Modules: []string{"x"}, ModulesDir: filepath.Join(dir, "nope")}, "modules dir"},
		{"unknown", Options{Modules: []string{"y"}, ModulesDir: dir}, `module "y": not in ` + dir},
		{"zstd", Options{Modules: []string{"z"}, ModulesDir: dir}, "zst-compressed modules are not supported"},
		{"no insmod", Options{Modules: []string{"x"}, ModulesDir: dir,
			Applets: []string{"bin/sh", "bin/mount", "bin/mkdir", "bin/cat", "bin/hostname", "sbin/ip", "bin/sleep", "sbin/udhcpc", "sbin/init"}}, "lacks applets /init needs: insmod"},
	} {
		var buf bytes.Buffer
		_, err := Build(t.Context(), &buf, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: Build = %v, want error containing %q", tt.name, err, tt.err)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: Build wrote %d bytes on error", tt.name, buf.Len())
		}
	}
	// Without modules, ModulesDir is not even read.
	if _, err := Build(t.Context(), new(bytes.Buffer), Options{ModulesDir: filepath.Join(dir, "nope")}); err != nil {
		t.Errorf("Build with ModulesDir and no Modules: %v", err)
	}
}

// initPart returns the lines of the generated /init from the first line
// starting with from through the first line after it starting with to.
func initPart(t *testing.T, script, from, to string) string {
	t.Helper()
	lines := strings.Split(script, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, from) })
	if i < 0 {
		t.Fatalf("/init has no line starting with %q:\n%s", from, script)
	}
	j := slices.IndexFunc(lines[i+1:], func(l string) bool { return strings.HasPrefix(l, to) })
	if j < 0 {
		t.Fatalf("/init has no line starting with %q after %q", to, from)
	}
	return strings.Join(lines[i:i+j+2], "\n") + "\n"
}

// shells are the shells /init's fragments are run with: busybox's (the
// one on the target) and the host's /bin/sh.
func shells(t *testing.T) [][]string {
	var sh [][]string
	if _, err := os.Stat(DefaultBusybox); err == nil {
		sh = append(sh, []string{DefaultBusybox, "sh"})
	}
	if _, err := os.Stat("/bin/sh"); err == nil {
		sh = append(sh, []string{"/bin/sh"})
	}
	if len(sh) == 0 {
		t.Skip("no shell to run /init's fragments with")
	}
	return sh
}

// TestInitNetWait runs /init's basalt.netwait parsing against command lines.
func TestInitNetWait(t *testing.T) {
	part := initPart(t, initScript(true, "", nil), "netwait=", "esac")
	for _, sh := range shells(t) {
		for _, tt := range []struct{ cmdline, want string }{
			{"console=ttyS0 panic=-1", "netwait=5"},
			{"console=ttyS0 basalt.netwait=0", "netwait=0"},
			{"basalt.netwait=12 quiet", "netwait=12"},
			{"basalt.netwait=1 basalt.netwait=3", "netwait=3"},
			{"basalt.netwait=soon", "basalt.netwait=soon is not a number of seconds; using 5\nnetwait=5"},
			{"basalt.netwait=", "basalt.netwait= is not a number of seconds; using 5\nnetwait=5"},
			{"xbasalt.netwait=1", "netwait=5"},
		} {
			cmdline := filepath.Join(t.TempDir(), "cmdline")
			if err := os.WriteFile(cmdline, []byte(tt.cmdline+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			script := strings.ReplaceAll(part, "/proc/cmdline", cmdline) + `echo "netwait=$netwait"` + "\n"
			out, err := exec.Command(sh[0], append(sh[1:], "-c", script)...).CombinedOutput()
			got := strings.TrimSpace(strings.TrimPrefix(string(out), "basalt: "))
			if err != nil || got != tt.want {
				t.Errorf("%s /init with cmdline %q: netwait = %q, %v, want %q", sh[0], tt.cmdline, got, err, tt.want)
			}
		}
	}
}

// TestInitModload runs /init's module loading with a stand-in insmod that
// logs its argument and fails for one module.
func TestInitModload(t *testing.T) {
	mods := []Module{
		{Name: "basalt_test_ring", Path: "/lib/modules/v/kernel/ring.ko"},
		{Name: "basalt_test_bad", Path: "/lib/modules/v/kernel/it's bad.ko"},
		{Name: "basalt_test_blk", Path: "/lib/modules/v/kernel/blk.ko"},
	}
	part := initPart(t, initScript(true, "", mods), "modload() {", "modload basalt_test_blk")
	for _, sh := range shells(t) {
		// A function, not a file on PATH: busybox sh runs its own applets
		// before searching PATH.
		log := filepath.Join(t.TempDir(), "log")
		fake := "insmod() {\n\techo \"$1\" >>" + shq(log) + "\n\tcase \"$1\" in *bad*) echo 'insmod: ENOEXEC' >&2; return 1 ;; esac\n}\n"
		cmd := exec.Command(sh[0], append(sh[1:], "-c", fake+part)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: modload block: %v\n%s", sh[0], err, out)
		}
		want := "basalt: loaded module basalt_test_ring\n" +
			"insmod: ENOEXEC\n" +
			"basalt: insmod basalt_test_bad (/lib/modules/v/kernel/it's bad.ko) failed; see dmesg\n" +
			"basalt: loaded module basalt_test_blk\n"
		if string(out) != want {
			t.Errorf("%s: modload output = %q, want %q", sh[0], out, want)
		}
		calls, _ := os.ReadFile(log)
		if want := "/lib/modules/v/kernel/ring.ko\n/lib/modules/v/kernel/it's bad.ko\n/lib/modules/v/kernel/blk.ko\n"; string(calls) != want {
			t.Errorf("%s: insmod calls = %q, want %q", sh[0], calls, want)
		}
	}
}

// FuzzParseModulesDep parses arbitrary modules.dep text and resolves every
// module it names: no panic, and every resolved order loads each module
// after all the modules its line lists.
func FuzzParseModulesDep(f *testing.F) {
	f.Add(strings.Join(virtioDep, "\n"))
	f.Add("a.ko: b.ko c.ko.xz\nb.ko: c.ko.xz\nc.ko.xz:\n")
	f.Add("a.ko: a.ko\n")
	f.Add("/m/6.1/x.ko:\n# comment\n\n")
	f.Fuzz(func(t *testing.T, dep string) {
		ix := &modIndex{dir: "/m/6.1", version: "6.1", source: DepsFromModulesDep, paths: map[string]string{},
			deps: map[string][]string{}, builtin: map[string]bool{}}
		if err := ix.parseDep(strings.NewReader(dep)); err != nil {
			return
		}
		for name := range ix.deps {
			order, _, err := ix.resolve([]string{name})
			if err != nil {
				continue // cycles and modules without a line (read from disk) fail
			}
			pos := map[string]int{}
			for i, n := range order {
				if _, dup := pos[n]; dup {
					t.Fatalf("resolve(%s) = %q: %s twice", name, order, n)
				}
				pos[n] = i
			}
			for _, n := range order {
				for _, d := range ix.deps[n] {
					if pos[d] >= pos[n] {
						t.Fatalf("resolve(%s) = %q: %s loads before its dependency %s", name, order, n, d)
					}
				}
			}
		}
	})
}

// TestInitRCLocal runs /init's /etc/rc.local step: the file runs when it
// exists (a failure is reported, not fatal), and nothing happens without it.
func TestInitRCLocal(t *testing.T) {
	part := initPart(t, initScript(true, "", nil), "if [ -f /etc/rc.local ]", "fi")
	for _, sh := range shells(t) {
		dir := t.TempDir()
		rc := filepath.Join(dir, "rc.local")
		for _, tt := range []struct {
			rc   string // "" for no file
			want string
		}{
			{"", ""},
			{"echo started httpd\n", "basalt: running /etc/rc.local\nstarted httpd"},
			{"echo half; exit 3\n", "basalt: running /etc/rc.local\nhalf\nbasalt: /etc/rc.local failed"},
		} {
			os.Remove(rc)
			if tt.rc != "" {
				if err := os.WriteFile(rc, []byte(tt.rc), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			script := strings.ReplaceAll(part, "/etc/rc.local", rc)
			out, err := exec.Command(sh[0], append(sh[1:], "-c", script)...).CombinedOutput()
			got := strings.ReplaceAll(strings.TrimSpace(string(out)), rc, "/etc/rc.local")
			if err != nil || got != tt.want {
				t.Errorf("%s /init with rc.local %q = %q, %v, want %q", sh[0], tt.rc, got, err, tt.want)
			}
		}
	}
}
