// Package sim assembles the built-in `sim` device: a simulated Highbank node
// in the process that speaks the real protocols on 127.0.0.1. Its BMC is
// go-ipmi's server (bmcsim, RMCP+ over UDP) with SOL carried to a simulated
// serial line (serialsim); on power-on its firmware PXE-boots over TFTP from
// basalt's pxe server (pxesim) or boots the disk image written to its disk
// file (simdisk), and the booted system runs a real shell interpreter
// (simshell) on the console.
//
// Faults from the device file (lab.SimFaults) are injected here: console
// drops (the BMC closes the SOL session), UDP loss at the BMC, keystrokes
// dropped when typed too fast to the bootloader, a PXE boot failure and a
// kernel panic.
package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/pxe/pxesim"
	"github.com/basalt-lab/basalt/builtins/pxe/ubootsim"
	"github.com/basalt-lab/basalt/builtins/sol/serialsim"
	"github.com/basalt-lab/basalt/builtins/target/simdisk"
	"github.com/basalt-lab/basalt/builtins/target/simshell"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
)

// MasterPrompt is the shell prompt of the sim's PXE-booted master image; the
// sim device type's master_prompt matches it.
const MasterPrompt = "(sim-initramfs) "

// DiskSize is the size of the node's blank disk.
const DiskSize = 256 << 20

// Config configures a node.
type Config struct {
	Device *lab.Device
	// TFTPAddr is basalt's TFTP server, which the site DHCP would name.
	TFTPAddr string
	// Dir holds the node's disk and filesystems; default a temporary
	// directory removed by Close.
	Dir  string
	Emit func(typ string, fields map[string]any)
	Log  *slog.Logger
	// Segment is the job's netns segment (device segment = "netns"):
	// U-Boot's NIC is a veth on its bridge and gets its address from the
	// DHCP server there. nil: loopback only, no DHCP server reachable.
	Segment *qemu.NetNS
}

// Node is one simulated board.
type Node struct {
	cfg    Config
	line   *serialsim.Line
	bmc    *bmcsim.BMC
	dir    string
	ownDir bool
	ip     string // of the target's eth0, where its servers listen
	disk   string
	tty    *ttyMux
	hooks  simshell.Hooks // of the boot being set up; used only by run's goroutine
	// ubootEnv is U-Boot's saved environment (sim = {"bootloader":
	// "u-boot"}): it outlives power cycles, as NVRAM does, for the node's
	// life.
	ubootEnv *ubootsim.Store
	nic      *nic // on the job's segment; nil on loopback

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	boots  int
	closed bool
}

