package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
)

// Config describes one VM. Its zero value is not bootable: give it a
// kernel (direct boot), a disk or a NIC.
type Config struct {
	// Qemu is the emulator binary. Default "qemu-system-x86_64".
	Qemu string
	// Accel is the -accel value. Default "tcg" (KVM is not assumed).
	Accel string
	// CPU is the -cpu model. Default "max".
	CPU string
	// Memory is the guest RAM in MiB. Default 512.
	Memory int

	// Kernel, Initrd and Append boot a kernel directly (qemu's -kernel),
	// bypassing the boot order: the firmware runs qemu's linuxboot option
	// ROM before any disk or NIC.
	Kernel, Initrd, Append string

	// Disk is a raw disk image file. DiskModel is its qemu device:
	// "virtio-blk-pci" (default) or "ide-hd".
	Disk      string
	DiskModel string

	// NIC, when NIC.Tap is set, attaches the VM to that tap device.
	NIC NIC

	// DefaultBoot is where the VM boots when no boot device override is
	// given ([BootDefault]): [BootDisk] (default) or [BootPXE].
	DefaultBoot BootDevice

	// NetNS, when set, runs qemu inside that named network namespace
	// ("ip netns exec NetNS qemu ..."), where its tap lives.
	NetNS string

	// SerialLog, when set, is a file qemu copies the serial output to.
	SerialLog string

	// ExtraArgs are appended to qemu's command line.
	ExtraArgs []string

	// Log receives the VM's life cycle at debug level; nil discards.
	Log *slog.Logger
	// OnEvent, when set, receives every QMP event (SHUTDOWN, RESET, STOP,
	// RESUME ...). It runs on the QMP reader and must not block.
	OnEvent func(Event)
}

// NIC is the VM's network card.
type NIC struct {
	// Tap is the host tap device (created beforehand, e.g. by [NewNetNS]).
	Tap string
	// MAC is the card's address. Default 52:54:00:12:34:56.
	MAC string
	// Model is the qemu device. Default "e1000", whose option ROM (qemu's
	// romfile property, efi-e1000.rom: a combined BIOS and EFI iPXE image
	// from Debian's ipxe-qemu) gives SeaBIOS a PXE boot entry.
	Model string
}

// BootDevice is where a boot starts: bmcsim's type, so a BMC's boot
// override passes through unchanged.
type BootDevice = bmcsim.BootDevice

// Boot devices understood by [VM.PowerOn] and [VM.Reset]; others (bios,
// cdrom) boot in the default order.
const (
	BootDefault = bmcsim.BootDefault
	BootPXE     = bmcsim.BootPXE
	BootDisk    = bmcsim.BootDisk
)

// Device ids on qemu's command line; QOM paths /machine/peripheral/<id>.
const (
	nicID  = "basalt-nic0"
	diskID = "basalt-disk0"
)

// VM is one qemu process. It starts paused, which is "powered off": power
// cycles stop, reset and continue the same process, so the serial line and
// QMP stay connected for the VM's whole life.
type VM struct {
	cfg    Config
	log    *slog.Logger
	dir    string
	cmd    *exec.Cmd
	qmp    *QMP
	serial net.Conn
	exited chan struct{}
	werr   error // set before exited closes
	stderr *tailBuffer

	opMu sync.Mutex // serialises power operations

	closeOnce sync.Once
	closeErr  error
}

// withDefaults fills in the defaults documented on Config.
func (c Config) withDefaults() Config {
	if c.Qemu == "" {
		c.Qemu = "qemu-system-x86_64"
	}
	if c.Accel == "" {
		c.Accel = "tcg"
	}
	if c.CPU == "" {
		c.CPU = "max"
	}
	if c.Memory <= 0 {
		c.Memory = 512
	}
	if c.DiskModel == "" {
		c.DiskModel = "virtio-blk-pci"
	}
	if c.NIC.Tap != "" {
		if c.NIC.MAC == "" {
			c.NIC.MAC = "52:54:00:12:34:56"
		}
		if c.NIC.Model == "" {
			c.NIC.Model = "e1000"
		}
	}
	if c.DefaultBoot == BootDefault {
		c.DefaultBoot = BootDisk
	}
	return c
}

