package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/initrd"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/basalt-lab/basalt/runtime/sim"
	"github.com/spf13/cobra"
)

// addLabCommands adds the device, device-type, sim and initrd commands.
func (a *app) addLabCommands(root *cobra.Command) {
	root.AddCommand(a.deviceCmd(), a.deviceTypeCmd(), a.simCmd(), a.initrdCmd())
}

func (a *app) deviceCmd() *cobra.Command {
	var labFlag string
	dev := &cobra.Command{
		Use:   "device",
		Short: "Add, list and show the lab's devices",
		Example: `  basalt device add highbank calxeda02-01 --ipmi-host calxeda02-01-02 --mac fc:2f:40:17:da:28
  basalt device add mx53loco foo -t 4006 -p 5
  basalt device list
  basalt device show calxeda02-01`,
	}
	dev.PersistentFlags().StringVar(&labFlag, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")

	var o lab.AddOptions
	add := &cobra.Command{
		Use:   "add TYPE NAME",
		Short: "Write a device file for a new device",
		Long: `add writes devices/NAME.star in the lab, after checking that TYPE is a known device
type (built-in or the lab's) and that NAME does not exist yet (LAVA's add_device.py
checks). -t PORT makes the console "telnet localhost PORT" (ser2net); -p PORT
powers the device through that port of its PDU: power_command runs pdudaemon's
"pduclient --daemon DAEMON --hostname HOST --command on|off|reboot --port NN"
(--pdu-daemon, default localhost; --pdu-host, default pdu).`,
		Example: "  basalt device add highbank calxeda02-01 --ipmi-host calxeda02-01-02 --ipmi-user admin\n  basalt device add mx53loco foo -t 4006 -p 5",
		Args:    cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := lab.AddDevice(labDir(labFlag), args[0], args[1], o)
			if err != nil {
				return &exitError{code: pipeline.ExitUsage, err: err}
			}
			fmt.Fprintf(a.stdout, "wrote %s\n", path)
			return nil
		},
	}
	add.Flags().StringVar(&o.IPMIHost, "ipmi-host", "", "BMC address")
	add.Flags().StringVar(&o.IPMIUser, "ipmi-user", "", "BMC user")
	add.Flags().StringVar(&o.PasswordEnv, "password-env", "", "environment variable holding the BMC password (default NAME_IPMI_PASSWORD)")
	add.Flags().StringVar(&o.MAC, "mac", "", "MAC address of the boot NIC")
	add.Flags().IntVarP(&o.Ser2netPort, "ser2net-port", "t", 0, "ser2net port: console is `telnet localhost PORT`")
	add.Flags().IntVarP(&o.PDUPort, "pdu-port", "p", 0, "PDU port: power through pdudaemon's pduclient")
	add.Flags().StringVar(&o.PDUHost, "pdu-host", "", "the PDU's name in pdudaemon's config, pduclient --hostname (default pdu)")
	add.Flags().StringVar(&o.PDUDaemon, "pdu-daemon", "", "host pdudaemon runs on, pduclient --daemon (default localhost)")
	add.Flags().StringVar(&o.Console, "console", "", "console transport: sol, command, tcp or sim")
	add.Flags().BoolVar(&o.Force, "force", false, "overwrite an existing device file")

	list := &cobra.Command{
		Use:     "list",
		Short:   "List the lab's devices",
		Example: "  basalt device list --lab ./lab",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			l, err := loadLab(labFlag)
			if err != nil {
				return &exitError{code: exitCodeOf(err), err: err}
			}
			return lab.WriteList(a.stdout, lab.List(l))
		},
	}
	show := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show a device's settings, secrets redacted",
		Example: "  basalt device show highbank01",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			// No secret is read: the password shows as its reference.
			d, err := configDevice(labFlag, args[0])
			if err != nil {
				return &exitError{code: exitCodeOf(err), err: err}
			}
			return lab.FormatDevice(a.stdout, d)
		},
	}
	dev.AddCommand(add, list, show, a.deviceStateCmd(&labFlag, true), a.deviceStateCmd(&labFlag, false))
	return dev
}

func (a *app) simCmd() *cobra.Command {
	var disk string
	c := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated node standalone, for external clients such as ipmitool",
		Long: `sim starts the built-in simulated Highbank node — its BMC (RMCP+ on a free 127.0.0.1
port, with SOL) and a TFTP/HTTP server it PXE-boots from — and prints how to reach
them. It runs until interrupted. With --disk FILE the node's disk is that file (a raw
image, for instance an A/B disk from basalt sim image): what the node writes to it
is there the next time.

basalt sim image builds the disk images the sim boots; see basalt sim image --help.`,
		Example: `  basalt sim
  ipmitool -I lanplus -H 127.0.0.1 -p PORT -U admin -P PASSWORD -C 3 chassis power on`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := a.ctx
			srv := pxe.NewServer(pxe.Config{CacheDir: lab.DefaultCacheDir()})
			if err := srv.Start(ctx); err != nil {
				return &exitError{code: pipeline.ExitInfra, err: err}
			}
			defer srv.Close()
			dev := lab.BuiltinSim("sim")
			dev.Sim.Disk = disk
			node, err := sim.Start(ctx, sim.Config{Device: dev, TFTPAddr: srv.TFTPAddr()})
			if err != nil {
				return &exitError{code: pipeline.ExitInfra, err: err}
			}
			defer node.Close()
			ip := node.IPMI()
			fmt.Fprintf(a.stdout, "BMC      %s:%d (lanplus, cipher suites 17 and 3)\n", ip.Host, ip.Port)
			fmt.Fprintf(a.stdout, "user     %s\npassword %s\n", ip.User, ip.Password.Value())
			fmt.Fprintf(a.stdout, "TFTP     %s\nHTTP     %s\n", srv.TFTPAddr(), srv.HTTPURL())
			fmt.Fprintf(a.stdout, "try      ipmitool -I lanplus -H %s -p %d -U %s -P %s -C 3 chassis power status\n", ip.Host, ip.Port, ip.User, ip.Password.Value())
			<-ctx.Done()
			return nil
		},
	}
	c.Flags().StringVar(&disk, "disk", "", "raw disk image file that is the node's disk, kept when it stops (basalt sim image --out FILE.img)")
	c.AddCommand(a.simImageCmd())
	return c
}

