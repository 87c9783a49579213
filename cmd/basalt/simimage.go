package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/basalt-lab/basalt/builtins/target/simdisk"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/spf13/cobra"
)

// simImageCmd is `basalt sim image`: it builds the disk images the sim
// device boots, so that no image in a repository is made by hand (and a
// test rebuilds the checked-in ones byte for byte).
func (a *app) simImageCmd() *cobra.Command {
	var (
		out, rootfs, size, osName, kernel, hostname, cmdline string
		slots                                                int
		envs                                                 []string
	)
	c := &cobra.Command{
		Use:   "image --out FILE [--rootfs DIR|TAR] [--slots N] [flags]",
		Short: "Build a disk image for the sim device (a system, or an A/B disk with a boot environment)",
		Long: `image writes a disk image the sim device boots, compressed as FILE's name says
(.img raw, .img.gz, .img.xz). The system's files come from --rootfs: a directory or a
tar archive (regular files only; their paths become the booted system's paths).

Without --slots it is one system (the sim disk format, builtins/target/simdisk): what
target.deploy_image writes to /dev/sda for the firmware to boot, or an update written
to a root slot partition. --size is its raw size (default 4MiB).

With --slots N (1 to 3) it is an A/B disk: an MBR partition table; partition 1 the
bootloader's environment (U-Boot's raw format, read and written on the target with
fw_printenv and fw_setenv; --env NAME=VALUE, default boot_slot=a); partitions 2..N+1
the root slots a, b, ..., each --size bytes, slot a holding the system and the others
blank. The firmware boots the slot boot_slot names (root=/dev/sdaN on the kernel
command line) and the next one when that slot does not verify.

The same flags give the same bytes.`,
		Example: `  basalt sim image --out jobs/images/ab.img.gz --slots 2 --size 1MiB \
      --rootfs jobs/images/src/ab-v1 --os "Basalt Sim Linux 1.0" --cmdline "console=ttyAMA0 ro"
  basalt sim image --out jobs/images/ab-update.img.gz --size 1MiB \
      --rootfs jobs/images/src/ab-v2 --os "Basalt Sim Linux 2.0" --cmdline "console=ttyAMA0 ro"`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" {
				return usagef("sim image: --out FILE is required")
			}
			img := simdisk.Image{OS: osName, Kernel: kernel, Hostname: hostname, Cmdline: cmdline}
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return usagef("sim image: --size %q: %v", size, err)
				}
				img.Size = n
			}
			if rootfs != "" {
				files, err := readRootfs(rootfs)
				if err != nil {
					return usagef("sim image: --rootfs %s: %v", rootfs, err)
				}
				img.Files = files
			}
			var write func(io.Writer) error
			switch {
			case slots == 0:
				if len(envs) > 0 {
					return usagef("sim image: --env needs --slots: only an A/B disk has a boot environment")
				}
				write = func(w io.Writer) error { return simdisk.Write(w, img) }
			case slots < 1 || slots > 3:
				return usagef("sim image: --slots %d: want 1 to 3 (an MBR holds the environment and 3 slots)", slots)
			default:
				d := simdisk.Disk{Slots: make([]*simdisk.Image, slots), SlotSize: img.Size}
				d.Slots[0] = &img
				if len(envs) > 0 {
					d.Env = map[string]string{}
					for _, e := range envs {
						k, v, ok := strings.Cut(e, "=")
						if !ok || k == "" {
							return usagef("sim image: --env %q: want NAME=VALUE", e)
						}
						d.Env[k] = v
					}
				}
				if _, err := d.Layout(); err != nil {
					return usagef("sim image: %v", err)
				}
				write = func(w io.Writer) error { return simdisk.WriteDisk(w, d) }
			}
			// A dry run into io.Discard, which cannot fail: an error is
			// the input's (a size too small for the files), a usage error.
			if err := write(io.Discard); err != nil {
				return usagef("sim image: %v", err)
			}
			if err := writeImage(out, write); err != nil {
				return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("sim image: write %s: %w", out, err)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&out, "out", "", "image file to write (.img, .img.gz, .img.xz)")
	f.StringVar(&rootfs, "rootfs", "", "directory or tar archive with the system's files")
	f.IntVar(&slots, "slots", 0, "write an A/B disk with this many root slots (1-3); 0: one system")
	f.StringVar(&size, "size", "", "raw size of the system, or of each slot (bytes, or with KiB/MiB; default 4MiB)")
	f.StringArrayVar(&envs, "env", nil, "boot environment variable NAME=VALUE of an A/B disk (repeatable; default boot_slot=a)")
	f.StringVar(&osName, "os", "", "pretty name printed at boot (default \"Basalt Sim Linux\")")
	f.StringVar(&kernel, "kernel", "", "kernel release, uname -r (default 3.13.0-sim)")
	f.StringVar(&hostname, "hostname", "", "hostname (default sim)")
	f.StringVar(&cmdline, "cmdline", "", "kernel command line (an A/B disk's firmware appends root=)")
	return c
}

// writeImage writes an image through a temporary file renamed into place,
// compressed as name says.
func writeImage(name string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	werr := simdisk.Compress(tmp, simdisk.CompressionOf(name), write)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// parseSize reads "4194304", "64KiB", "1MiB" (also K, M, KB, MB as powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = v, u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive size in bytes, KiB or MiB")
	}
	return n * mult, nil
}

// readRootfs reads the regular files of a directory or a tar archive,
// keyed by absolute slash path.
func readRootfs(p string) (map[string]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	if fi.IsDir() {
		err := filepath.WalkDir(p, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("%s: not a regular file", name)
			}
			rel, err := filepath.Rel(p, name)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(name)
			if err != nil {
				return err
			}
			files["/"+filepath.ToSlash(rel)] = string(data)
			return nil
		})
		return files, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return nil, fmt.Errorf("%s: only regular files and directories are supported", h.Name)
		}
		name := path.Clean("/" + h.Name)
		data, err := io.ReadAll(io.LimitReader(tr, simdisk.MaxMetaSize+1))
		if err != nil {
			return nil, fmt.Errorf("read tar: %s: %w", h.Name, err)
		}
		files[name] = string(data)
	}
}
