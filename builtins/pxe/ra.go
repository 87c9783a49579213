package pxe

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// raEvery is the interval between unsolicited router advertisements,
// RFC 4861 6.2.1's smallest MaxRtrAdvInterval.
const raEvery = 4 * time.Second

// routerAdverts sends ICMPv6 Router Advertisements (RFC 4861 4.2) on the
// DHCP interface of server mode: at start, every raEvery and in answer to
// each Router Solicitation. They carry no prefix and a router lifetime of
// 0 (not a default router) with M and O clear ("no DHCPv6 here"), so they
// configure nothing on any host; their point is iPXE, which after its
// DHCPv4 lease waits for IPv6 configuration too and gives up only after
// about 16 s without an RA (iPXE src/net/ndp.c: an RA with M and O clear
// ends its IPv6 configuration at once).
type routerAdverts struct {
	s    *Server
	ifi  *net.Interface
	c    *icmp.PacketConn
	p    *ipv6.PacketConn
	stop chan struct{}
}

func (s *Server) startRA(name string) (*routerAdverts, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("router advertisements on %q: %w", name, err)
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("router advertisements on %q: listen icmpv6: %w", name, err)
	}
	p := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	errs := []error{
		p.SetICMPFilter(&f),
		p.SetMulticastInterface(ifi),
		p.SetMulticastHopLimit(255), // RFC 4861 6.1.2: hosts drop RAs with another hop limit
		p.SetHopLimit(255),
		p.SetControlMessage(ipv6.FlagInterface, true),
		p.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}), // all-routers: solicitations
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, fmt.Errorf("router advertisements on %q: %w", name, err)
	}
	r := &routerAdverts{s: s, ifi: ifi, c: c, p: p, stop: make(chan struct{})}
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		r.answer()
	}()
	go func() {
		defer s.done.Done()
		r.tick()
	}()
	return r, nil
}

func (r *routerAdverts) close() error {
	close(r.stop)
	return r.c.Close()
}

// advert is the RA: cur hop limit 0, flags 0, router lifetime 0,
// reachable time 0, retrans timer 0, then the source link-layer address
// option (type 1, length 1 in units of 8 octets).
func (r *routerAdverts) advert() []byte {
	body := make([]byte, 12, 20)
	if len(r.ifi.HardwareAddr) == 6 {
		body = append(body, 1, 1)
		body = append(body, r.ifi.HardwareAddr...)
	}
	m := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: body}}
	b, _ := m.Marshal(nil) // the kernel fills in the checksum of ICMPv6
	return b
}

func (r *routerAdverts) send(why string) {
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: r.ifi.Name}
	if _, err := r.p.WriteTo(r.advert(), &ipv6.ControlMessage{HopLimit: 255, IfIndex: r.ifi.Index}, dst); err != nil {
		r.s.log.Debug("pxe router advertisement failed", "interface", r.ifi.Name, "err", err)
		return
	}
	if why == "solicited" {
		r.s.emit("ipv6_ra", map[string]any{"interface": r.ifi.Name, "reason": why})
	}
}

func (r *routerAdverts) tick() {
	r.send("start")
	t := time.NewTicker(raEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.send("periodic")
		}
	}
}

func (r *routerAdverts) answer() {
	buf := make([]byte, 1500)
	for {
		n, cm, _, err := r.p.ReadFrom(buf)
		if err != nil {
			return
		}
		if cm != nil && cm.IfIndex != r.ifi.Index {
			continue
		}
		if m, err := icmp.ParseMessage(58, buf[:n]); err == nil && m.Type == ipv6.ICMPTypeRouterSolicitation {
			r.send("solicited")
		}
	}
}
