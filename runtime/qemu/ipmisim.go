package qemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// IPMISimConfig describes OpenIPMI's ipmi_sim as the BMC of one VM. See
// [WriteIPMISim].
type IPMISimConfig struct {
	// Addr is the UDP host:port of the BMC's LAN channel (IPMI 1.5 and
	// 2.0/RMCP+), e.g. "127.0.0.1:9623". Required.
	Addr string
	// User and Password are the BMC's administrator (user 2). User
	// defaults to "admin"; Password is required, at most 20 bytes (IPMI
	// v2.0 §13.31). Both are written in plain text to lan.conf.
	User, Password string
	// SerialAddr is the TCP host:port of the VM's second UART (ttyS1,
	// port 0x2f8), a listening qemu chardev ([IPMISim.QemuArgs]) that
	// ipmi_sim's SOL connects to. Required.
	SerialAddr string
	// NIC and Disk say whether the VM has a NIC (Config.NIC.Tap) and a disk
	// (Config.Disk): the boot device becomes their bootindex, as in
	// [VM.PowerOn]. DefaultBoot is Config.DefaultBoot (default
	// [BootDisk]), the order used when no boot device is set.
	NIC, Disk   bool
	DefaultBoot BootDevice
	// Socat is the socat binary the chassis_control script runs. Default
	// "socat".
	Socat string
}

// IPMISim is an ipmi_sim configuration written by [WriteIPMISim].
type IPMISim struct {
	// Dir holds every file below.
	Dir string
	// LanConf is ipmi_sim's configuration (-c; ipmi_lan(5)), Emu its
	// command file (-f; ipmi_sim_cmd(5)), StateDir its state directory
	// (-s).
	LanConf, Emu, StateDir string
	// ChassisControl is the chassis_control script; Boot the file where it
	// keeps the boot device ("none", "pxe", "default", "cdrom", "bios").
	ChassisControl, Boot string
	// QMP is the unix socket of the VM's second QMP monitor, the script's.
	QMP string

	serialHost, serialPort string
}

