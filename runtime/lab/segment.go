package lab

import (
	"net/netip"
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

// deviceSegment reads segment, segment_parent, segment_vlan and
// segment_addr of device().
func deviceSegment(a *args, d *Device) error {
	kind := ""
	if a.has("segment") {
		var err error
		if kind, err = a.oneOf("segment", "netns", "netns", "vlan"); err != nil {
			return err
		}
	}
	parent, err := a.str("segment_parent", "")
	if err != nil {
		return err
	}
	vlan, err := a.integer("segment_vlan", 0, 1, 4094)
	if err != nil {
		return err
	}
	addr, err := a.str("segment_addr", "")
	if err != nil {
		return err
	}
	switch kind {
	case "":
		if parent != "" || vlan != 0 || addr != "" {
			return a.errorf(`segment_parent, segment_vlan and segment_addr are for segment = "vlan"`)
		}
		return nil
	case "netns":
		if !d.Type.Is("qemu") || d.IPMI.Host != "" {
			return a.errorf(`segment = "netns" is for a qemu device basalt starts (type qemu, no ipmi_host)`)
		}
		if parent != "" || vlan != 0 || addr != "" {
			return a.errorf(`segment_parent, segment_vlan and segment_addr are for segment = "vlan", not "netns"`)
		}
		if _, ok := d.VM["vm_tap"]; ok {
			return a.errorf(`segment = "netns" makes the VM's tap itself: drop vm_tap`)
		}
		if _, ok := d.VM["vm_netns"]; ok {
			return a.errorf(`segment = "netns" makes the VM's namespace itself: drop vm_netns`)
		}
	case "vlan":
		if parent == "" || vlan == 0 || addr == "" {
			return a.errorf(`segment = "vlan" needs segment_parent, segment_vlan and segment_addr`)
		}
		p, err := netip.ParsePrefix(addr)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return a.errorf("segment_addr = %q: want the dispatcher's IPv4 address with its prefix length, at most /30 (10.102.0.1/24)", addr)
		}
		d.Segment.Addr = p.String()
	}
	d.Segment.Kind, d.Segment.Parent, d.Segment.VLAN = kind, parent, vlan
	return nil
}