// Start creates the node and starts its BMC on a free loopback port. The
// node is powered off.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Device == nil {
		cfg.Device = lab.BuiltinSim("sim")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// A loopback address of its own (Linux routes all of 127/8 to lo), so
	// that what its shell listens on (a master image's httpd on port 80)
	// cannot collide with another node's.
	n := &Node{cfg: cfg, dir: cfg.Dir, ubootEnv: &ubootsim.Store{}, ip: fmt.Sprintf("127.%d.%d.%d", 100+mrand.IntN(100), mrand.IntN(256), 1+mrand.IntN(254))}
	if n.dir == "" {
		d, err := os.MkdirTemp("", "basalt-sim-")
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		n.dir, n.ownDir = d, true
	}
	n.disk = filepath.Join(n.dir, "sda.img")
	if d := cfg.Device.Sim.Disk; d != "" {
		// The device's own disk file, which outlives the node as a
		// board's disk outlives a job. Never truncated: a missing one is
		// a blank disk of DiskSize bytes.
		n.disk = d
		f, err := os.OpenFile(d, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			n.removeDir()
			return nil, fmt.Errorf("sim: disk: %w", err)
		}
		if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
			f.Truncate(DiskSize)
		}
		f.Close()
	} else if f, err := os.OpenFile(n.disk, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		// A blank disk of DiskSize bytes (sparse): readable, not bootable.
		f.Truncate(DiskSize)
		f.Close()
	}
	f := cfg.Device.Sim
	n.line = serialsim.New(serialsim.Config{TypeInterval: f.TypeInterval,
		// Output nobody read (no console attached while the node printed
		// more than the line and the BMC hold) is gone, as from a real
		// UART: say so, as a console gap, instead of dropping it silently.
		// One event at the first drop and one per 64 KiB after it, not one
		// per write.
		OnOverflow: func(dropped, total int64) {
			if reported := total - dropped; reported != 0 && reported/(64<<10) == total/(64<<10) {
				return
			}
			n.emit("console_gap", map[string]any{"source": "sim serial line", "reason": "serial line buffer overrun",
				"dropped_bytes": dropped, "dropped_total": total})
		}})
	n.tty = newTTYMux(n.line.Device())
	// A sim device file may set the BMC's user and password; by default
	// they are admin and a random one.
	n.bmc = bmcsim.New(bmcsim.Config{Serial: n.line.Host(), Node: n, Loss: f.UDPLoss, SOLLoss: f.SOLLoss, Log: cfg.Log,
		User: cfg.Device.IPMI.User, Password: cfg.Device.IPMI.Password.Value(), SessionTimeout: f.SessionTimeout})
	if err := n.bmc.Start(ctx, "127.0.0.1:0"); err != nil {
		n.line.Close()
		n.removeDir()
		return nil, fmt.Errorf("sim: start BMC: %w", err)
	}
	if cfg.Segment != nil {
		nc, err := newNIC(cfg.Segment, cfg.Device.MAC)
		if err != nil {
			n.bmc.Close()
			n.line.Close()
			n.removeDir()
			return nil, err
		}
		n.nic = nc
	}
	if f.ConsoleDrops > 0 {
		go n.dropConsole(f.ConsoleDrops, cmp.Or(f.ConsoleDropInterval, 400*time.Millisecond))
	}
	return n, nil
}

// IP is the target's address, a loopback address of the node's own.
func (n *Node) IP() string { return n.ip }

// masterHTTPD is what the master image's init runs with the device option
// sim = {"master_httpd": True}: busybox httpd on port 80 serving a document
// root of its own, as an initrd that runs `httpd -p 80 -h /srv` does (the
// qemu e2e lab boots one).
const masterHTTPD = "mkdir -p /srv && echo 'master image web root' > /srv/index.html && httpd -p 80 -h /srv"

// IPMI is how to reach the node's BMC. A device file that sets
// ipmi_timeout_ms or ipmi_retries away from the lab defaults keeps them
// (a quiet LAN's BMC answers well inside 2 s); otherwise the sim's own
// loopback figures apply.
func (n *Node) IPMI() lab.IPMI {
	ip := n.bmc.IPMI()
	d := n.cfg.Device.IPMI
	if d.Timeout > 0 && d.Timeout != lab.DefaultIPMITimeout {
		ip.Timeout = d.Timeout
	}
	if d.Retries > 0 && d.Retries != lab.DefaultIPMIRetries {
		ip.Retries = d.Retries
	}
	return ip
}

// BMC returns the node's BMC.
func (n *Node) BMC() *bmcsim.BMC { return n.bmc }

// Line returns the node's serial line.
func (n *Node) Line() *serialsim.Line { return n.line }

// Disk is the host file that is the node's disk.
func (n *Node) Disk() string { return n.disk }

// SetTFTPAddr changes the TFTP server the firmware boots from.
func (n *Node) SetTFTPAddr(addr string) {
	n.mu.Lock()
	n.cfg.TFTPAddr = addr
	n.mu.Unlock()
}

// Close powers the node off and releases everything.
func (n *Node) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.stop()
	err := n.bmc.Close()
	n.line.Close()
	n.removeDir()
	if n.nic != nil {
		err = errors.Join(err, n.nic.close())
	}
	return err
}

func (n *Node) removeDir() {
	if n.ownDir {
		os.RemoveAll(n.dir)
	}
}

func (n *Node) emit(typ string, f map[string]any) {
	if n.cfg.Emit != nil {
		n.cfg.Emit(typ, f)
	}
}

