package sim

import (
	"fmt"
	"net"
	"os/exec"
	"strings"

	"github.com/basalt-lab/basalt/builtins/pxe/ubootsim"
	"github.com/basalt-lab/basalt/runtime/qemu"
)

// nic is the board's NIC on the job's netns segment: a veth pair, one end
// ("ubp0") a port of the segment's bridge, the other ("eth0", the
// device's MAC) in a network namespace of the board's own, where U-Boot's
// sockets open (ubootsim.Link). Nothing else is in that namespace, so what
// U-Boot sends goes over the veth to the segment, as from a real NIC.
type nic struct {
	ns   *qemu.NetNS // the board's namespace (Name only)
	link *ubootsim.Link
}

const nicName = "eth0"

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNIC plugs a NIC with mac into seg's bridge.
func newNIC(seg *qemu.NetNS, mac string) (*nic, error) {
	name := seg.Name + "-board"
	if err := ipCmd("netns", "add", name); err != nil {
		return nil, fmt.Errorf("sim: the board's namespace: %w", err)
	}
	n := &nic{ns: &qemu.NetNS{Name: name}}
	steps := [][]string{
		{"-n", seg.Name, "link", "add", "ubp0", "type", "veth", "peer", "name", nicName, "netns", name},
		{"-n", seg.Name, "link", "set", "ubp0", "master", seg.Bridge},
		{"-n", seg.Name, "link", "set", "ubp0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "set", nicName, "up"},
	}
	if mac != "" {
		if _, err := net.ParseMAC(mac); err != nil {
			n.close()
			return nil, fmt.Errorf("sim: mac %q: %w", mac, err)
		}
		steps = append([][]string{steps[0], {"-n", name, "link", "set", nicName, "address", mac}}, steps[1:]...)
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			n.close()
			return nil, fmt.Errorf("sim: the board's NIC: %w", err)
		}
	}
	n.link = &ubootsim.Link{Interface: nicName, Exec: n.ns.Exec, SetAddr: func(ip net.IP, mask net.IPMask) error {
		// The lease replaces whatever the last one was.
		ones, _ := mask.Size()
		if err := ipCmd("-n", name, "addr", "flush", "dev", nicName); err != nil {
			return err
		}
		return ipCmd("-n", name, "addr", "add", fmt.Sprintf("%s/%d", ip, ones), "dev", nicName)
	}}
	return n, nil
}

// close removes the board's namespace and with it the veth pair.
func (n *nic) close() error { return ipCmd("netns", "del", n.ns.Name) }
