package initrd

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// staticBusybox returns Debian's busybox-static or skips.
func staticBusybox(t testing.TB) string {
	t.Helper()
	info, err := readELF(DefaultBusybox)
	if err != nil {
		t.Skipf("no busybox at %s (apt-get install busybox-static): %v", DefaultBusybox, err)
	}
	if !info.static() {
		t.Skipf("%s is dynamically linked; install busybox-static", DefaultBusybox)
	}
	return DefaultBusybox
}

// build runs Build and returns the archive bytes.
func build(t testing.TB, o Options) ([]byte, *Manifest) {
	t.Helper()
	var buf bytes.Buffer
	m, err := Build(context.Background(), &buf, o)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes(), m
}

type entry struct {
	hdr  *cpio.Header
	data []byte
}

// archive is an archive read back with the cpio library.
type archive struct {
	order   []string
	entries map[string]entry
}

func readArchive(t testing.TB, data []byte, gzipped bool) *archive {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	if gzipped {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("gunzip: %v", err)
		}
		r = zr
	}
	a := &archive{entries: map[string]entry{}}
	cr := cpio.NewReader(r)
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read cpio: %v", err)
		}
		b, err := io.ReadAll(cr)
		if err != nil {
			t.Fatalf("read %s: %v", h.Name, err)
		}
		if _, dup := a.entries[h.Name]; dup {
			t.Errorf("entry %s appears twice", h.Name)
		}
		a.order = append(a.order, h.Name)
		a.entries[h.Name] = entry{h, b}
	}
	return a
}

// lookup resolves absolute path p inside the archive the way the kernel
// would, following symlinks (the final one too when follow is set).
func (a *archive) lookup(p string, follow bool) (string, entry, error) {
	comps := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := ""
	for hops := 0; len(comps) > 0; {
		next := path.Join(cur, comps[0])
		last := len(comps) == 1
		comps = comps[1:]
		e, ok := a.entries[next]
		if !ok {
			return "", entry{}, errors.New("/" + next + ": no such entry")
		}
		if e.hdr.Mode&^cpio.ModePerm&cpio.ModeType == cpio.TypeSymlink && (!last || follow) {
			if hops++; hops > 40 {
				return "", entry{}, errors.New("symlink loop")
			}
			target := e.hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join("/", cur, target)
			}
			rest := strings.Split(strings.Trim(path.Clean(target), "/"), "/")
			comps = append(rest, comps...)
			cur = ""
			continue
		}
		if last {
			return next, e, nil
		}
		if e.hdr.Mode&cpio.ModeType != cpio.TypeDir {
			return "", entry{}, errors.New("/" + next + ": not a directory")
		}
		cur = next
	}
	return "", entry{}, errors.New(p + ": empty path")
}

func typ(h *cpio.Header) cpio.FileMode { return h.Mode & cpio.ModeType }

