package initrd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseELFOddInputs(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 64)
	if f, err := os.Open(self); err == nil {
		f.Read(head)
		f.Close()
	}
	for _, c := range []struct {
		name    string
		data    []byte
		wantErr string
		notELF  bool
	}{
		{"empty", nil, "not an ELF file", true},
		{"script", []byte("#!/bin/sh\necho hi\n"), "not an ELF file", true},
		{"three bytes of magic", []byte("\x7fEL"), "not an ELF file", true},
		{"magic only", []byte("\x7fELF"), "bad ELF file", false},
		{"header only", head, "bad ELF file", false},
		{"bad class", append([]byte("\x7fELF\x09\x01\x01"), make([]byte, 60)...), "bad ELF file", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			info, err := parseELF(bytes.NewReader(c.data))
			if err == nil {
				t.Fatalf("parseELF(%q) = %+v, nil; want an error containing %q", c.data, info, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) || errors.Is(err, ErrNotELF) != c.notELF {
				t.Errorf("parseELF(%q) error = %v, want %q (ErrNotELF %v)", c.data, err, c.wantErr, c.notELF)
			}
		})
	}

	dir := t.TempDir()
	if _, err := readELF(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("readELF(dir) error = %v, want not a regular file", err)
	}
	if _, err := readELF(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readELF(missing) error = %v, want ErrNotExist", err)
	}
	info, err := readELF("/bin/ls")
	if err != nil {
		t.Skipf("no /bin/ls: %v", err)
	}
	if info.interp == "" || !slices.Contains(info.needed, "libc.so.6") {
		t.Errorf("readELF(/bin/ls) = interp %q needed %v, want an interpreter and libc.so.6", info.interp, info.needed)
	}
}

func FuzzParseELF(f *testing.F) {
	f.Add([]byte("#!/bin/sh\n"))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	for _, p := range []string{"/bin/busybox", "/bin/true"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b[:min(len(b), 8192)])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseELF(bytes.NewReader(data))
		if err == nil && info == nil {
			t.Fatal("parseELF returned nil info and nil error")
		}
		if err != nil && len(data) >= 4 && string(data[:4]) != "\x7fELF" && !errors.Is(err, ErrNotELF) {
			t.Fatalf("parseELF(no magic) error = %v, want ErrNotELF", err)
		}
	})
}

func TestReadLDConf(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "ld.so.conf.d")
	os.Mkdir(sub, 0o755)
	os.WriteFile(filepath.Join(dir, "ld.so.conf"), []byte("# comment\n/opt/a/lib\ninclude ld.so.conf.d/*.conf\nhwcap 0 nosegneg\nrelative/dir\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "b.conf"), []byte("/opt/b/lib # trailing\n/opt/b/lib2=libc6\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "a.conf"), []byte("/opt/c//lib/\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "loop.conf"), []byte("include "+filepath.Join(sub, "loop.conf")+"\n"), 0o644)
	got, err := readLDConf(filepath.Join(dir, "ld.so.conf"), 0)
	if err == nil || !strings.Contains(err.Error(), "nested too deep") {
		t.Errorf("readLDConf(include loop) = %v, %v; want a nesting error", got, err)
	}
	os.Remove(filepath.Join(sub, "loop.conf"))
	got, err = readLDConf(filepath.Join(dir, "ld.so.conf"), 0)
	want := []string{"/opt/a/lib", "/opt/c/lib", "/opt/b/lib", "/opt/b/lib2"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("readLDConf = %v, %v; want %v", got, err, want)
	}
}

// cc compiles C source with the host compiler or skips.
func cc(t *testing.T, args ...string) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed (apt-get install gcc): needed to make test libraries")
	}
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, out)
	}
}

