package initrd

import (
	"fmt"
	"strings"
)

// shq quotes s for a POSIX shell.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// initScript is /init. The kernel runs it as PID 1 with the console on
// fds 0-2. It prepares the system, then hands PID 1 to busybox init, which
// reaps orphans, respawns the console shell and turns the signals sent by
// reboot/poweroff into the real thing (a shell as PID 1 would ignore them).
//
// Modules are loaded before eth0 is looked for, one line each on the
// console. /init waits basalt.netwait=N seconds (kernel command line,
// default 5) for eth0 to appear; a boot without a NIC passes 0. Once the
// network is up it runs /etc/rc.local, if the archive has one.
func initScript(cttyhack bool, libPath string, mods []Module) string {
	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/sh
# /init of a basalt master image, written by "basalt initrd build".
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
`)
	if libPath != "" {
		fmt.Fprintf(&b, "export LD_LIBRARY_PATH=%s\n", shq(libPath))
	}
	fmt.Fprintf(&b, `
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# devtmpfs replaces the two static nodes the archive carries.
mount -t devtmpfs devtmpfs /dev || echo "basalt: devtmpfs not available, keeping the static /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
hostname -F /etc/hostname
`)
	if len(mods) > 0 {
		b.WriteString(`
# Kernel modules, each after the ones it needs.
modload() {
	if [ -e /sys/module/$1 ]; then
		echo "basalt: module $1 already loaded"
	elif insmod "$2"; then
		echo "basalt: loaded module $1"
	else
		echo "basalt: insmod $1 ($2) failed; see dmesg"
	fi
}
`)
		for _, m := range mods {
			fmt.Fprintf(&b, "modload %s %s\n", m.Name, shq(m.Path))
		}
	}
	fmt.Fprintf(&b, `
ip link set lo up
iface=%[1]s
# Network drivers may still be probing: wait up to basalt.netwait=N seconds
# (kernel command line, default %[2]d) for %[1]s to appear.
netwait=%[2]d
for arg in $(cat /proc/cmdline); do
	case "$arg" in basalt.netwait=*) netwait=${arg#basalt.netwait=} ;; esac
done
case "$netwait" in
''|*[!0-9]*) echo "basalt: basalt.netwait=$netwait is not a number of seconds; using %[2]d"; netwait=%[2]d ;;
esac
n=0
while [ ! -e /sys/class/net/$iface ] && [ $n -lt $netwait ]; do sleep 1; n=$((n+1)); done
if [ -e /sys/class/net/$iface ]; then
	ip link set $iface up
	udhcpc -i $iface -s /etc/udhcpc.script -q -n -t 5 || echo "basalt: DHCP on $iface failed"
else
	echo "basalt: no $iface; network not configured"
fi

# The site's own start-up commands (basalt initrd build --file rc:/etc/rc.local),
# such as an httpd of the master image's own.
if [ -f /etc/rc.local ]; then
	echo "basalt: running /etc/rc.local"
	sh /etc/rc.local || echo "basalt: /etc/rc.local failed"
fi

echo "basalt master image $(cat /etc/basalt-master-image-info)"
echo "cmdline: $(cat /proc/cmdline)"
`, defaultInterface, defaultNetWait)
	if !cttyhack {
		b.WriteString("# This busybox has no cttyhack: the shell runs on /dev/console without job control.\n")
	}
	b.WriteString("exec /bin/busybox init\n")
	return b.String()
}

// defaultInterface is the interface /init configures by DHCP (the seed's eth0).
const defaultInterface = "eth0"

// defaultNetWait is how many seconds /init waits for the interface unless
// basalt.netwait= says otherwise.
const defaultNetWait = 5

// inittab is busybox init's table. cttyhack finds the real console device
// (ttyS0, ttyAMA0, whatever console= named) and makes it the shell's
// controlling terminal, so Ctrl-C and job control work over the serial line.
func inittab(cttyhack bool) string {
	shell := "/bin/busybox cttyhack /bin/sh -l"
	if !cttyhack {
		shell = "-/bin/sh"
	}
	return `# /etc/inittab of a basalt master image (busybox init).
::respawn:` + shell + `
::ctrlaltdel:/bin/busybox reboot
::shutdown:/bin/busybox sync
`
}

// profile is /etc/profile, read by the login shell.
func profile(o *Options, libPath string) string {
	s := "export PATH=/sbin:/usr/sbin:/bin:/usr/bin\nexport HOME=/root\nexport PS1=" + shq(o.Prompt) + "\n"
	if libPath != "" {
		s += "export LD_LIBRARY_PATH=" + shq(libPath) + "\n"
	}
	return s
}

// lavaInfo is /sbin/lava-master-image-info: LAVA's master images carried a
// script of that name that printed the image's version (seed 001).
func lavaInfo(version string) string {
	return "#!/bin/sh\necho " + shq(version) + "\n"
}

// udhcpcScript is the event script busybox udhcpc runs; busybox-static does
// not install busybox's default one. udhcpc exports interface, ip, mask
// (prefix length), broadcast, router, dns and domain. RESOLV_CONF exists
// for tests.
const udhcpcScript = `#!/bin/sh
# udhcpc event script of a basalt master image.
resolv=${RESOLV_CONF:-/etc/resolv.conf}
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
	if [ -n "$router" ]; then
		while ip route del default dev "$interface" 2>/dev/null; do :; done
		for r in $router; do
			ip route add default via "$r" dev "$interface" && break
		done
	fi
	: >"$resolv"
	[ -n "$domain" ] && echo "search $domain" >>"$resolv"
	for d in $dns; do
		echo "nameserver $d" >>"$resolv"
	done
	echo "udhcpc: $interface $ip/${mask:-24} router ${router:-none}"
	;;
leasefail|nak)
	echo "udhcpc: $1 on $interface" >&2
	;;
esac
exit 0
`
