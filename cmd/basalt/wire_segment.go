package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"

	cleanhttp "github.com/hashicorp/go-cleanhttp"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/segment"
)

// jobSegment makes the segment a device file names (segment = "netns" or
// "vlan") and points the PXE servers at it: TFTP on :69 and HTTP on :8080
// of basalt's address there, DHCP in server mode on its interface (the
// lab's dhcp keys are for the lab's own segment, not this one) with
// router advertisements for iPXE. A netns segment's VM gets its tap and
// namespace. It returns a nil segment when the device has none.
func jobSegment(dev *lab.Device, pcfg *pxe.Config, emit func(string, map[string]any)) (*segment.Segment, *lab.Device, error) {
	if dev.Segment.Kind == "" {
		return nil, dev, nil
	}
	seg, err := segment.Create(dev, emit)
	if err != nil {
		return nil, dev, builtins.Infra(fmt.Errorf("device %s: %w", dev.Name, err))
	}
	a := seg.Addr.Addr().String()
	pcfg.TFTPAddr, pcfg.HTTPAddr = a+":69", a+":8080"
	pcfg.DHCP, pcfg.DHCPInterface, pcfg.DHCPRange = "server", seg.Interface, seg.Range
	pcfg.DHCPSubnet, pcfg.DHCPRouter, pcfg.DHCPDNS = netip.Prefix{}, netip.Addr{}, nil
	pcfg.RouterAdvertisements = true
	if seg.NetNS != nil {
		d := *dev
		d.VM = maps.Clone(dev.VM)
		if d.VM == nil {
			d.VM = map[string]any{}
		}
		d.VM["vm_tap"], d.VM["vm_netns"] = seg.NetNS.Tap, seg.NetNS.Name
		dev = &d
	}
	return seg, dev, nil
}

// segmentHTTPClient is target's HTTP client on a segment: connections to
// an address of the segment (target.fetch from the device) are dialed from
// inside it, where it is reachable; every other one (artifact downloads)
// from here as usual.
func segmentHTTPClient(seg *segment.Segment) *http.Client {
	if seg == nil {
		return nil
	}
	tr := cleanhttp.DefaultTransport()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ap, err := netip.ParseAddrPort(addr); err == nil && seg.Addr.Masked().Contains(ap.Addr()) {
			var c net.Conn
			err := seg.Exec(func() (err error) {
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr}
}