// TestResolveRunpathAndConf builds a program whose libraries are found
// through DT_RUNPATH with $ORIGIN (one of them through a soname symlink)
// and through an ld.so.conf directory, then runs it from the extracted
// archive with chroot: the host's dynamic loader is the judge.
func TestResolveRunpathAndConf(t *testing.T) {
	staticBusybox(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	for _, d := range []string{"bin", "lib", "conflib"} {
		os.MkdirAll(filepath.Join(app, d), 0o755)
	}
	src := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cc(t, "-shared", "-fPIC", "-Wl,-soname,libinner.so.1", "-o", filepath.Join(app, "lib", "libinner.so.1.0"),
		src("inner.c", "int inner(void){return 40;}\n"))
	os.Symlink("libinner.so.1.0", filepath.Join(app, "lib", "libinner.so.1"))
	cc(t, "-shared", "-fPIC", "-Wl,-soname,libouter.so", "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
		"-o", filepath.Join(app, "lib", "libouter.so"), src("outer.c", "int inner(void);\nint outer(void){return inner()+1;}\n"),
		"-L"+filepath.Join(app, "lib"), "-l:libinner.so.1")
	cc(t, "-shared", "-fPIC", "-Wl,-soname,libconf.so", "-o", filepath.Join(app, "conflib", "libconf.so"),
		src("conf.c", "int conf(void){return 1;}\n"))
	exe := filepath.Join(app, "bin", "prog")
	cc(t, "-o", exe, src("main.c", "#include <stdio.h>\nint outer(void);int conf(void);\nint main(void){printf(\"answer %d\\n\", outer()+conf());return 0;}\n"),
		"-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib", "-L"+filepath.Join(app, "lib"), "-L"+filepath.Join(app, "conflib"), "-louter", "-lconf")
	conf := src("ld.so.conf", filepath.Join(app, "conflib")+"\ninclude /etc/ld.so.conf\n")

	raw, m := build(t, Options{Binaries: []string{exe}, LDConf: conf})
	var got []Lib
	for _, o := range m.Objects {
		for _, l := range o.Needed {
			if strings.HasPrefix(l.Path, app) {
				got = append(got, l)
			}
		}
	}
	slices.SortFunc(got, func(a, b Lib) int { return strings.Compare(a.Name, b.Name) })
	want := []Lib{
		{"libconf.so", filepath.Join(app, "conflib", "libconf.so"), viaConf},
		{"libinner.so.1", filepath.Join(app, "lib", "libinner.so.1"), viaRUNPATH},
		{"libouter.so", filepath.Join(app, "bin", "..", "lib", "libouter.so"), viaRUNPATH},
	}
	want[2].Path = filepath.Clean(want[2].Path)
	if !slices.Equal(got, want) {
		t.Errorf("resolved libraries = %+v, want %+v", got, want)
	}
	if !slices.Equal(m.LibraryPath, []string{filepath.Join(app, "conflib")}) {
		t.Errorf("LibraryPath = %v, want [%s]", m.LibraryPath, filepath.Join(app, "conflib"))
	}
	a := readArchive(t, raw, true)
	if _, e, err := a.lookup(filepath.Join(app, "lib", "libinner.so.1"), false); err != nil || e.hdr.Linkname != "libinner.so.1.0" {
		t.Errorf("libinner.so.1 = %v %+v, want a symlink to libinner.so.1.0", err, e.hdr)
	}
	if _, e, _ := a.lookup("/etc/profile", true); !strings.Contains(string(e.data), "LD_LIBRARY_PATH='"+filepath.Join(app, "conflib")+"'") {
		t.Errorf("/etc/profile = %q, want LD_LIBRARY_PATH naming the conf dir", e.data)
	}

	root := extract(t, raw)
	out := chroot(t, root, "LD_LIBRARY_PATH="+filepath.Join(app, "conflib"), exe)
	if out != "answer 42\n" {
		t.Errorf("chroot %s = %q, want answer 42", exe, out)
	}

	// Remove a library: the build names what is missing.
	os.Remove(filepath.Join(app, "conflib", "libconf.so"))
	_, err := Build(context.Background(), &bytes.Buffer{}, Options{Binaries: []string{exe}, LDConf: conf})
	if err == nil || !strings.Contains(err.Error(), "needs libconf.so: not found") {
		t.Errorf("Build without libconf.so = %v, want an error naming it", err)
	}
}

// extract unpacks an archive with GNU cpio (an independent reader) into a
// temp dir, leaving out device nodes.
func extract(t *testing.T, gz []byte) string {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("GNU cpio not installed (apt-get install cpio)")
	}
	root := t.TempDir()
	cmd := exec.Command("sh", "-c", "gzip -dc | cpio -id --quiet --no-absolute-filenames -f 'dev/*'")
	cmd.Dir = root
	cmd.Stdin = bytes.NewReader(gz)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extract: %v\n%s", err, out)
	}
	return root
}