// Args returns qemu's command line for cfg (without the binary), with the
// QMP and serial sockets in dir. Exposed for documentation and tests.
func Args(cfg Config, dir string) ([]string, error) {
	cfg = cfg.withDefaults()
	if cfg.DefaultBoot != BootDisk && cfg.DefaultBoot != BootPXE {
		return nil, fmt.Errorf("qemu: default boot %q, want disk or pxe", cfg.DefaultBoot)
	}
	if cfg.DiskModel != "virtio-blk-pci" && cfg.DiskModel != "ide-hd" {
		return nil, fmt.Errorf("qemu: disk model %q, want virtio-blk-pci or ide-hd", cfg.DiskModel)
	}
	for _, v := range []string{cfg.Kernel, cfg.Initrd, cfg.Disk, cfg.SerialLog, cfg.NIC.Tap, cfg.NIC.MAC, cfg.NIC.Model} {
		// qemu's option syntax splits on commas (doubled to escape);
		// refuse rather than escape, these are paths and names we choose.
		if strings.Contains(v, ",") {
			return nil, fmt.Errorf("qemu: %q: commas are not supported", v)
		}
	}
	if _, err := net.ParseMAC(cfg.NIC.MAC); cfg.NIC.Tap != "" && err != nil {
		return nil, fmt.Errorf("qemu: nic mac: %w", err)
	}
	serial := "socket,id=basalt-serial0,path=" + filepath.Join(dir, "serial.sock") + ",server=on,wait=off"
	if cfg.SerialLog != "" {
		serial += ",logfile=" + cfg.SerialLog
	}
	args := []string{
		"-nodefaults", "-no-user-config",
		"-name", "basalt",
		"-accel", cfg.Accel,
		"-cpu", cfg.CPU,
		"-m", strconv.Itoa(cfg.Memory),
		"-display", "none", "-vga", "none",
		// Start paused: a VM that has not been powered on.
		"-S",
		// A guest poweroff pauses the VM instead of ending qemu, so the
		// next power on reuses the process.
		"-action", "shutdown=pause",
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
		"-chardev", serial,
		"-serial", "chardev:basalt-serial0",
		// SeaBIOS copies its screen (and the option ROMs' int 10h output,
		// iPXE's included) to this UART: a 2-byte little-endian integer,
		// which is what romfile_loadint wants ("string=0x3f8" would be
		// five ASCII bytes and ignored).
		"-fw_cfg", "name=etc/sercon-port,file=" + filepath.Join(dir, "sercon-port"),
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel)
		if cfg.Initrd != "" {
			args = append(args, "-initrd", cfg.Initrd)
		}
		if cfg.Append != "" {
			args = append(args, "-append", cfg.Append)
		}
	}
	nicIdx, diskIdx := bootIndexes(cfg.DefaultBoot)
	if cfg.Disk != "" {
		args = append(args,
			"-drive", "file="+cfg.Disk+",format=raw,if=none,id=basalt-drive0",
			"-device", cfg.DiskModel+",drive=basalt-drive0,id="+diskID+",bootindex="+strconv.Itoa(diskIdx))
	}
	if cfg.NIC.Tap != "" {
		args = append(args,
			"-netdev", "tap,id=basalt-net0,ifname="+cfg.NIC.Tap+",script=no,downscript=no",
			"-device", cfg.NIC.Model+",netdev=basalt-net0,mac="+cfg.NIC.MAC+",id="+nicID+",bootindex="+strconv.Itoa(nicIdx))
	}
	return append(args, cfg.ExtraArgs...), nil
}

// bootIndexes returns the bootindex of the NIC and the disk when boot goes
// first. Index 0 is left to qemu's -kernel option ROM.
func bootIndexes(boot BootDevice) (nic, disk int) {
	if boot == BootPXE {
		return 1, 2
	}
	return 2, 1
}

// Start starts qemu paused and connects to its QMP and serial sockets.
// ctx bounds the start-up only; the VM runs until Close.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	cfg = cfg.withDefaults()
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "basalt-qemu-")
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	args, err := Args(cfg, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "sercon-port"), []byte{0xf8, 0x03}, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("qemu: %w", err)
	}
	bin := cfg.Qemu
	if cfg.NetNS != "" {
		args = append([]string{"netns", "exec", cfg.NetNS, bin}, args...)
		bin = "ip"
	}
	vm := &VM{cfg: cfg, log: log, dir: dir, exited: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	vm.cmd = exec.Command(bin, args...)
	vm.cmd.Stdout = vm.stderr
	vm.cmd.Stderr = vm.stderr
	// qemu must not outlive a crashed basalt. "ip netns exec" execs qemu
	// in the same process, which keeps the signal.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log.Debug("qemu: start", "cmd", vm.cmd.String())
	if err := vm.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("qemu: start %s: %w", bin, err)
	}
	go func() {
		vm.werr = vm.cmd.Wait()
		close(vm.exited)
	}()
	if err := vm.connect(ctx); err != nil {
		vm.Close()
		return nil, err
	}
	log.Debug("qemu: started", "pid", vm.cmd.Process.Pid)
	return vm, nil
}