// PowerOn implements bmcsim.Node. The node boots in a goroutine of its
// own, under the node's lifetime rather than the request's ctx. A closed
// node refuses.
func (n *Node) PowerOn(_ context.Context, boot bmcsim.BootDevice) error { return n.start(boot) }

// PowerOff implements bmcsim.Node.
func (n *Node) PowerOff(context.Context) error {
	n.stop()
	return nil
}

// Reset implements bmcsim.Node.
func (n *Node) Reset(_ context.Context, boot bmcsim.BootDevice) error {
	n.stop()
	return n.start(boot)
}

// errClosed refuses power to a closed node.
var errClosed = errors.New("sim node is closed")

func (n *Node) start(boot bmcsim.BootDevice) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	if n.cancel != nil {
		return nil // running already
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.cancel, n.done = cancel, done
	n.boots++
	go func() {
		defer close(done)
		n.run(ctx, boot)
	}()
	return nil
}

func (n *Node) stop() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel, n.done = nil, nil
	n.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// dropConsole closes the SOL session count times: every interval, if a
// session is up, as a BMC does whose other console keeps taking over.
func (n *Node) dropConsole(count int, interval time.Duration) {
	for dropped := 0; dropped < count; {
		time.Sleep(interval)
		n.mu.Lock()
		closed := n.closed
		n.mu.Unlock()
		if closed {
			return
		}
		if n.bmc.SOLActive() {
			n.bmc.DropSOL()
			dropped++
			n.emit("sim_fault", map[string]any{"fault": "console_drop", "count": dropped})
		}
	}
}

// kexecImage is what `kexec -e` hands over.
type kexecImage struct {
	kernel, initrd []byte
	append         string
}

// run is the node from power-on until power-off: firmware, boot, OS, and
// again after reboot or kexec.
func (n *Node) run(ctx context.Context, boot bmcsim.BootDevice) {
	out := n.tty.writer()
	fmt.Fprintf(out, "\r\nbasalt sim Highbank firmware (ECX-1000), boot device: %s\r\n", bootName(boot))
	var kx *kexecImage
	for ctx.Err() == nil {
		var ub *ubootsim.Boot
		if kx == nil && n.cfg.Device.Sim.Bootloader == "u-boot" {
			b, err := n.uboot(ctx)
			switch {
			case err == nil:
				ub = b
			case errors.Is(err, ubootsim.ErrAutoboot):
				// The countdown ran out: the BMC's boot device.
			case errors.Is(err, ubootsim.ErrReset):
				fmt.Fprintf(out, "\r\nbasalt sim Highbank firmware (ECX-1000), boot device: %s\r\n", bootName(boot))
				continue
			default:
				return // powered off
			}
		}
		// Each booted system reads the console through a tty of its own,
		// so a read left pending by the previous one cannot take its keys.
		bootCtx, endBoot := context.WithCancel(ctx)
		tty := n.tty.attach(bootCtx)
		var sh *simshell.Shell
		var err error
		var next *kexecImage
		n.hooks = simshell.Hooks{
			Kexec: func(k, i []byte, a string) { next = &kexecImage{kernel: k, initrd: i, append: a} },
		}
		switch {
		case kx != nil:
			sh, err = n.kexecBoot(ctx, out, kx)
			kx = nil
		case ub != nil:
			sh, err = n.ubootKernel(out, ub)
		case boot == bmcsim.BootPXE:
			sh, err = n.pxeBoot(ctx, out)
		default:
			sh, err = n.diskBoot(ctx, tty, out)
		}
		if err != nil {
			// What real firmware does after a failed boot: nothing.
			n.cfg.Log.Debug("sim boot failed", "err", err)
			<-ctx.Done()
			endBoot()
			n.tty.detach(tty)
			return
		}
		err = sh.Serve(ctx, tty)
		sh.Close()
		endBoot()
		n.tty.detach(tty)
		switch {
		case errors.Is(err, simshell.ErrKexec):
			kx = next
			fmt.Fprintf(out, "kexec_core: Starting new kernel\r\n")
		case errors.Is(err, simshell.ErrReboot):
			fmt.Fprintf(out, "reboot: Restarting system\r\n")
			dev, _ := n.bmc.BootDevice()
			boot = dev
			fmt.Fprintf(out, "\r\nbasalt sim Highbank firmware (ECX-1000), boot device: %s\r\n", bootName(boot))
		case errors.Is(err, simshell.ErrPoweroff):
			fmt.Fprintf(out, "reboot: Power down\r\n")
			n.bmc.NodeOff()
			go n.stop() // release our own slot; stop waits for this goroutine
			return
		default:
			return
		}
	}
}

