// Package qemu is basalt's qemu lab: a real kernel booting in a qemu VM
// whose BMC is basalt's own (package bmcsim, go-ipmi's server) or
// OpenIPMI's ipmi_sim, whose NIC PXE-boots through Debian's iPXE option ROM
// from basalt's TFTP/HTTP/proxy DHCP servers, and whose serial port is the
// console.
//
// # VM
//
// [Start] runs one long-lived qemu per VM (TCG by default: KVM is not
// assumed). It starts paused (-S), which is "powered off"; power cycles
// never restart the process, so the serial line and QMP stay connected and
// a BMC such as OpenIPMI's ipmi_sim, which reconnects its SOL backend only
// every 10 s, never loses it. The command line ([Args]) is
//
//	-nodefaults -no-user-config -accel tcg -cpu max -m 512
//	-display none -vga none -S -action shutdown=pause
//	-qmp unix:DIR/qmp.sock,server=on,wait=off
//	-chardev socket,id=basalt-serial0,path=DIR/serial.sock,server=on,wait=off
//	-serial chardev:basalt-serial0
//	-fw_cfg name=etc/sercon-port,file=DIR/sercon-port   (2 bytes: f8 03)
//	[-kernel K -initrd I -append A]
//	[-drive file=D,format=raw,if=none,id=basalt-drive0
//	 -device virtio-blk-pci,drive=basalt-drive0,id=basalt-disk0,bootindex=1]
//	[-netdev tap,id=basalt-net0,ifname=TAP,script=no,downscript=no
//	 -device e1000,netdev=basalt-net0,mac=MAC,id=basalt-nic0,bootindex=2]
//
// etc/sercon-port makes SeaBIOS copy its screen, and with it the int 10h
// output of option ROMs such as iPXE, to the UART at 0x3f8, so with no
// display the firmware is still visible on the serial console. SeaBIOS
// reads the entry as a little-endian integer of 1, 2, 4 or 8 bytes, so
// "string=0x3f8" (five ASCII bytes) is silently ignored; the file form with
// the bytes f8 03 works (qemu warns that the name lacks the "opt/" prefix;
// SeaBIOS wants this exact name). -device e1000 loads its romfile efi-e1000.rom,
// which qemu finds in /usr/lib/ipxe/qemu (Debian's ipxe-qemu; see
// "qemu-system-x86_64 -L help"); it holds both the BIOS and the EFI iPXE.
//
// A guest poweroff pauses the VM (-action shutdown=pause) instead of ending
// qemu; a guest reboot resets it as usual.
//
// # Power and boot device
//
//	power on   qom-set bootindex, system_reset (wait for RESET), cont
//	power off  stop, system_reset (wait for RESET)
//	reset      qom-set bootindex, system_reset (the VM keeps running)
//
// The boot device of one boot is the bootindex property of the NIC and the
// disk, changed over QMP (qom-set /machine/peripheral/basalt-nic0
// bootindex N). qemu rebuilds the "bootorder" fw_cfg file SeaBIOS reads at
// every machine reset, so a change made before the reset that starts a
// boot applies to that boot; -boot, fixed at start, is not used. pxe puts
// the NIC first, disk the disk; bios and cdrom keep [Config.DefaultBoot].
// A direct kernel (-kernel) boots first whatever the order.
//
// [Node] plugs a VM into bmcsim as its bmcsim.Node; give the BMC
// [VM.Serial] as its serial port and SOL carries ttyS0.
//
// # OpenIPMI's ipmi_sim as the BMC
//
// An independent BMC can stand in for bmcsim: [WriteIPMISim] writes an
// ipmi_sim configuration for one VM (lan.conf, sim.emu, a state directory
// and a chassis_control shell script) and [IPMISim.QemuArgs] the qemu
// arguments it needs, for Config.ExtraArgs:
//
//	-qmp unix:DIR/bmc-qmp.sock,server=on,wait=off
//	-chardev socket,id=basalt-sol0,host=H,port=P,server=on,wait=off,nodelay=on
//	-serial chardev:basalt-sol0
//
// The script maps ipmi_sim's "chassis_control 0x20 get|set PARM [VALUE]"
// to QMP commands sent with socat on that second monitor (qemu serves one
// client per monitor, and the VM keeps the first): power on is qom-set
// bootindex, system_reset and cont, power off stop and system_reset, reset
// qom-set bootindex and system_reset, power state query-status. The one
// qemu process lives through every power cycle, which matters here:
// ipmi_sim's SOL connects to its serial backend at start-up and, once that
// fails, retries only every 10 s. Start the VM first, then ipmi_sim with
// [IPMISim.Args].
//
// ipmi_sim's SOL carries the second UART, ttyS1 (a TCP server chardev;
// lan.conf: sol "tcp:H:P" 115200), so the kernel needs console=ttyS1; the
// first, ttyS0 with the firmware's output, stays [VM.Serial]. ipmi_sim
// hands the boot device (Set System Boot Options, parameter 5) to the
// script at once and keeps nothing itself; the script keeps it in a file,
// reports it back ("ipmitool chassis bootparam get 5") and applies it at
// each power on and reset until it is set again.
//
// # Network
//
// [NewNetNS] makes a network namespace with a bridge and a tap. Start the
// VM with Config.NetNS and NIC.Tap set, and start basalt's PXE server
// inside [NetNS.Exec] bound to the bridge address. The site DHCP server of
// an isolated segment can be dnsmasq started with [NetNS.Command] (with
// --enable-ra, so iPXE does not wait ~16 s for IPv6); builtins/pxe's proxy
// DHCP then adds the boot file.
//
// # Kernel
//
// [DebianKernel] fetches the current Debian kernel package with apt-get
// download and unpacks its vmlinuz and modules tree without installing
// anything ($BASALT_KERNEL and $BASALT_MODULES_DIR name a kernel instead).
// Debian builds e1000, virtio_pci and virtio_blk as modules, so a master
// initrd that needs eth0 or /dev/vda carries them: runtime/initrd's
// Options.ModulesDir = Kernel.ModulesDir and Options.Modules = {"e1000",
// "virtio_pci", "virtio_blk"}; its /init loads them, and their
// dependencies, before it looks for eth0. A direct boot without a NIC
// passes basalt.netwait=0 on the kernel command line so /init does not
// wait for one.
package qemu
