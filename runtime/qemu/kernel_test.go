package qemu

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKernelPackage(t *testing.T) {
	for _, tt := range []struct{ out, want string }{
		{"linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "linux-image-6.1.0-56-amd64"},
		{"linux-image-amd64\n |Depends: linux-image-6.12.9-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "linux-image-6.12.9-amd64"},
		{"linux-image-amd64\n", ""},
		{"linux-image-amd64\n  Depends: <linux-image-6.1.0-56-amd64>\n", ""},
		{"", ""},
	} {
		if got := kernelPackage(tt.out); got != tt.want {
			t.Errorf("kernelPackage(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}

func TestKernelFromEnv(t *testing.T) {
	dir := t.TempDir()
	vmlinuz := filepath.Join(dir, "vmlinuz-6.1.0-9-amd64")
	mods := filepath.Join(dir, "lib", "modules", "6.1.0-9-amd64")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vmlinuz, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, kernel, mods string
		want               *Kernel
		err                string
	}{
		{name: "unset"},
		{name: "kernel only", kernel: vmlinuz, want: &Kernel{Vmlinuz: vmlinuz, Version: "6.1.0-9-amd64"}},
		{name: "both", kernel: vmlinuz, mods: mods + "/", want: &Kernel{Vmlinuz: vmlinuz, ModulesDir: mods, Version: "6.1.0-9-amd64"}},
		{name: "modules only", mods: mods, err: "BASALT_MODULES_DIR is set without BASALT_KERNEL"},
		{name: "missing kernel", kernel: filepath.Join(dir, "nope"), err: "BASALT_KERNEL"},
		{name: "modules not a dir", kernel: vmlinuz, mods: vmlinuz, err: "is not a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvKernel, tt.kernel)
			t.Setenv(EnvModulesDir, tt.mods)
			got, err := kernelFromEnv()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("kernelFromEnv() = %+v, %v, want error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("kernelFromEnv() (-want +got):\n%s", diff)
			}
			if tt.kernel != "" {
				// DebianKernel returns the same without touching apt.
				k, err := DebianKernel(t.Context(), filepath.Join(dir, "unused"))
				if err != nil || !cmp.Equal(k, tt.want) {
					t.Errorf("DebianKernel with %s set = %+v, %v, want %+v", EnvKernel, k, err, tt.want)
				}
				if _, err := os.Stat(filepath.Join(dir, "unused")); err == nil {
					t.Errorf("DebianKernel with %s set created its dir", EnvKernel)
				}
			}
		})
	}
}

// TestExtractKernel feeds extractKernel a package data tarball shaped like
// Debian's (plus a merged-/usr variant and hostile names) and checks what
// lands on disk.
func TestExtractKernel(t *testing.T) {
	const v = "6.1.0-9-amd64"
	type ent struct {
		name string
		typ  byte
		body string
	}
	tarball := func(es []ent) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, e := range es {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
			if e.typ == tar.TypeDir {
				h.Mode, h.Size = 0o755, 0
			}
			if e.typ == tar.TypeSymlink {
				h.Linkname, h.Size = "/usr/src/linux-headers-"+v, 0
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if e.typ == tar.TypeReg {
				tw.Write([]byte(e.body))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	for _, prefix := range []string{"./", "./usr/"} {
		dir := t.TempDir()
		data := tarball([]ent{
			{"./", tar.TypeDir, ""},
			{"./boot/", tar.TypeDir, ""},
			{"./boot/vmlinuz-" + v, tar.TypeReg, "bzImage"},
			{"./boot/config-" + v, tar.TypeReg, "CONFIG_E1000=m"},
			{prefix + "lib/modules/" + v + "/", tar.TypeDir, ""},
			{prefix + "lib/modules/" + v + "/modules.builtin", tar.TypeReg, "kernel/fs/ext4/ext4.ko\n"},
			{prefix + "lib/modules/" + v + "/kernel/drivers/net/e1000.ko", tar.TypeReg, "ELF e1000"},
			{prefix + "lib/modules/" + v + "/build", tar.TypeSymlink, ""},
			{prefix + "lib/modules/" + v + "/../../../etc/evil", tar.TypeReg, "no"},
			{prefix + "lib/modules/6.1.0-8-amd64/kernel/old.ko", tar.TypeReg, "other kernel"},
			{"./usr/share/doc/linux-image-" + v + "/changelog.gz", tar.TypeReg, "doc"},
		})
		if err := extractKernel(bytes.NewReader(data), dir, v); err != nil {
			t.Fatalf("%s: extractKernel: %v", prefix, err)
		}
		var got []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				r, _ := filepath.Rel(dir, p)
				b, _ := os.ReadFile(p)
				got = append(got, r+"="+string(b))
			}
			return err
		})
		want := []string{
			"boot/vmlinuz-" + v + "=bzImage",
			"lib/modules/" + v + "/kernel/drivers/net/e1000.ko=ELF e1000",
			"lib/modules/" + v + "/modules.builtin=kernel/fs/ext4/ext4.ko\n",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: extracted files (-want +got):\n%s", prefix, diff)
		}
	}
	if err := extractKernel(strings.NewReader(strings.Repeat("x", 1024)), t.TempDir(), v); err == nil {
		t.Errorf("extractKernel(garbage) = nil, want an error")
	}
}