// uboot runs the node's U-Boot on a tty of its own, which ends with it, so
// that the system it boots reads the keys typed after.
func (n *Node) uboot(ctx context.Context) (*ubootsim.Boot, error) {
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tty := n.tty.attach(uctx)
	defer n.tty.detach(tty)
	n.line.SetDropFast(true)
	defer n.line.SetDropFast(false)
	n.mu.Lock()
	tftp := n.cfg.TFTPAddr
	n.mu.Unlock()
	server, _, _ := net.SplitHostPort(tftp)
	// On loopback no DHCP server is reachable (nor may a broadcast leave
	// this host): the board has no Link, so dhcp broadcasts nothing and
	// gives up as U-Boot does when nobody answers, and its default
	// environment holds a static address instead (CONFIG_IPADDR,
	// CONFIG_SERVERIP): its own loopback address and basalt's TFTP server.
	cfg := ubootsim.Config{Console: tty, Store: n.ubootEnv, MAC: n.cfg.Device.MAC, IP: n.ip, ServerIP: server}
	if n.nic != nil {
		// On the job's segment: a NIC there, the address from its DHCP.
		cfg.IP, cfg.ServerIP, cfg.Link = "", "", n.nic.link
	}
	b, err := ubootsim.Run(uctx, cfg)
	if err == nil {
		n.emit("sim_uboot", map[string]any{"command": b.Command, "kernel_bytes": len(b.Kernel), "initrd_bytes": len(b.Initrd), "bootargs": b.Bootargs})
	}
	return b, err
}

