package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
)

// qemuBMC starts the VM of a qemu device that names no BMC of its own, and
// go-ipmi's BMC in front of it on a free loopback port: chassis power maps
// to QMP, the boot device to the next boot's order, SOL to the VM's serial
// port. The device file's vm_* keys configure the VM:
//
//	vm_tap          tap device the NIC attaches to (created beforehand)
//	vm_netns        network namespace qemu runs in, where the tap lives
//	vm_disk         disk image file, relative to the lab directory; default a
//	                blank temporary disk of vm_disk_mb MiB (default 256)
//	vm_memory_mb    guest RAM (default 512)
//	vm_qemu         emulator binary (default qemu-system-x86_64)
//	vm_kernel, vm_initrd, vm_append
//	                boot this kernel directly instead of the firmware's
//	                boot order (paths relative to the lab directory)
func qemuBMC(ctx context.Context, l *lab.Lab, dev *lab.Device, log *slog.Logger, emit func(string, map[string]any)) (lab.IPMI, func(), error) {
	str := func(k string) string { s, _ := dev.VM[k].(string); return s }
	num := func(k string, def int) int {
		switch v := dev.VM[k].(type) {
		case int:
			return v
		case int64:
			return int(v)
		}
		return def
	}
	tmp, err := os.MkdirTemp("", "basalt-vm-")
	if err != nil {
		return lab.IPMI{}, nil, err
	}
	cleanup := []func(){func() { os.RemoveAll(tmp) }}
	release := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	labPath := func(p string) string {
		if p != "" && !filepath.IsAbs(p) && l != nil && l.Dir != "" {
			return filepath.Join(l.Dir, p)
		}
		return p
	}
	disk := labPath(str("vm_disk"))
	if disk == "" {
		disk = filepath.Join(tmp, "disk.img")
		f, err := os.Create(disk)
		if err == nil {
			err = f.Truncate(int64(num("vm_disk_mb", 256)) << 20)
			f.Close()
		}
		if err != nil {
			release()
			return lab.IPMI{}, nil, err
		}
	}
	var bmc atomic.Pointer[bmcsim.BMC]
	started := time.Now()
	vm, err := qemu.Start(ctx, qemu.Config{
		Qemu:        str("vm_qemu"),
		Memory:      num("vm_memory_mb", 0),
		Disk:        disk,
		Kernel:      labPath(str("vm_kernel")),
		Initrd:      labPath(str("vm_initrd")),
		Append:      str("vm_append"),
		NIC:         qemu.NIC{Tap: str("vm_tap"), MAC: dev.MAC},
		DefaultBoot: qemu.BootDisk,
		NetNS:       str("vm_netns"),
		SerialLog:   filepath.Join(tmp, "serial.log"),
		Log:         log,
		OnEvent: func(ev qemu.Event) {
			// The guest powered itself off: the chassis is off.
			if ev.Name == "SHUTDOWN" {
				if b := bmc.Load(); b != nil {
					b.NodeOff()
				}
			}
			emit("qemu", map[string]any{"event": ev.Name})
		},
	})
	if err != nil {
		release()
		return lab.IPMI{}, nil, fmt.Errorf("start the VM of %s: %w", dev.Name, err)
	}
	cleanup = append(cleanup, func() { vm.Close() })
	b := bmcsim.New(bmcsim.Config{Serial: vm.Serial(), Node: qemu.NewNode(vm), Log: log,
		User: dev.IPMI.User, Password: dev.IPMI.Password.Value()})
	if err := b.Start(ctx, "127.0.0.1:0"); err != nil {
		release()
		return lab.IPMI{}, nil, builtins.Infra(fmt.Errorf("start the BMC of %s: %w", dev.Name, err))
	}
	bmc.Store(b)
	cleanup = append(cleanup, func() { b.Close() })
	// duration_ms: from exec to QMP's greeting, qemu's own start-up
	// (which a bare qemu boot counts as part of the boot).
	emit("qemu", map[string]any{"event": "started", "pid": vm.PID(), "disk": disk, "duration_ms": time.Since(started).Milliseconds()})
	return b.IPMI(), release, nil
}