// chroot runs argv inside root with a clean environment and returns stdout.
func chroot(t *testing.T, root string, env string, argv ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed (util-linux)")
	}
	// /proc as /init mounts it: the loader reads /proc/self/exe for $ORIGIN.
	// The mount namespace, and the mount with it, ends with the command.
	cmd := exec.Command("unshare", append([]string{"--mount", "--fork", "chroot", root, "/bin/busybox", "sh", "-c",
		`mount -t proc proc /proc && exec env -i PATH=/sbin:/usr/sbin:/bin:/usr/bin "$@"`, "sh", env}, argv...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chroot %s %v: %v\n%s", root, argv, err, stderr.Bytes())
	}
	return string(out)
}

// TestChrootRun runs the archive's programs with the host's kernel and
// loader: dynamic binaries with their copied libraries, busybox applets
// through their links, and the LAVA version script.
func TestChrootRun(t *testing.T) {
	staticBusybox(t)
	bins := []string{"/bin/ls"}
	if _, err := os.Stat("/usr/bin/curl"); err == nil {
		bins = append(bins, "/usr/bin/curl")
	}
	raw, _ := build(t, Options{Binaries: bins, Version: "2026.05 it's"})
	root := extract(t, raw)
	if out := chroot(t, root, "A=1", "/sbin/lava-master-image-info"); out != "2026.05 it's\n" {
		t.Errorf("lava-master-image-info = %q, want the version", out)
	}
	if out := chroot(t, root, "A=1", "/bin/ls", "/lava"); out != "" {
		t.Errorf("ls /lava = %q, want nothing", out)
	}
	if out := chroot(t, root, "A=1", "sh", "-c", "echo $((6*7)); sha256sum /etc/hostname | cut -c1-8"); !strings.HasPrefix(out, "42\n") {
		t.Errorf("busybox sh = %q, want 42 first", out)
	}
	if len(bins) > 1 {
		if out := chroot(t, root, "A=1", "/usr/bin/curl", "--version"); !strings.HasPrefix(out, "curl ") {
			t.Errorf("curl --version = %q, want curl ...", out)
		}
	}
}

// TestUdhcpcScript runs the DHCP step of /init for real: busybox udhcpc
// with the generated event script gets a lease from a DHCP server (busybox
// udhcpd) over a veth pair in a network namespace of the test's own, then
// the test reads the address, route and resolv.conf it configured.
func TestUdhcpcScript(t *testing.T) {
	staticBusybox(t)
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (util-linux, iproute2)", tool)
		}
	}
	raw, m := build(t, Options{})
	var udhcpd bool
	for _, e := range m.Entries {
		udhcpd = udhcpd || strings.HasSuffix(e.Path, "/udhcpd")
	}
	if !udhcpd {
		t.Skip("this busybox has no udhcpd to serve the lease")
	}
	root := extract(t, raw)
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	inner := strings.Join([]string{
		`mount -t devtmpfs devtmpfs /dev || exit 1`,
		`printf '%s\n' 'start 10.9.8.50' 'end 10.9.8.60' 'interface eth1' 'lease_file /tmp/udhcpd.leases' ` +
			`'option subnet 255.255.255.0' 'option router 10.9.8.1' 'option dns 10.9.8.2 10.9.8.3' ` +
			`'option domain lab.test' >/tmp/udhcpd.conf`,
		`touch /tmp/udhcpd.leases`,
		`udhcpd -f /tmp/udhcpd.conf & pid=$!`,
		`udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 10 -T 1`,
		`rc=$?`,
		`kill $pid; wait $pid`,
		`ip -4 addr show dev eth0; ip route; cat /etc/resolv.conf`,
		`exit $rc`,
	}, "\n")
	outer := `ip link add eth0 type veth peer name eth1 || exit 77
ip addr add 10.9.8.1/24 dev eth1 && ip link set eth1 up && exec chroot "$1" /bin/sh -c "$2"`
	// The namespaces, the links, the /dev mount and udhcpd end with the
	// unshare process.
	cmd := exec.Command("unshare", "--net", "--mount", "sh", "-c", outer, "sh", root, inner)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 77 {
		t.Skipf("no veth links here: %s", out)
	}
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	// udhcpd picks an address of its range 10.9.8.50-60 from the MAC.
	if !regexp.MustCompile(`inet 10\.9\.8\.(5[0-9]|60)/24 `).Match(out) {
		t.Errorf("after the lease: no address of the server's range:\n%s", out)
	}
	for _, want := range []string{"default via 10.9.8.1 dev eth0",
		"search lab.test\nnameserver 10.9.8.2\nnameserver 10.9.8.3\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("after the lease: output lacks %q:\n%s", want, out)
		}
	}
}