// ubootKernel is the kernel U-Boot started: with an initrd, the master
// image (as from PXE); without one, a kernel that finds no root, as Linux
// does.
func (n *Node) ubootKernel(out io.Writer, b *ubootsim.Boot) (*simshell.Shell, error) {
	n.emit("sim_boot", map[string]any{"from": "u-boot", "command": b.Command, "append": b.Bootargs})
	if err := n.kernelLog(out, b.Command, b.Bootargs); err != nil {
		return nil, err
	}
	if b.Initrd == nil {
		fmt.Fprintf(out, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n")
		return nil, errors.New("no initrd")
	}
	fmt.Fprintf(out, "Begin: Running /scripts/init-premount ... done.\r\n")
	fmt.Fprintf(out, "(initramfs) is the master image; BusyBox v1.36.1 built-in shell (ash)\r\n")
	return n.shell("master", b.Bootargs, MasterPrompt, nil, n.masterInit())
}

func bootName(b bmcsim.BootDevice) string {
	if b == "" {
		return "default (disk)"
	}
	return string(b)
}

func (n *Node) bootDir() (string, error) {
	n.mu.Lock()
	i := n.boots
	n.mu.Unlock()
	d := filepath.Join(n.dir, fmt.Sprintf("root-%d-%d", i, time.Now().UnixNano()))
	return d, os.MkdirAll(d, 0o755)
}

func (n *Node) pxeBoot(ctx context.Context, out io.Writer) (*simshell.Shell, error) {
	n.line.SetDropFast(true)
	defer n.line.SetDropFast(false)
	n.mu.Lock()
	tftp := n.cfg.TFTPAddr
	n.mu.Unlock()
	dev := n.cfg.Device
	if dev.Sim.BootFailure || tftp == "" {
		fmt.Fprintf(out, "PXE-E53: No boot filename received\r\n\r\nPXE-M0F: Exiting PXE ROM.\r\n")
		return nil, errors.New("no boot filename")
	}
	booted, err := pxesim.Boot(ctx, pxesim.Config{TFTPAddr: tftp, MAC: dev.MAC, Console: out})
	if err != nil {
		return nil, err
	}
	n.emit("sim_boot", map[string]any{"from": "pxe", "config": booted.Config, "kernel_sha256": booted.Kernel.SHA256, "nonce": booted.Nonce})
	if err := n.kernelLog(out, booted.Kernel.Name, booted.Append); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Begin: Running /scripts/init-premount ... done.\r\n")
	fmt.Fprintf(out, "(initramfs) is the master image; BusyBox v1.36.1 built-in shell (ash)\r\n")
	return n.shell("master", booted.Append, MasterPrompt, nil, n.masterInit())
}

// masterInit is the init script of the master image.
func (n *Node) masterInit() string {
	if n.cfg.Device.Sim.MasterHTTPD {
		return masterHTTPD
	}
	return ""
}

func (n *Node) kexecBoot(ctx context.Context, out io.Writer, kx *kexecImage) (*simshell.Shell, error) {
	n.emit("sim_boot", map[string]any{"from": "kexec", "kernel_bytes": len(kx.kernel)})
	if err := n.kernelLog(out, "kexec", kx.append); err != nil {
		return nil, err
	}
	return n.shell("master", kx.append, MasterPrompt, nil, n.masterInit())
}

func (n *Node) diskBoot(ctx context.Context, tty io.Reader, out io.Writer) (*simshell.Shell, error) {
	img, cmdline, err := n.loadDisk(out)
	if err != nil {
		fmt.Fprintf(out, "No bootable device found (%v).\r\n", err)
		n.emit("sim_boot", map[string]any{"from": "disk", "error": err.Error()})
		return nil, err
	}
	if err := n.kernelLog(out, "vmlinuz-"+img.Kernel, cmdline); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "\r\n%s %s ttyAMA0\r\n\r\n", img.OS, img.Hostname)
	// getty: a login prompt that takes any user.
	for {
		fmt.Fprintf(out, "%s", img.Login)
		line, err := readLine(ctx, tty, out)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(line) != "" {
			break
		}
	}
	fmt.Fprintf(out, "Welcome to %s\r\n", img.OS)
	return n.shell(img.Hostname, cmdline, img.Prompt, img, "")
}

// loadDisk finds what the disk boots and its kernel command line: on an
// A/B disk (simdisk.ReadAB: an MBR with a U-Boot environment partition)
// the slot the environment names, else the image at the start of the disk.
func (n *Node) loadDisk(out io.Writer) (*simdisk.Image, string, error) {
	if f, err := os.Open(n.disk); err == nil {
		defer f.Close()
		if ab, err := simdisk.ReadAB(f); err == nil {
			return n.bootSlot(f, ab, out)
		}
	}
	img, err := simdisk.Read(n.disk)
	if err != nil {
		return nil, "", err
	}
	n.emit("sim_boot", map[string]any{"from": "disk", "os": img.OS, "kernel": img.Kernel})
	return img, img.Cmdline, nil
}

