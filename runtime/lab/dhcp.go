package lab

import (
	"fmt"

	"github.com/basalt-lab/basalt/builtins"
	"net/netip"
	"strings"
	"time"
)

// DHCPRange is the parsed dhcp_range of lab.star: the first and last
// address leased, both inclusive.
type DHCPRange struct{ First, Last netip.Addr }

// ParseDHCPRange parses "10.0.0.100-10.0.0.199": two IPv4 addresses,
// the first not after the last.
func ParseDHCPRange(s string) (DHCPRange, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return DHCPRange{}, fmt.Errorf("want FIRST-LAST (10.0.0.100-10.0.0.199)")
	}
	var r DHCPRange
	var err error
	if r.First, err = netip.ParseAddr(strings.TrimSpace(a)); err != nil || !r.First.Is4() {
		return DHCPRange{}, fmt.Errorf("first address %q is not IPv4", a)
	}
	if r.Last, err = netip.ParseAddr(strings.TrimSpace(b)); err != nil || !r.Last.Is4() {
		return DHCPRange{}, fmt.Errorf("last address %q is not IPv4", b)
	}
	if r.Last.Less(r.First) {
		return DHCPRange{}, fmt.Errorf("last address %s is before the first %s", r.Last, r.First)
	}
	return r, nil
}

// dhcpServerArgs are the server-mode keys of lab().
type dhcpServerArgs struct {
	rng, subnet, router builtins.OptStr
	dns                 builtins.OptStrList
	lease               builtins.OptInt
}

// labDHCPServer checks the server-mode keys of lab(): dhcp_range (required
// with dhcp = "server"), dhcp_subnet, dhcp_router, dhcp_dns, dhcp_lease_s.
func labDHCPServer(c *call, l *Lab, a dhcpServerArgs) error {
	l.DHCPRange, l.DHCPSubnet, l.DHCPRouter, l.DHCPDNS = a.rng.V, a.subnet.V, a.router.V, a.dns.V
	lease, err := c.inRange("dhcp_lease_s", a.lease, int(DefaultDHCPLease/time.Second), 60, 1<<31-1)
	if err != nil {
		return err
	}
	l.DHCPLease = time.Duration(lease) * time.Second
	set := a.rng.Set || a.subnet.Set || a.router.Set || a.dns.Set || a.lease.Set
	if l.DHCP != "server" {
		if set {
			return c.errorf(`dhcp_range, dhcp_subnet, dhcp_router, dhcp_dns and dhcp_lease_s are for dhcp = "server", not %q`, l.DHCP)
		}
		return nil
	}
	if l.DHCPRange == "" {
		return c.errorf(`dhcp = "server" needs dhcp_range = "FIRST-LAST", the addresses leased`)
	}
	r, err := ParseDHCPRange(l.DHCPRange)
	if err != nil {
		return c.errorf("dhcp_range = %q: %v", l.DHCPRange, err)
	}
	if l.DHCPSubnet != "" {
		p, err := netip.ParsePrefix(l.DHCPSubnet)
		if err != nil || !p.Addr().Is4() {
			return c.errorf("dhcp_subnet = %q: want an IPv4 prefix (10.0.0.0/24)", l.DHCPSubnet)
		}
		if !p.Contains(r.First) || !p.Contains(r.Last) {
			return c.errorf("dhcp_range = %q is not inside dhcp_subnet = %q", l.DHCPRange, l.DHCPSubnet)
		}
	}
	for _, f := range append([]string{l.DHCPRouter}, l.DHCPDNS...) {
		if f == "" {
			continue
		}
		if ip, err := netip.ParseAddr(f); err != nil || !ip.Is4() {
			return c.errorf("dhcp_router/dhcp_dns %q is not an IPv4 address", f)
		}
	}
	return nil
}