// WriteIPMISim writes an ipmi_sim configuration for one VM into dir (which
// must exist): lan.conf, sim.emu, a state directory and a chassis_control
// script that drives the VM through a QMP monitor of its own. Start the
// VM with [IPMISim.QemuArgs] in Config.ExtraArgs first, then ipmi_sim with
// [IPMISim.Args]:
//
//	sim, err := qemu.WriteIPMISim(dir, qemu.IPMISimConfig{Addr: "127.0.0.1:9623",
//		Password: pw, SerialAddr: "127.0.0.1:9624"})
//	vm, err := qemu.Start(ctx, qemu.Config{..., Append: "console=ttyS1",
//		ExtraArgs: sim.QemuArgs()})
//	cmd := exec.Command("ipmi_sim", sim.Args()...) // after the VM
//
// ipmi_sim runs the script as "chassis_control 0x20 get power boot" and
// "chassis_control 0x20 set power 1|0 | reset 1 | boot pxe|default|none|
// cdrom|bios | identify I F", blocking while it runs. The script maps
//
//	get power   query-status: 1 when the VM's CPUs run (a guest poweroff,
//	            which pauses the VM, reads 0)
//	set power 1 qom-set bootindex, system_reset, cont (nothing if running)
//	set power 0 stop, system_reset
//	set reset 1 qom-set bootindex, system_reset
//	set boot X  keeps X in the Boot file (pxe: NIC first, default: disk
//	            first, others: DefaultBoot) for the next power on or reset
//	get boot    the Boot file, which ipmi_sim reports as boot parameter 5
//
// and sends them with socat, one connection per call; qemu answers each
// command in order before it handles the connection's end. ipmi_sim sets
// the boot device through the script at once (Set System Boot Options,
// parameter 5) and keeps nothing itself, so the device stays set, as if
// persistent, until the next set.
//
// The VM's first UART (ttyS0, [VM.Serial]) stays basalt's: the firmware
// (SeaBIOS, iPXE) writes there, so over ipmi_sim's SOL only what the
// kernel writes to ttyS1 is seen (console=ttyS1), as on servers whose SOL
// is their second serial port.
func WriteIPMISim(dir string, cfg IPMISimConfig) (*IPMISim, error) {
	if cfg.User == "" {
		cfg.User = "admin"
	}
	if cfg.Socat == "" {
		cfg.Socat = "socat"
	}
	if cfg.DefaultBoot == BootDefault {
		cfg.DefaultBoot = BootDisk
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("qemu: ipmi_sim addr: %w", err)
	}
	shost, sport, err := net.SplitHostPort(cfg.SerialAddr)
	if err != nil {
		return nil, fmt.Errorf("qemu: ipmi_sim serial addr: %w", err)
	}
	if cfg.DefaultBoot != BootDisk && cfg.DefaultBoot != BootPXE {
		return nil, fmt.Errorf("qemu: ipmi_sim default boot %q, want disk or pxe", cfg.DefaultBoot)
	}
	if cfg.Password == "" || len(cfg.Password) > 20 || len(cfg.User) > 16 {
		// No value in the message: it may be the password.
		return nil, errors.New("qemu: ipmi_sim: want a user of at most 16 bytes and a password of 1 to 20 bytes")
	}
	// lan.conf strings are double-quoted without escapes and the script
	// quotes paths with single quotes; ipmi_sim splits chassis_control's
	// command line on blanks. Refuse what would need escaping.
	for _, v := range []string{cfg.User, cfg.Password, host, shost, cfg.Socat, dir} {
		if strings.ContainsAny(v, "\"' \t\n\r\\,") {
			return nil, errors.New("qemu: ipmi_sim: quotes, blanks, commas and backslashes are not supported in the user, password, addresses, socat path or directory")
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("qemu: ipmi_sim: %w", err)
	}
	s := &IPMISim{
		Dir:            dir,
		LanConf:        filepath.Join(dir, "lan.conf"),
		Emu:            filepath.Join(dir, "sim.emu"),
		StateDir:       filepath.Join(dir, "state"),
		ChassisControl: filepath.Join(dir, "chassis_control"),
		Boot:           filepath.Join(dir, "boot"),
		QMP:            filepath.Join(dir, "bmc-qmp.sock"),
		serialHost:     shost,
		serialPort:     sport,
	}
	conf := fmt.Sprintf(`# ipmi_sim configuration written by basalt's runtime/qemu.WriteIPMISim; see ipmi_lan(5).
name "basalt"
set_working_mc 0x20
  startlan 1
    addr %s %s
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  sol "tcp:%s:%s" 115200
  user 2 true "%s" "%s" admin 10 none md2 md5 straight
`, host, port, s.ChassisControl, shost, sport, cfg.User, cfg.Password)
	// A BMC at 0x20 with chassis device support (bit 7 of 0x9f) and no
	// sensors; see ipmi_sim_cmd(5), mc_add.
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
	if err := os.Mkdir(s.StateDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("qemu: ipmi_sim: %w", err)
	}
	for _, f := range []struct {
		path, body string
		mode       os.FileMode
	}{
		{s.LanConf, conf, 0o600},
		{s.Emu, emu, 0o644},
		{s.ChassisControl, chassisScript(s, cfg), 0o755},
	} {
		if err := os.WriteFile(f.path, []byte(f.body), f.mode); err != nil {
			return nil, fmt.Errorf("qemu: ipmi_sim: %w", err)
		}
	}
	return s, nil
}

// QemuArgs are the arguments to add to the VM's Config.ExtraArgs: the
// script's QMP monitor (qemu allows one client per monitor and the VM
// keeps its own) and ttyS1 as a TCP server for ipmi_sim's SOL, with
// Nagle's algorithm off (nodelay=on): qemu writes the guest's output a
// few bytes at a time, and with Nagle each small write after the first
// waits for the peer's delayed ACK, up to 40 ms on Linux — a round trip
// of target.run("true") took 44 ms instead of 5.
func (s *IPMISim) QemuArgs() []string {
	return []string{
		"-qmp", "unix:" + s.QMP + ",server=on,wait=off",
		"-chardev", "socket,id=basalt-sol0,host=" + s.serialHost + ",port=" + s.serialPort + ",server=on,wait=off,nodelay=on",
		"-serial", "chardev:basalt-sol0",
	}
}

// Args is ipmi_sim's command line (without the binary). Start ipmi_sim
// after the VM: its SOL connects to ttyS1 at start-up and, failing that,
// retries only every 10 s.
func (s *IPMISim) Args() []string {
	return []string{"-c", s.LanConf, "-f", s.Emu, "-n", "-s", s.StateDir}
}

// chassisScript returns the chassis_control program for s.
func chassisScript(s *IPMISim, cfg IPMISimConfig) string {
	// The qom-set commands that put one device first, as setBootOrder.
	order := func(boot BootDevice) string {
		nicIdx, diskIdx := bootIndexes(boot)
		var ids []string
		var idx []int
		if cfg.NIC {
			ids, idx = append(ids, nicID), append(idx, nicIdx)
		}
		if cfg.Disk {
			ids, idx = append(ids, diskID), append(idx, diskIdx)
		}
		var b strings.Builder
		set := func(id string, i int) {
			fmt.Fprintf(&b, `{"execute":"qom-set","arguments":{"path":"/machine/peripheral/%s","property":"bootindex","value":%d}}`+"\n", id, i)
		}
		for _, id := range ids {
			set(id, -1) // qemu refuses an index another device holds
		}
		for i, id := range ids {
			set(id, idx[i])
		}
		return b.String()
	}
	return fmt.Sprintf(`#!/bin/sh
# ipmi_sim's chassis_control for a basalt qemu VM, written by
# runtime/qemu.WriteIPMISim. ipmi_sim runs it as
#   chassis_control MC get PARM...        prints PARM:VALUE per PARM
#   chassis_control MC set PARM VALUE...  prints nothing on success
# Errors go to stdout with exit status 1. One long-lived qemu, driven over
# QMP with socat: power cycles never restart it.
qmp_sock='%s'
boot_file='%s'
socat='%s'
boot_pxe='%s'
boot_disk='%s'
boot_default='%s'

# qmp reads QMP commands from stdin, one per line; "qmp print" prints the
# answers. qemu handles a connection's commands in order before its end.
qmp() {
	out=$({ echo '{"execute":"qmp_capabilities"}'; cat; } | "$socat" -t 10 - "UNIX-CONNECT:$qmp_sock" 2>&1) || {
		echo "qmp: $out" | tr '\n' ' '; echo; exit 1
	}
	case $out in *'"error"'*) echo "qmp: $out" | tr '\n' ' '; echo; exit 1 ;; esac
	[ "$1" = print ] && printf '%%s\n' "$out"
	return 0
}

# state prints 1 when the VM's CPUs run, else 0.
state() {
	st=$(echo '{"execute":"query-status"}' | qmp print) || { echo "$st"; exit 1; }
	case $st in *'"running": true'*|*'"running":true'*) echo 1 ;; *) echo 0 ;; esac
}

order() {
	case $(cat "$boot_file" 2>/dev/null) in
	pxe) printf '%%s' "$boot_pxe" ;;
	default) printf '%%s' "$boot_disk" ;;
	*) printf '%%s' "$boot_default" ;;
	esac
}

[ $# -ge 2 ] || { echo "usage: $0 MC get|set PARM..."; exit 1; }
shift
op=$1
shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power) st=$(state) || { echo "$st"; exit 1; }; echo "power:$st" ;;
		boot) echo "boot:$(cat "$boot_file" 2>/dev/null || echo none)" ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done ;;
set)
	while [ $# -gt 0 ]; do
		p=$1
		[ $# -ge 2 ] || { echo "No value present for parameter $p"; exit 1; }
		v=$2
		shift 2
		case $p in
		power)
			if [ "$v" = 1 ]; then
				st=$(state) || { echo "$st"; exit 1; }
				[ "$st" = 1 ] || { order; echo '{"execute":"system_reset"}'; echo '{"execute":"cont"}'; } | qmp || exit 1
			else
				printf '%%s\n' '{"execute":"stop"}' '{"execute":"system_reset"}' | qmp || exit 1
			fi ;;
		reset)
			{ order; echo '{"execute":"system_reset"}'; } | qmp || exit 1 ;;
		boot)
			case $v in
			none|pxe|default|cdrom|bios) echo "$v" >"$boot_file" ;;
			*) echo "Invalid boot value: $v"; exit 1 ;;
			esac ;;
		identify) [ $# -gt 0 ] && shift ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done ;;
*) echo "Unknown operation: $op"; exit 1 ;;
esac
`, s.QMP, s.Boot, cfg.Socat, order(BootPXE), order(BootDisk), order(cfg.DefaultBoot))
}