// connect waits for qemu's sockets and connects to both.
func (vm *VM) connect(ctx context.Context) error {
	qmpPath := filepath.Join(vm.dir, "qmp.sock")
	for {
		q, err := DialQMP(ctx, qmpPath, vm.cfg.OnEvent)
		if err == nil {
			vm.qmp = q
			break
		}
		select {
		case <-vm.exited:
			return fmt.Errorf("qemu: exited at start-up (%v): %s", vm.werr, vm.stderr.String())
		case <-ctx.Done():
			return fmt.Errorf("qemu: waiting for QMP: %w (last: %v)", ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
			// qemu creates its QMP socket a few hundred ms after exec
			// under TCG; each poll period is start-up time of every job.
		}
	}
	// Both sockets exist once QMP answers: qemu creates its chardevs
	// before it starts its monitor.
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(vm.dir, "serial.sock"))
	if err != nil {
		return fmt.Errorf("qemu: serial: %w", err)
	}
	vm.serial = c
	return nil
}

// Serial is the VM's first UART (ttyS0, port 0x3f8): reads return what the
// guest writes, writes are what it reads. It stays connected across power
// cycles and resets.
func (vm *VM) Serial() io.ReadWriter { return vm.serial }

// QMP is the VM's QMP client.
func (vm *VM) QMP() *QMP { return vm.qmp }

// PID is the qemu process id.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Exited is closed once qemu has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Status returns qemu's run state (query-status).
func (vm *VM) Status(ctx context.Context) (Status, error) { return vm.qmp.QueryStatus(ctx) }

// PowerState reports whether the VM is "on": its CPUs are running.
func (vm *VM) PowerState(ctx context.Context) (bool, error) {
	s, err := vm.Status(ctx)
	return s.Running, err
}

// The power mapping. qemu keeps one process; "off" is a stopped VM whose
// machine has been reset, so that it starts from its firmware when it
// runs again:
//
//	power on   set boot order, system_reset, wait for RESET, cont
//	power off  stop, system_reset, wait for RESET
//	reset      set boot order, system_reset (stays running)
//
// The boot order is the bootindex property of the NIC and the disk
// (qom-set /machine/peripheral/<id> bootindex); qemu rebuilds the
// "bootorder" fw_cfg file SeaBIOS reads at every machine reset, so the
// change takes effect at the reset that follows.

// PowerOn boots the VM from boot (BootDefault: Config.DefaultBoot). A VM
// that is already running is left alone, as a BMC does.
func (vm *VM) PowerOn(ctx context.Context, boot BootDevice) error {
	vm.opMu.Lock()
	defer vm.opMu.Unlock()
	s, err := vm.qmp.QueryStatus(ctx)
	if err != nil {
		return fmt.Errorf("qemu: power on: %w", err)
	}
	if s.Running {
		return nil
	}
	if err := vm.setBootOrder(ctx, boot); err != nil {
		return fmt.Errorf("qemu: power on: %w", err)
	}
	if err := vm.reset(ctx); err != nil {
		return fmt.Errorf("qemu: power on: %w", err)
	}
	if _, err := vm.qmp.Execute(ctx, "cont", nil); err != nil {
		return fmt.Errorf("qemu: power on: %w", err)
	}
	vm.log.Debug("qemu: powered on", "boot", boot.String())
	return nil
}

// PowerOff stops the VM's CPUs and resets the machine.
func (vm *VM) PowerOff(ctx context.Context) error {
	vm.opMu.Lock()
	defer vm.opMu.Unlock()
	if _, err := vm.qmp.Execute(ctx, "stop", nil); err != nil {
		return fmt.Errorf("qemu: power off: %w", err)
	}
	if err := vm.reset(ctx); err != nil {
		return fmt.Errorf("qemu: power off: %w", err)
	}
	vm.log.Debug("qemu: powered off")
	return nil
}

