package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/spf13/cobra"
)

func (a *app) shellCmd() *cobra.Command {
	var f runFlags
	var kernel, initrd string
	var keep bool
	c := &cobra.Command{
		Use:   "shell DEVICE [--kernel K --initrd I] [--keep]",
		Short: "PXE-boot the master image on a device and attach its console",
		Long: `shell is the seeds' "Debugging with initrd": it serves the master image for the
device's MAC (--kernel and --initrd, else the device type's facts master_kernel and
master_initrd), selects PXE, powers the device on, waits for the master prompt and
attaches the console as basalt console does (~. detaches). On detach it powers the
device off, unless --keep. On the sim device it boots the sim's master image.
It runs as a job (boot, then the session, then the cleanup): it locks the device and
writes a bundle (--out) with the session's console.log.`,
		Example: `  basalt shell highbank01 --kernel vmlinuz --initrd initrd.gz
  basalt shell sim`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return a.shell(args[0], kernel, initrd, keep, &f)
		},
	}
	c.Flags().StringVar(&f.lab, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")
	c.Flags().StringVar(&kernel, "kernel", "", "master kernel (default the device type's master_kernel fact)")
	c.Flags().StringVar(&initrd, "initrd", "", "master initrd (default the device type's master_initrd fact)")
	c.Flags().BoolVar(&keep, "keep", false, "leave the device powered on after detaching")
	c.Flags().StringVar(&f.out, "out", "", "bundle directory (default results/shell-DEVICE-<UTC timestamp>)")
	c.Flags().DurationVar(&f.wait, "wait", 0, "wait up to this long for a busy device instead of failing at once")
	return c
}

func (a *app) shell(name, kernel, initrd string, keep bool, f *runFlags) error {
	_, dev, err := lookupDevice(f.lab, name, false)
	if err != nil {
		return &exitError{code: exitCodeOf(err), err: err}
	}
	dir, err := os.MkdirTemp("", "basalt-shell-")
	if err != nil {
		return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("create shell job: %w", err)}
	}
	defer os.RemoveAll(dir)
	fact := func(k string) string {
		if dev.Type == nil {
			return ""
		}
		v, _ := dev.Type.Facts[k].(string)
		if v != "" && !filepath.IsAbs(v) && dev.Type.File != "" {
			v = filepath.Join(filepath.Dir(dev.Type.File), v)
		}
		return v
	}
	if kernel == "" {
		kernel = fact("master_kernel")
	}
	if initrd == "" {
		initrd = fact("master_initrd")
	}
	if dev.Type.Is("sim") && kernel == "" && initrd == "" {
		// The sim's PXE client boots whatever it is served into its
		// master shell.
		os.WriteFile(filepath.Join(dir, "kernel"), []byte("basalt sim master kernel\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "initrd"), []byte("basalt sim master initrd\n"), 0o644)
	} else {
		if kernel == "" || initrd == "" {
			return usagef("shell %s: give --kernel and --initrd (device type %s has no master_kernel and master_initrd facts)", dev.Name, dev.Type.Name)
		}
		for src, dst := range map[string]string{kernel: "kernel", initrd: "initrd"} {
			if err := linkOrCopy(src, filepath.Join(dir, dst)); err != nil {
				return usagef("shell %s: %v", dev.Name, err)
			}
		}
	}
	cleanup := "cleanup(master.power_off)\n"
	if keep {
		cleanup = ""
	}
	job := fmt.Sprintf(`load("@stdlib//master.star", "master")
job(name = %s, timeout = "15m", params = {"kernel": "kernel", "initrd": "initrd"})
def boot(ctx):
    master.boot(ctx)
stage("boot", boot)
%s`, strconv.Quote("shell-"+dev.Name), cleanup)
	file := filepath.Join(dir, "shell.star")
	if err := os.WriteFile(file, []byte(job), 0o644); err != nil {
		return &exitError{code: pipeline.ExitInfra, err: fmt.Errorf("create shell job: %w", err)}
	}
	f.device = name
	f.follow = true // the boot and the session, as they happen
	var sessionErr error
	f.session = func(o pipeline.Outcome, con *sol.Console) {
		if o.Status != pipeline.StatusPass || con == nil {
			return
		}
		// The prompt the boot waited for, so the person sees where they are.
		fmt.Fprintf(a.stderr, "basalt: %s is at its master prompt; ~. detaches", dev.Name)
		if !keep {
			fmt.Fprintf(a.stderr, " and powers it off")
		}
		fmt.Fprintf(a.stderr, "\r\n")
		ctx, cancel := context.WithCancel(a.ctx)
		defer cancel()
		con.Send(ctx, "\n", sol.SendOptions{DelaySet: true})
		sessionErr = a.attach(ctx, con)
		fmt.Fprintf(a.stderr, "\r\nbasalt: detached from %s\r\n", dev.Name)
	}
	err = a.runJob(file, f)
	if err == nil {
		err = sessionErr
	}
	return err
}

// linkOrCopy puts src at dst: a hard link where it can, else a copy.
func linkOrCopy(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("master image: %w", err)
	}
	if os.Link(src, dst) == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("master image: %w", err)
	}
	return os.WriteFile(dst, b, 0o644)
}