// bootSlot is the boot script of an A/B board, modelled on RAUC's U-Boot
// integration (contrib/uboot.sh in rauc: try the slots in BOOT_ORDER, boot
// the first whose kernel loads, append its root= to bootargs) reduced to
// one variable: boot_slot names the slot to try first, the others follow
// in order. A slot whose image does not verify (blank, corrupt) is skipped
// with a message on the console, so a bad update falls back to the old
// slot without the environment changing: the booted system sees
// boot_slot=b and root=/dev/sda2, and must swing the flag back itself
// (RAUC's script would also count down BOOT_B_LEFT and saveenv; this one
// writes nothing). A bad environment CRC is U-Boot's "using default
// environment": boot_slot=a.
func (n *Node) bootSlot(disk io.ReaderAt, ab *simdisk.ABDisk, out io.Writer) (*simdisk.Image, string, error) {
	want := "a"
	if ab.Env == nil {
		fmt.Fprintf(out, "*** Warning - bad CRC, using default environment\r\n\r\n")
	} else if v := ab.Env["boot_slot"]; v != "" {
		want = v
	}
	slots := ab.Slots()
	order := []int{}
	if i := simdisk.SlotIndex(want); i >= 0 && i < len(slots) {
		order = append(order, i)
	} else {
		fmt.Fprintf(out, "boot_slot=%s: no such slot, trying them in order\r\n", want)
	}
	for i := range slots {
		if len(order) == 0 || i != order[0] {
			order = append(order, i)
		}
	}
	var errs []error
	for k, i := range order {
		part := ab.Parts[slots[i]]
		dev := fmt.Sprintf("/dev/sda%d", slots[i]+1)
		img, err := simdisk.Decode(io.NewSectionReader(disk, part.Start, part.Size))
		if err != nil {
			fmt.Fprintf(out, "slot %s (%s): %v\r\n", simdisk.SlotName(i), dev, err)
			errs = append(errs, fmt.Errorf("slot %s: %w", simdisk.SlotName(i), err))
			continue
		}
		fmt.Fprintf(out, "Booting slot %s from %s\r\n", simdisk.SlotName(i), dev)
		n.emit("sim_boot", map[string]any{"from": "disk", "slot": simdisk.SlotName(i), "boot_slot": want,
			"fallback": k > 0, "os": img.OS, "kernel": img.Kernel})
		return img, strings.TrimSpace(img.Cmdline + " root=" + dev), nil
	}
	// One line for the console's "No bootable device found (...)".
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return nil, "", fmt.Errorf("%w: %s", simdisk.ErrNoBootableDevice, strings.Join(msgs, "; "))
}

func (n *Node) kernelLog(out io.Writer, kernel, cmdline string) error {
	fmt.Fprintf(out, "Booting Linux on physical CPU 0x0\r\n")
	fmt.Fprintf(out, "Linux version 3.13.0-sim (%s) #1 SMP\r\n", kernel)
	fmt.Fprintf(out, "Kernel command line: %s\r\n", cmdline)
	fmt.Fprintf(out, "Freeing unused kernel memory: 412K\r\n")
	if n.cfg.Device.Sim.KernelPanic {
		fmt.Fprintf(out, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n")
		fmt.Fprintf(out, "---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n")
		return errors.New("kernel panic")
	}
	return nil
}

func (n *Node) shell(host, cmdline, prompt string, img *simdisk.Image, init string) (*simshell.Shell, error) {
	root, err := n.bootDir()
	if err != nil {
		return nil, err
	}
	if img != nil {
		for p, content := range img.Files {
			dst := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(p, "/")))
			if rel, err := filepath.Rel(root, dst); err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			os.MkdirAll(filepath.Dir(dst), 0o755)
			os.WriteFile(dst, []byte(content), 0o644)
		}
	}
	return simshell.New(simshell.Config{
		Root:     root,
		Disks:    map[string]string{"/dev/sda": n.disk},
		Cmdline:  cmdline,
		Hostname: host,
		IP:       n.ip,
		MAC:      n.cfg.Device.MAC,
		Init:     init,
		Prompt:   prompt,
		Hooks:    n.hooks,
		Emit:     n.cfg.Emit,
		Log:      n.cfg.Log,
	})
}

// readLine reads one line from the console, echoing it like a tty.
func readLine(ctx context.Context, r io.Reader, echo io.Writer) (string, error) {
	var sb strings.Builder
	buf := make([]byte, 1)
	for {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		k, err := r.Read(buf)
		if err != nil {
			return "", err
		}
		if k == 0 {
			continue
		}
		c := buf[0]
		switch c {
		case '\r', '\n':
			echo.Write([]byte("\r\n"))
			return sb.String(), nil
		default:
			echo.Write(buf[:1])
			sb.WriteByte(c)
		}
	}
}