// Reset restarts a running VM, which boots from boot.
func (vm *VM) Reset(ctx context.Context, boot BootDevice) error {
	vm.opMu.Lock()
	defer vm.opMu.Unlock()
	if err := vm.setBootOrder(ctx, boot); err != nil {
		return fmt.Errorf("qemu: reset: %w", err)
	}
	if err := vm.reset(ctx); err != nil {
		return fmt.Errorf("qemu: reset: %w", err)
	}
	vm.log.Debug("qemu: reset", "boot", boot.String())
	return nil
}

// reset runs system_reset and waits until the machine has been reset: the
// command only requests it.
func (vm *VM) reset(ctx context.Context) error {
	ev, unsub := vm.qmp.Subscribe("RESET")
	defer unsub()
	if _, err := vm.qmp.Execute(ctx, "system_reset", nil); err != nil {
		return err
	}
	for {
		select {
		case e := <-ev:
			// A guest reboot in flight can report its own RESET first.
			var d struct {
				Guest bool `json:"guest"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.Guest {
				continue
			}
			return nil
		case <-vm.qmp.Done():
			return vm.qmp.Err()
		case <-ctx.Done():
			return fmt.Errorf("waiting for RESET: %w", ctx.Err())
		}
	}
}

// setBootOrder puts the device for boot first.
func (vm *VM) setBootOrder(ctx context.Context, boot BootDevice) error {
	switch boot {
	case BootDefault:
		boot = vm.cfg.DefaultBoot
	case BootPXE, BootDisk:
	default:
		// bios, cdrom: nothing to put first; keep the default order.
		vm.log.Debug("qemu: boot device not modelled, using the default order", "boot", boot.String())
		boot = vm.cfg.DefaultBoot
	}
	nicIdx, diskIdx := bootIndexes(boot)
	var set []struct {
		id  string
		idx int
	}
	if vm.cfg.NIC.Tap != "" {
		set = append(set, struct {
			id  string
			idx int
		}{nicID, nicIdx})
	}
	if vm.cfg.Disk != "" {
		set = append(set, struct {
			id  string
			idx int
		}{diskID, diskIdx})
	}
	// qemu refuses a bootindex another device holds; clear them first
	// (-1 is "no index").
	for _, d := range set {
		if err := vm.qomSetBootIndex(ctx, d.id, -1); err != nil {
			return err
		}
	}
	for _, d := range set {
		if err := vm.qomSetBootIndex(ctx, d.id, d.idx); err != nil {
			return err
		}
	}
	return nil
}

func (vm *VM) qomSetBootIndex(ctx context.Context, id string, idx int) error {
	_, err := vm.qmp.Execute(ctx, "qom-set", map[string]any{
		"path": "/machine/peripheral/" + id, "property": "bootindex", "value": idx,
	})
	return err
}

// BootIndex returns the bootindex property of the NIC ("nic") or disk
// ("disk").
func (vm *VM) BootIndex(ctx context.Context, dev string) (int, error) {
	id := map[string]string{"nic": nicID, "disk": diskID}[dev]
	if id == "" {
		return 0, fmt.Errorf("qemu: no device %q", dev)
	}
	ret, err := vm.qmp.Execute(ctx, "qom-get", map[string]any{"path": "/machine/peripheral/" + id, "property": "bootindex"})
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(ret)))
}

// Close ends qemu (QMP quit, then SIGKILL after 5 s) and removes its
// sockets.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		if vm.qmp != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = vm.qmp.Execute(ctx, "quit", nil) // the connection may drop before the answer
			cancel()
		}
		select {
		case <-vm.exited:
		case <-time.After(5 * time.Second):
			_ = vm.cmd.Process.Kill() // by PID: the one process we started
			<-vm.exited
		}
		if vm.qmp != nil {
			vm.qmp.Close()
		}
		if vm.serial != nil {
			vm.serial.Close()
		}
		var ee *exec.ExitError
		if vm.werr != nil && !errors.As(vm.werr, &ee) {
			vm.closeErr = vm.werr
		}
		if err := os.RemoveAll(vm.dir); err != nil && vm.closeErr == nil {
			vm.closeErr = err
		}
	})
	return vm.closeErr
}

// Output returns the end of qemu's own stdout and stderr (not the guest's).
func (vm *VM) Output() string { return vm.stderr.String() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