// lddLibs returns the absolute library paths ldd prints for exe.
func lddLibs(t *testing.T, exe string) []string {
	t.Helper()
	out, err := exec.Command("ldd", exe).Output()
	if err != nil {
		t.Skipf("ldd %s: %v (install libc-bin)", exe, err)
	}
	var libs []string
	for _, m := range regexp.MustCompile(`(?m)(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	if len(libs) == 0 {
		t.Fatalf("ldd %s printed no library: %s", exe, out)
	}
	return libs
}

func TestBuildArchive(t *testing.T) {
	bb := staticBusybox(t)
	const exe = "/bin/ls"
	data, m := build(t, Options{Binaries: []string{exe}, Version: "2026.05-test", Prompt: "master$ "})
	a := readArchive(t, data, true)

	if !slices.IsSorted(a.order) {
		t.Errorf("archive order is not sorted: %v", a.order)
	}
	// Every entry's parent directory comes before it.
	seen := map[string]bool{}
	for _, name := range a.order {
		if d := path.Dir(name); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", name, d)
		}
		seen[name] = true
	}

	wantBB, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	_, e, err := a.lookup("/bin/busybox", true)
	if err != nil {
		t.Fatalf("lookup /bin/busybox: %v", err)
	}
	if !bytes.Equal(e.data, wantBB) || e.hdr.Mode != cpio.TypeReg|0o755 {
		t.Errorf("/bin/busybox: mode %o, %d bytes; want %o, the %d bytes of %s", e.hdr.Mode, len(e.data), cpio.TypeReg|0o755, len(wantBB), bb)
	}

	// Applet links point at busybox.
	for _, applet := range []string{"/bin/sh", "/sbin/udhcpc", "/bin/mount", "/sbin/init"} {
		_, e, err := a.lookup(applet, false)
		if err != nil {
			t.Errorf("lookup %s: %v", applet, err)
			continue
		}
		if typ(e.hdr) != cpio.TypeSymlink || e.hdr.Linkname != "/bin/busybox" {
			t.Errorf("%s: mode %o -> %q, want a symlink to /bin/busybox", applet, e.hdr.Mode, e.hdr.Linkname)
		}
	}

	// The host binary replaces busybox's ls, with its loader and every
	// library ldd (the host's own loader) names.
	_, e, err = a.lookup(exe, true)
	if err != nil {
		t.Fatalf("lookup %s: %v", exe, err)
	}
	if want, _ := os.ReadFile(exe); !bytes.Equal(e.data, want) {
		t.Errorf("%s in the archive differs from the host's", exe)
	}
	info, err := readELF(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range append(lddLibs(t, exe), info.interp) {
		_, e, err := a.lookup(lib, true)
		if err != nil {
			t.Errorf("library %s: %v", lib, err)
			continue
		}
		if want, _ := os.ReadFile(lib); !bytes.Equal(e.data, want) {
			t.Errorf("library %s in the archive differs from the host's", lib)
		}
	}
	var libc bool
	for _, o := range m.Objects {
		for _, l := range o.Needed {
			libc = libc || l.Name == "libc.so.6"
		}
	}
	if !libc {
		t.Errorf("manifest objects name no libc.so.6: %+v", m.Objects)
	}

	// Host symlinks stay symlinks: the interpreter is one on Debian.
	if fi, err := os.Lstat(info.interp); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(info.interp)
		_, e, err := a.lookup(info.interp, false)
		if err != nil || typ(e.hdr) != cpio.TypeSymlink || e.hdr.Linkname != target {
			t.Errorf("%s: %v %+v, want a symlink to %s", info.interp, err, e.hdr, target)
		}
	}

	// Device nodes, directories, generated files.
	for _, c := range []struct {
		path string
		mode cpio.FileMode
	}{
		{"/dev/console", cpio.TypeChar | 0o600},
		{"/dev/null", cpio.TypeChar | 0o666},
		{"/tmp", cpio.TypeDir | 0o1777},
		{"/root", cpio.TypeDir | 0o700},
		{"/proc", cpio.TypeDir | 0o555},
		{"/lava", cpio.TypeDir | 0o755},
		{"/init", cpio.TypeReg | 0o755},
		{"/etc/udhcpc.script", cpio.TypeReg | 0o755},
		{"/etc/passwd", cpio.TypeReg | 0o644},
	} {
		_, e, err := a.lookup(c.path, true)
		if err != nil {
			t.Errorf("lookup %s: %v", c.path, err)
			continue
		}
		if e.hdr.Mode != c.mode {
			t.Errorf("mode of %s = %o, want %o", c.path, e.hdr.Mode, c.mode)
		}
		if e.hdr.ModTime.Unix() != 0 || e.hdr.Uid != 0 || e.hdr.Guid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d, want epoch and root", c.path, e.hdr.ModTime, e.hdr.Uid, e.hdr.Guid)
		}
	}
	for p, want := range map[string][]string{
		"/init": {"#!/bin/sh\n", "mount -t proc proc /proc", "mount -t sysfs sysfs /sys",
			"mount -t devtmpfs devtmpfs /dev", "ip link set lo up", "iface=eth0",
			"udhcpc -i $iface -s /etc/udhcpc.script -q -n -t 5",
			`echo "basalt master image $(cat /etc/basalt-master-image-info)"`,
			"cat /proc/cmdline", "exec /bin/busybox init\n"},
		"/etc/inittab":                  {"::respawn:/bin/busybox cttyhack /bin/sh -l\n"},
		"/etc/profile":                  {"export PS1='master$ '\n", "export PATH="},
		"/etc/basalt-master-image-info": {"2026.05-test\n"},
		"/sbin/lava-master-image-info":  {"echo '2026.05-test'\n"},
		"/etc/hostname":                 {"basalt-master\n"},
	} {
		_, e, err := a.lookup(p, true)
		if err != nil {
			t.Errorf("lookup %s: %v", p, err)
			continue
		}
		for _, w := range want {
			if !strings.Contains(string(e.data), w) {
				t.Errorf("%s = %q, want it to contain %q", p, e.data, w)
			}
		}
	}

	// The manifest matches the archive.
	if len(m.Entries) != len(a.order) {
		t.Errorf("manifest has %d entries, archive %d", len(m.Entries), len(a.order))
	}
	for i, me := range m.Entries {
		if i < len(a.order) && me.Path != "/"+a.order[i] {
			t.Errorf("manifest entry %d = %s, archive has %s", i, me.Path, a.order[i])
			break
		}
	}
	if m.AppletSource != "busybox --list-full" {
		t.Errorf("AppletSource = %q, want busybox --list-full", m.AppletSource)
	}
	var text bytes.Buffer
	if err := m.WriteText(&text); err != nil || !strings.Contains(text.String(), "needs libc.so.6 => ") {
		t.Errorf("WriteText = %v, %q; want a line naming libc.so.6", err, text.String())
	}
}

// TestDeviceNodesGNUCpio reads the archive with GNU cpio, an independent
// reader, which prints the device numbers the library cannot.
func TestDeviceNodesGNUCpio(t *testing.T) {
	staticBusybox(t)
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("GNU cpio not installed (apt-get install cpio)")
	}
	data, _ := build(t, Options{Uncompressed: true})
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -itv: %v", err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^crw------- +1 root +root +5, +1 .* dev/console$`),
		regexp.MustCompile(`(?m)^crw-rw-rw- +1 root +root +1, +3 .* dev/null$`),
		regexp.MustCompile(`(?m)^-rwxr-xr-x .* init$`),
		regexp.MustCompile(`(?m)^drwxrwxrwt .* tmp$`),
	} {
		if !want.Match(out) {
			t.Errorf("cpio -itv output does not match %s:\n%s", want, out)
		}
	}
}

