// Package segment makes the broadcast domain of one job: a device file's
// segment = "netns" (a network namespace with a bridge and the qemu VM's
// tap, runtime/qemu's NetNS) or segment = "vlan" (an 802.1Q subinterface
// of a trunk, made with the ip command). basalt run creates it before the
// device is powered on, runs its DHCP server (builtins/pxe server mode),
// TFTP and HTTP on it, and removes it on every exit path; nothing of one
// job's segment is visible from another's.
package segment

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
)

// Segment is one job's segment.
type Segment struct {
	// Kind is "netns" or "vlan".
	Kind string
	// Interface is where basalt's DHCP server binds: the bridge inside
	// the namespace, or the VLAN subinterface.
	Interface string
	// Addr is basalt's address on Interface; Range the addresses leased.
	Addr  netip.Prefix
	Range lab.DHCPRange
	// NetNS is the namespace of a netns segment (its Tap is the VM's);
	// nil for a VLAN.
	NetNS *qemu.NetNS
}

// Prefix starts the name of every namespace basalt makes for a job:
// Prefix-PID-DEVICE.
const Prefix = "bseg"

// Create makes dev's segment. It never adopts a namespace or link that
// exists already. emit receives "segment" events (nil discards them).
func Create(dev *lab.Device, emit func(string, map[string]any)) (*Segment, error) {
	if emit == nil {
		emit = func(string, map[string]any) {}
	}
	switch dev.Segment.Kind {
	case "netns":
		removeStale(emit)
		name := fmt.Sprintf("%s-%d-%s", Prefix, os.Getpid(), dev.Name)
		if len(name) > 64 {
			name = name[:64]
		}
		ns, err := qemu.NewNetNS(name)
		if err != nil {
			return nil, fmt.Errorf("create segment netns: %w", err)
		}
		a := ns.Addr.Addr().As4()
		r := lab.DHCPRange{First: netip.AddrFrom4([4]byte{a[0], a[1], a[2], 100}), Last: netip.AddrFrom4([4]byte{a[0], a[1], a[2], 199})}
		s := &Segment{Kind: "netns", Interface: ns.Bridge, Addr: ns.Addr, Range: r, NetNS: ns}
		emit("segment", map[string]any{"event": "created", "kind": "netns", "netns": name, "interface": ns.Bridge, "tap": ns.Tap, "addr": ns.Addr.String()})
		return s, nil
	case "vlan":
		return createVLAN(dev, emit)
	}
	return nil, fmt.Errorf("device %s has no segment", dev.Name)
}

// VLANName is the subinterface of parent for vlan: PARENT.VLAN, or
// basalt.VLAN when that is longer than IFNAMSIZ-1 (15) bytes.
func VLANName(parent string, vlan int) string {
	n := parent + "." + strconv.Itoa(vlan)
	if len(n) > 15 {
		n = "basalt." + strconv.Itoa(vlan)
	}
	return n
}

func createVLAN(dev *lab.Device, emit func(string, map[string]any)) (*Segment, error) {
	sg := dev.Segment
	p, err := netip.ParsePrefix(sg.Addr)
	if err != nil {
		return nil, fmt.Errorf("segment_addr %q: %w", sg.Addr, err)
	}
	name := VLANName(sg.Parent, sg.VLAN)
	// net.InterfaceByName asks the kernel over netlink, in this thread's
	// namespace (/sys/class/net shows the namespace sysfs was mounted in).
	if _, err := net.InterfaceByName(name); err == nil {
		return nil, fmt.Errorf("create segment: interface %s exists already; basalt removes only what it made (ip link del %s)", name, name)
	}
	if _, err := net.InterfaceByName(sg.Parent); err != nil {
		return nil, fmt.Errorf("create segment: segment_parent %q: no such interface", sg.Parent)
	}
	// 802.1Q tagging on the trunk (ip-link(8) "type vlan"); the switch
	// port of the device is an access port of the same VLAN.
	if err := ip("link", "add", "link", sg.Parent, "name", name, "type", "vlan", "id", strconv.Itoa(sg.VLAN)); err != nil {
		if strings.Contains(err.Error(), "Unknown device type") {
			return nil, fmt.Errorf("create segment: the kernel makes no 802.1Q links (modprobe 8021q): %w", err)
		}
		return nil, fmt.Errorf("create segment: %w", err)
	}
	s := &Segment{Kind: "vlan", Interface: name, Addr: p, Range: hostRange(p)}
	for _, args := range [][]string{{"addr", "add", p.String(), "dev", name}, {"link", "set", name, "up"}} {
		if err := ip(args...); err != nil {
			s.Close()
			return nil, fmt.Errorf("create segment: %w", err)
		}
	}
	emit("segment", map[string]any{"event": "created", "kind": "vlan", "interface": name, "parent": sg.Parent, "vlan": sg.VLAN, "addr": p.String()})
	return s, nil
}

// hostRange is every host address of p: network+1 to broadcast-1 (the
// DHCP server skips its own).
func hostRange(p netip.Prefix) lab.DHCPRange {
	first := p.Masked().Addr().Next()
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return lab.DHCPRange{First: first, Last: netip.AddrFrom4(b).Prev()}
}

// Exec runs fn where the segment's servers must open their sockets:
// inside the namespace of a netns segment (sockets stay there), in this
// one for a VLAN.
func (s *Segment) Exec(fn func() error) error {
	if s.NetNS != nil {
		return s.NetNS.Exec(fn)
	}
	return fn()
}

// Command is name run on the segment: inside its namespace for netns.
func (s *Segment) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if s.NetNS != nil {
		return s.NetNS.Command(ctx, name, args...)
	}
	return exec.CommandContext(ctx, name, args...)
}

// Close removes the segment: the namespace with its bridge and tap, or the
// VLAN subinterface. Stop what runs on it first.
func (s *Segment) Close() error {
	if s.NetNS != nil {
		return s.NetNS.Close()
	}
	return ip("link", "del", s.Interface)
}

// removeStale deletes the namespaces of basalt processes that died
// without their cleanup (SIGKILL, a crash): Prefix-PID-* whose PID is gone.
func removeStale(emit func(string, map[string]any)) {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), Prefix+"-")
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		if err := ip("netns", "del", e.Name()); err == nil {
			emit("segment", map[string]any{"event": "stale_removed", "netns": e.Name(), "pid": pid})
		}
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
