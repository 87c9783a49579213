package qemu

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Kernel is a Debian kernel unpacked from its linux-image package.
type Kernel struct {
	// Vmlinuz is the kernel image (DIR/boot/vmlinuz-VERSION).
	Vmlinuz string
	// ModulesDir is its modules directory (DIR/lib/modules/VERSION), the
	// initrd's Options.ModulesDir. With depmod on the host it holds a
	// modules.dep; without, runtime/initrd reads the modules' .modinfo.
	// "" when $BASALT_KERNEL is set without $BASALT_MODULES_DIR.
	ModulesDir string
	// Version is the kernel release ("6.1.0-56-amd64").
	Version string
}

// ErrNoKernel is wrapped by the errors of [DebianKernel] that mean no
// kernel package can be had here (no apt, no package lists, no mirror), as
// opposed to one that could not be unpacked. Tests skip on it.
var ErrNoKernel = errors.New("no Debian kernel package")

// Environment variables [DebianKernel] honours.
const (
	// EnvKernel names a vmlinuz to use instead of downloading one.
	EnvKernel = "BASALT_KERNEL"
	// EnvModulesDir names the lib/modules/VERSION of that kernel.
	EnvModulesDir = "BASALT_MODULES_DIR"
)

// DebianKernel returns the current Debian kernel for this machine's
// architecture, unpacked into dir. It asks apt which package
// linux-image-amd64 depends on (apt-cache depends), fetches that package
// into dir (apt-get download: nothing is installed, no root needed beyond
// reading apt's lists), unpacks its boot/vmlinuz-* and lib/modules tree
// (about 400 MB for Debian 12's 6.1 kernel, ~3 s), removes the .deb and,
// when depmod is found, writes modules.dep with depmod -b dir (the
// package ships none: depmod normally runs at install). A dir that already
// holds the same kernel, unpacked by an earlier call, is reused.
//
// $BASALT_KERNEL (a vmlinuz) skips all of that; $BASALT_MODULES_DIR then
// gives its modules directory, whose base name is the version.
func DebianKernel(ctx context.Context, dir string) (*Kernel, error) {
	if k, err := kernelFromEnv(); k != nil || err != nil {
		return k, err
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return nil, fmt.Errorf("qemu: apt-cache depends linux-image-amd64: %v: %w (run apt-get update, or set %s)", err, ErrNoKernel, EnvKernel)
	}
	pkg := kernelPackage(string(out))
	if pkg == "" {
		return nil, fmt.Errorf("qemu: apt-cache depends linux-image-amd64 names no kernel package: %w (run apt-get update, or set %s)", ErrNoKernel, EnvKernel)
	}
	version := strings.TrimPrefix(pkg, "linux-image-")
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	k := &Kernel{
		Vmlinuz:    filepath.Join(dir, "boot", "vmlinuz-"+version),
		ModulesDir: filepath.Join(dir, "lib", "modules", version),
		Version:    version,
	}
	done := filepath.Join(dir, ".basalt-kernel-"+version)
	if _, err := os.Stat(done); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}

	get := exec.CommandContext(ctx, "apt-get", "download", pkg)
	get.Dir = dir
	if out, err := get.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu: apt-get download %s: %v: %w\n%s", pkg, err, ErrNoKernel, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("qemu: apt-get download %s left %q, want one .deb", pkg, debs)
	}
	defer os.Remove(debs[0])
	if err := unpackKernel(ctx, debs[0], dir, version); err != nil {
		return nil, fmt.Errorf("qemu: unpack %s: %w", filepath.Base(debs[0]), err)
	}
	for _, p := range []string{k.Vmlinuz, k.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", pkg, err)
		}
	}
	if dm := depmodPath(); dm != "" {
		if out, err := exec.CommandContext(ctx, dm, "-b", dir, version).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu: depmod -b %s %s: %v\n%s", dir, version, err, out)
		}
	}
	if err := os.WriteFile(done, []byte(pkg+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	return k, nil
}

// kernelFromEnv returns the kernel $BASALT_KERNEL names, or nil, nil when
// it is unset.
func kernelFromEnv() (*Kernel, error) {
	vmlinuz, mods := os.Getenv(EnvKernel), os.Getenv(EnvModulesDir)
	if vmlinuz == "" {
		if mods != "" {
			return nil, fmt.Errorf("qemu: %s is set without %s", EnvModulesDir, EnvKernel)
		}
		return nil, nil
	}
	k := &Kernel{Vmlinuz: vmlinuz, Version: strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")}
	if _, err := os.Stat(vmlinuz); err != nil {
		return nil, fmt.Errorf("qemu: %s: %w", EnvKernel, err)
	}
	if mods != "" {
		fi, err := os.Stat(mods)
		if err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", EnvModulesDir, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("qemu: %s: %s is not a directory", EnvModulesDir, mods)
		}
		k.ModulesDir = filepath.Clean(mods)
		k.Version = filepath.Base(k.ModulesDir)
	}
	return k, nil
}

// kernelPackage picks the versioned kernel package out of
// `apt-cache depends linux-image-amd64` ("  Depends: linux-image-6.1.0-56-amd64").
func kernelPackage(out string) string {
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "linux-image-") && f != "linux-image-amd64" && strings.HasSuffix(f, "-amd64") &&
			!strings.ContainsAny(f, "/<>|") {
			return f
		}
	}
	return ""
}

// depmodPath finds depmod, which lives in /sbin (kmod) and may be off a
// user's PATH.
func depmodPath() string {
	if p, err := exec.LookPath("depmod"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// unpackKernel extracts boot/vmlinuz-VERSION and the lib/modules/VERSION
// tree (or usr/lib/modules/VERSION, stored as lib/modules) of a
// linux-image .deb into dir, reading `dpkg-deb --fsys-tarfile`.
func unpackKernel(ctx context.Context, deb, dir, version string) error {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := extractKernel(out, dir, version); err != nil {
		cmd.Process.Kill() // by PID: the dpkg-deb started above
		cmd.Wait()
		return err
	}
	io.Copy(io.Discard, out) // the tar's end padding: let dpkg-deb finish writing
	werr := cmd.Wait()
	if werr != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile: %v: %s", werr, stderr.Bytes())
	}
	return nil
}

// extractKernel writes the kernel's files from a package's data tarball
// under dir. Only regular files and directories are written; the modules
// tree's symlinks (build, source: the headers) are left out.
func extractKernel(r io.Reader, dir, version string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		// Clean resolves "..", so a name that still has the prefix below
		// stays inside dir.
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		name = strings.TrimPrefix(name, "usr/") // merged /usr packages
		if name != "boot/vmlinuz-"+version && name != "lib/modules/"+version &&
			!strings.HasPrefix(name, "lib/modules/"+version+"/") {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := writeFile(dst, tr, h.FileInfo().Mode().Perm()); err != nil {
				return err
			}
		}
	}
}

func writeFile(dst string, r io.Reader, perm os.FileMode) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
