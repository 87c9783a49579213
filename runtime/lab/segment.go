package lab

import (
	"net/netip"

	"github.com/basalt-lab/basalt/builtins"
)

// Segment is a device's own broadcast domain, made by basalt run for each
// job and removed on every exit path.
type Segment struct {
	// Kind is "" (none), "netns" or "vlan".
	Kind string
	// VLAN form: the trunk interface, the 802.1Q VLAN ID and the
	// dispatcher's address on the subinterface PARENT.VLAN.
	// Addr is an IPv4 prefix, "10.102.0.1/24", checked when read.
	Parent string
	VLAN   int
	Addr   string
}

// segmentArgs are the segment keys of device().
type segmentArgs struct {
	kind, parent, addr builtins.OptStr
	vlan               builtins.OptInt
}

// deviceSegment checks segment, segment_parent, segment_vlan and
// segment_addr of device().
func deviceSegment(c *call, d *Device, sa segmentArgs) error {
	kind, parent, addr := "", sa.parent.V, sa.addr.V
	if sa.kind.Set {
		var err error
		if kind, err = c.oneOf("segment", sa.kind, "netns", "vlan"); err != nil {
			return err
		}
	}
	vlan, err := c.inRange("segment_vlan", sa.vlan, 0, 1, 4094)
	if err != nil {
		return err
	}
	switch kind {
	case "":
		if parent != "" || vlan != 0 || addr != "" {
			return c.errorf(`segment_parent, segment_vlan and segment_addr are for segment = "vlan"`)
		}
		return nil
	case "netns":
		// A sim node basalt starts gets a NIC on the segment for its
		// U-Boot (a veth on the bridge, in a namespace of the board's
		// own); its PXE ROM has no DHCP client, so U-Boot it must be.
		sim := d.Type.Is("sim") && d.IPMI.Host == "" && d.Sim.Bootloader == "u-boot"
		if (!d.Type.Is("qemu") && !sim) || d.IPMI.Host != "" {
			return c.errorf(`segment = "netns" is for a qemu device basalt starts (type qemu, no ipmi_host) or a sim node with sim = {"bootloader": "u-boot"}`)
		}
		if parent != "" || vlan != 0 || addr != "" {
			return c.errorf(`segment_parent, segment_vlan and segment_addr are for segment = "vlan", not "netns"`)
		}
		if _, ok := d.VM["vm_tap"]; ok {
			return c.errorf(`segment = "netns" makes the VM's tap itself: drop vm_tap`)
		}
		if _, ok := d.VM["vm_netns"]; ok {
			return c.errorf(`segment = "netns" makes the VM's namespace itself: drop vm_netns`)
		}
	case "vlan":
		if parent == "" || vlan == 0 || addr == "" {
			return c.errorf(`segment = "vlan" needs segment_parent, segment_vlan and segment_addr`)
		}
		p, err := netip.ParsePrefix(addr)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return c.errorf("segment_addr = %q: want the dispatcher's IPv4 address with its prefix length, at most /30 (10.102.0.1/24)", addr)
		}
		d.Segment.Addr = p.String()
	}
	d.Segment.Kind, d.Segment.Parent, d.Segment.VLAN = kind, parent, vlan
	return nil
}