func TestDeterministic(t *testing.T) {
	staticBusybox(t)
	o := Options{Binaries: []string{"/bin/ls"}, Version: "v1"}
	a, _ := build(t, o)
	b, _ := build(t, o)
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of the same inputs differ (%d and %d bytes)", len(a), len(b))
	}
	o.Version = "v2"
	c, _ := build(t, o)
	if bytes.Equal(a, c) {
		t.Errorf("builds with versions v1 and v2 are identical")
	}
}

func TestBuildErrors(t *testing.T) {
	bb := staticBusybox(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    Options
		want string
		is   error
	}{
		{"missing binary", Options{Binaries: []string{"/nonexistent/bin/tool"}}, "/nonexistent/bin/tool", os.ErrNotExist},
		{"relative binary", Options{Binaries: []string{"bin/ls"}}, "want an absolute host path", nil},
		{"text file as binary", Options{Binaries: []string{text}}, "not an ELF file", ErrNotELF},
		{"dynamic busybox", Options{Busybox: "/bin/ls"}, "is dynamically linked", nil},
		{"missing busybox", Options{Busybox: filepath.Join(dir, "busybox")}, "busybox", os.ErrNotExist},
		{"text busybox", Options{Busybox: text}, "not an ELF file", ErrNotELF},
		{"version with newline", Options{Version: "1\n2"}, "version", nil},
		{"bad hostname", Options{Hostname: "a b"}, "hostname", nil},
		{"relative file destination", Options{Files: map[string]string{text: "etc/x"}}, "not absolute", nil},
		{"missing file", Options{Files: map[string]string{filepath.Join(dir, "nope"): "/etc/x"}}, "nope", os.ErrNotExist},
		{"applets without udhcpc", Options{Applets: []string{"bin/sh", "bin/mount"}}, "lacks applets /init needs", nil},
		{"applet outside the archive", Options{Applets: []string{"../../etc/sh"}}, "not inside the archive", nil},
		{"file over a directory", Options{Files: map[string]string{text: "/etc"}}, "added twice", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.o.Busybox == "" {
				c.o.Busybox = bb
			}
			var buf bytes.Buffer
			m, err := Build(context.Background(), &buf, c.o)
			if err == nil {
				t.Fatalf("Build(%+v) = %d entries, nil error; want an error containing %q", c.o, len(m.Entries), c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "initrd: ") {
				t.Errorf("Build error = %q, want it to start with initrd: and contain %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("Build error = %v, want errors.Is %v", err, c.is)
			}
			if buf.Len() != 0 {
				t.Errorf("Build wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestFilesAndScripts(t *testing.T) {
	staticBusybox(t)
	dir := t.TempDir()
	myInit := filepath.Join(dir, "init")
	script := filepath.Join(dir, "deploy.sh")
	data := filepath.Join(dir, "data.bin")
	for name, content := range map[string]string{
		myInit: "#!/bin/sh\nexec sh\n", script: "#!/bin/sh\necho deploy\n", data: "\x00\x01payload",
	} {
		if err := os.WriteFile(name, []byte(content), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "data.link")
	if err := os.Symlink("data.bin", link); err != nil {
		t.Fatal(err)
	}
	raw, m := build(t, Options{
		Binaries: []string{script},
		Files:    map[string]string{myInit: "/init", link: "/lava/data.bin"},
	})
	a := readArchive(t, raw, true)
	for p, want := range map[string]string{"/init": "#!/bin/sh\nexec sh\n", script: "#!/bin/sh\necho deploy\n", "/lava/data.bin": "\x00\x01payload"} {
		_, e, err := a.lookup(p, false)
		if err != nil {
			t.Errorf("lookup %s: %v", p, err)
			continue
		}
		if string(e.data) != want || e.hdr.Mode != cpio.TypeReg|0o750 {
			t.Errorf("%s = %o %q, want a regular file %o %q", p, e.hdr.Mode, e.data, cpio.TypeReg|0o750, want)
		}
	}
	if !slices.Equal(m.Overridden, []string{"/init"}) {
		t.Errorf("Overridden = %v, want [/init]", m.Overridden)
	}
}

func TestCancel(t *testing.T) {
	staticBusybox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, io.Discard, Options{Applets: []string{"bin/sh", "bin/mount", "bin/mkdir", "bin/cat",
		"bin/hostname", "sbin/ip", "bin/sleep", "sbin/udhcpc", "sbin/init"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Build(canceled ctx) = %v, want context.Canceled", err)
	}
}

func BenchmarkBuild(b *testing.B) {
	staticBusybox(b)
	o := Options{Binaries: []string{"/bin/ls"}}
	var n int
	for b.Loop() {
		var buf bytes.Buffer
		if _, err := Build(context.Background(), &buf, o); err != nil {
			b.Fatal(err)
		}
		n = buf.Len()
	}
	b.ReportMetric(float64(n), "archive-bytes")
}