func (a *app) initrdCmd() *cobra.Command {
	var (
		out, version, hostname, prompt, busybox, manifest, modulesDir string
		adds, files, applets, modules                                 []string
		level                                                         int
		noCompress                                                    bool
	)
	build := &cobra.Command{
		Use:   "build -o FILE",
		Short: "Build a master initrd (cpio.gz) from busybox-static and host binaries",
		Long: `build writes a master initrd: a static busybox with its applets, the named host
binaries with their shared libraries (resolved from the ELF headers), an /init that
mounts proc, sys and dev, brings eth0 up by DHCP, writes the version file
(/etc/basalt-master-image-info; /sbin/lava-master-image-info prints it) and starts a
shell on the console. The output is reproducible: the same inputs give the same bytes.

--module NAME (repeatable) adds a kernel module that /init loads with insmod before it
brings eth0 up, together with every module it needs, in dependency order; a
distribution kernel builds most NIC and disk drivers as modules (Debian: e1000,
virtio_pci, virtio_blk). The modules come from --modules-dir, the kernel's
lib/modules/VERSION (from an unpacked linux-image package, for instance): its
modules.dep, or without one the modules' own .modinfo. Built-in modules
(modules.builtin) are skipped; .ko.xz and .ko.gz are stored decompressed.
/init waits basalt.netwait=N seconds (kernel command line, default 5) for eth0,
then runs /etc/rc.local if there is one (--file ./rc.local:/etc/rc.local): the
site's own start-up commands, such as an httpd of the master image's own.`,
		Example: `  basalt initrd build -o master.cpio.gz
  basalt initrd build -o master.cpio.gz --add /usr/bin/wget --add /sbin/parted --version 2026.11
  basalt initrd build -o m.cpio.gz --file ./my-init:/init --manifest=-
  basalt initrd build -o m.cpio.gz --modules-dir ./k/lib/modules/6.1.0-56-amd64 \
      --module e1000 --module virtio_pci --module virtio_blk`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" {
				return usagef("initrd build: -o FILE is required")
			}
			o := initrd.Options{Busybox: busybox, Binaries: adds, Version: version, Hostname: hostname,
				Prompt: prompt, GzipLevel: level, Uncompressed: noCompress, Applets: applets, Files: map[string]string{},
				ModulesDir: modulesDir, Modules: modules}
			if len(modules) > 0 && modulesDir == "" {
				return usagef("initrd build: --module needs --modules-dir")
			}
			for _, f := range files {
				src, dst, ok := strings.Cut(f, ":")
				if !ok || src == "" || dst == "" {
					return usagef("--file %q: want SRC:DEST", f)
				}
				o.Files[src] = dst
			}
			return a.buildInitrd(a.ctx, out, manifest, o)
		},
	}
	build.Flags().StringVarP(&out, "output", "o", "", "output file")
	build.Flags().StringVar(&busybox, "busybox", "", "static busybox to install (default /bin/busybox)")
	build.Flags().StringArrayVar(&adds, "add", nil, "host binary to include with its libraries (repeatable)")
	build.Flags().StringArrayVar(&files, "file", nil, "extra file SRC:DEST (repeatable)")
	build.Flags().StringVar(&modulesDir, "modules-dir", "", "kernel modules directory (lib/modules/VERSION) for --module")
	build.Flags().StringArrayVar(&modules, "module", nil, "kernel module /init loads with its dependencies (repeatable)")
	build.Flags().StringVar(&version, "version", "", "version written to the master image info file")
	build.Flags().StringVar(&hostname, "hostname", "", "hostname of the master image")
	build.Flags().StringVar(&prompt, "prompt", "", "shell prompt (PS1)")
	build.Flags().StringSliceVar(&applets, "applets", nil, "busybox applet links to create (default: all)")
	build.Flags().IntVar(&level, "gzip-level", 0, "gzip level (default: gzip's default)")
	build.Flags().BoolVar(&noCompress, "no-compress", false, "write a bare cpio archive")
	build.Flags().StringVar(&manifest, "manifest", "", "write the manifest (file list and library resolution) to FILE, - for stdout")
	cmd := &cobra.Command{Use: "initrd", Short: "Build master images", Example: "  basalt initrd build -o master.cpio.gz"}
	cmd.AddCommand(build)
	return cmd
}

func (a *app) buildInitrd(ctx context.Context, out, manifest string, o initrd.Options) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".initrd-*")
	if err != nil {
		return &exitError{code: pipeline.ExitInfra, err: err}
	}
	defer os.Remove(tmp.Name())
	m, err := initrd.Build(ctx, tmp, o)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &exitError{code: pipeline.ExitUsage, err: fmt.Errorf("initrd build: %w", err)}
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return &exitError{code: pipeline.ExitInfra, err: err}
	}
	fmt.Fprintf(a.stdout, "wrote %s (%d entries)\n", out, len(m.Entries))
	switch manifest {
	case "":
	case "-":
		m.WriteText(a.stdout)
	default:
		f, err := os.Create(manifest)
		if err != nil {
			return &exitError{code: pipeline.ExitInfra, err: err}
		}
		defer f.Close()
		m.WriteText(f)
	}
	return nil
}
