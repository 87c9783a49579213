package pxe

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// serverDHCP is the DHCP server of a segment basalt owns for the job's
// lifetime (RFC 2131): it leases addresses to the job's device alone,
// hands out the boot file and next-server as the proxy does, and router
// and DNS from the lab. One lease per MAC for the server's life, so the
// target gets the same address after every reboot within the job. Others
// are answered nothing and recorded ("dhcp" events, outcome "ignored").
//
// A second server answering on the segment would race ours; it is watched
// for on the client port (68): broadcast offers and acks whose server
// identifier is not ours, and the answers to a DISCOVER of our own sent at
// start and every probeEvery (RFC 2131 4.4.1, broadcast flag set so every
// server answers by broadcast). Each one found is a "dhcp_rogue" event and
// a warning.
type serverDHCP struct {
	s      *Server
	ip     net.IP // server identifier and next-server
	subnet netip.Prefix
	first  netip.Addr
	last   netip.Addr
	router netip.Addr
	dns    []netip.Addr
	lease  time.Duration
	macs   []net.HardwareAddr // leased to besides the job's MAC
	hw     net.HardwareAddr   // the interface's, for the probe

	srv   *server4.Server
	watch *net.UDPConn
	xid   dhcpv4.TransactionID // the probe's
	stop  chan struct{}

	mu       sync.Mutex
	leases   map[string]netip.Addr // by MAC
	declined map[netip.Addr]bool
	rogues   map[string]bool // server identifiers reported
}

// probeEvery is how often the segment is probed for other DHCP servers.
const probeEvery = 30 * time.Second

// dhcpInterface checks the DHCP interface: it exists and has an IPv4
// address. The errors name it: they end the job before power-on.
func dhcpInterface(name string) (*net.Interface, []netip.Prefix, error) {
	if name == "" {
		return nil, nil, errors.New("no dhcp_interface set")
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("dhcp_interface %q: no such interface", name)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, fmt.Errorf("dhcp_interface %q: read addresses: %w", name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			ip, _ := netip.AddrFromSlice(n.IP.To4())
			ones, _ := n.Mask.Size()
			out = append(out, netip.PrefixFrom(ip, ones))
		}
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("dhcp_interface %q has no IPv4 address", name)
	}
	return ifi, out, nil
}

func (s *Server) startServerDHCP() (*serverDHCP, error) {
	c := s.cfg
	ifi, prefixes, err := dhcpInterface(c.DHCPInterface)
	if err != nil {
		return nil, err
	}
	if !c.DHCPRange.First.Is4() || !c.DHCPRange.Last.Is4() || c.DHCPRange.Last.Less(c.DHCPRange.First) {
		return nil, fmt.Errorf("dhcp range %s-%s: want two IPv4 addresses, first to last", c.DHCPRange.First, c.DHCPRange.Last)
	}
	d := &serverDHCP{
		s: s, first: c.DHCPRange.First, last: c.DHCPRange.Last, router: c.DHCPRouter, dns: c.DHCPDNS,
		lease: c.DHCPLease, hw: ifi.HardwareAddr, stop: make(chan struct{}),
		leases: map[string]netip.Addr{}, declined: map[netip.Addr]bool{}, rogues: map[string]bool{},
	}
	if d.lease <= 0 {
		d.lease = time.Hour
	}
	for _, m := range c.DHCPMACs {
		hw, err := net.ParseMAC(m)
		if err != nil {
			return nil, fmt.Errorf("lease mac %q: %w", m, err)
		}
		d.macs = append(d.macs, hw)
	}
	// The server's own address: the interface's address in the subnet of
	// the range (the TFTP address when it is one of them).
	var own netip.Prefix
	for _, p := range prefixes {
		if p.Contains(d.first) {
			own = p
			break
		}
	}
	if tip, err := s.dhcpServerIP(); err == nil {
		if a, ok := netip.AddrFromSlice(tip.To4()); ok {
			for _, p := range prefixes {
				if p.Addr() == a {
					own = p
				}
			}
		}
	}
	if !own.IsValid() {
		return nil, fmt.Errorf("dhcp_interface %q has no address in the subnet of the range %s-%s (it has %v)", c.DHCPInterface, d.first, d.last, prefixes)
	}
	d.ip = net.IP(own.Addr().AsSlice())
	d.subnet = c.DHCPSubnet
	if !d.subnet.IsValid() {
		d.subnet = own.Masked()
	}
	if !d.subnet.Contains(d.first) || !d.subnet.Contains(d.last) {
		return nil, fmt.Errorf("dhcp range %s-%s is not inside the subnet %s", d.first, d.last, d.subnet)
	}
	port := 67
	if c.DHCPPort != 0 {
		port = c.DHCPPort
	}
	d.srv, err = server4.NewServer(c.DHCPInterface, &net.UDPAddr{IP: net.IPv4zero, Port: port}, d.handle)
	if err != nil {
		return nil, fmt.Errorf("listen udp :%d on %q: %w", port, c.DHCPInterface, err)
	}
	// The client port, shared with any DHCP client on the host
	// (SO_REUSEADDR): broadcasts reach every socket bound to it.
	d.watch, err = server4.NewIPv4UDPConn(c.DHCPInterface, &net.UDPAddr{IP: net.IPv4zero, Port: port + 1})
	if err != nil {
		d.srv.Close()
		return nil, fmt.Errorf("listen udp :%d on %q: %w", port+1, c.DHCPInterface, err)
	}
	rand.Read(d.xid[:])
	s.done.Add(3)
	go func() {
		defer s.done.Done()
		d.srv.Serve()
	}()
	go func() {
		defer s.done.Done()
		d.watchRogues()
	}()
	go func() {
		defer s.done.Done()
		d.probeLoop(port)
	}()
	return d, nil
}

func (d *serverDHCP) close() error {
	close(d.stop)
	return errors.Join(d.srv.Close(), d.watch.Close())
}

// leasesTo reports whether mac gets addresses: the device's, or the MAC
// of the job being served.
func (d *serverDHCP) leasesTo(mac net.HardwareAddr) bool {
	if slices.ContainsFunc(d.macs, func(m net.HardwareAddr) bool { return slices.Equal(m, mac) }) {
		return true
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.s.jobFor(mac) != nil
}

// addrFor returns mac's lease, making one from the first free address
// of the range. ok is false when the range is used up.
func (d *serverDHCP) addrFor(mac net.HardwareAddr) (netip.Addr, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.leases[mac.String()]; ok {
		return a, true
	}
	taken := map[netip.Addr]bool{}
	for _, a := range d.leases {
		taken[a] = true
	}
	own, _ := netip.AddrFromSlice(d.ip.To4())
	for a := d.first; a.IsValid() && !d.last.Less(a); a = a.Next() {
		if a == own || taken[a] || d.declined[a] || a == d.subnet.Masked().Addr() || a == broadcastOf(d.subnet) {
			continue
		}
		d.leases[mac.String()] = a
		return a, true
	}
	return netip.Addr{}, false
}

func (d *serverDHCP) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest || m.TransactionID == d.xid {
		return // a reply, or our own probe looped back
	}
	fields := map[string]any{
		"mode":         "server",
		"client":       m.ClientHWAddr.String(),
		"peer":         peer.String(),
		"type":         m.MessageType().String(),
		"xid":          m.TransactionID.String(),
		"vendor_class": m.ClassIdentifier(),
	}
	if uc := m.UserClass(); len(uc) > 0 {
		fields["user_class"] = strings.Join(uc, ",")
	}
	reply, why := d.reply(m)
	if reply == nil {
		fields["outcome"] = "ignored"
		fields["reason"] = why
		d.s.emit("dhcp", fields)
		return
	}
	// RFC 2131 4.1: a client with an address (renewing) is answered
	// unicast; one without is answered by broadcast (server4 turned the
	// zero peer into 255.255.255.255:68), which every client hears
	// whether or not it set the broadcast flag, and needs no ARP entry
	// for an address the client does not have yet.
	to := peer
	if !m.ClientIPAddr.IsUnspecified() && m.ClientIPAddr.To4() != nil {
		to = &net.UDPAddr{IP: m.ClientIPAddr, Port: peer.(*net.UDPAddr).Port}
	}
	if _, err := conn.WriteTo(reply.ToBytes(), to); err != nil {
		fields["outcome"] = "error"
		fields["error"] = err.Error()
		d.s.log.Warn("pxe dhcp reply failed", "peer", to.String(), "err", err)
	} else {
		fields["outcome"] = "replied"
		fields["reply"] = reply.MessageType().String()
		fields["yiaddr"] = reply.YourIPAddr.String()
		fields["boot_file"] = reply.BootFileName
		fields["next_server"] = reply.ServerIPAddr.String()
	}
	d.s.emit("dhcp", fields)
	if reply.MessageType() == dhcpv4.MessageTypeAck && !reply.YourIPAddr.IsUnspecified() {
		d.s.addLease(Lease{MAC: m.ClientHWAddr.String(), IP: reply.YourIPAddr.String(), VendorClass: m.ClassIdentifier()})
		d.s.emit("dhcp_lease", map[string]any{"mac": m.ClientHWAddr.String(), "ip": reply.YourIPAddr.String(),
			"lease_s": int(d.lease / time.Second), "vendor_class": m.ClassIdentifier()})
	}
}

// reply answers m as RFC 2131 4.3 says, or returns nil and why not.
func (d *serverDHCP) reply(m *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, string) {
	if !d.leasesTo(m.ClientHWAddr) {
		return nil, "other_mac"
	}
	if !m.GatewayIPAddr.IsUnspecified() {
		return nil, "relayed" // the segment is ours; no relay belongs on it
	}
	addr, ok := d.addrFor(m.ClientHWAddr)
	if !ok {
		return nil, "range_full"
	}
	yi := net.IP(addr.AsSlice())
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		// SELECTING names a server: another's is the client's choice
		// (4.3.2). INIT-REBOOT and RENEWING name none; the address asked
		// for (option 50, else ciaddr) must be the lease, else NAK.
		if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(d.ip) {
			return nil, "chose_other_server"
		}
		want := m.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = m.ClientIPAddr
		}
		if !want.Equal(yi) {
			return d.nak(m, fmt.Sprintf("requested %s, lease is %s", want, yi))
		}
		typ = dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeInform:
		typ = dhcpv4.MessageTypeAck
		yi = net.IPv4zero // 4.3.5: no address, no lease time
	case dhcpv4.MessageTypeDecline:
		// 4.3.3: the address is in use by someone else; lease another.
		d.mu.Lock()
		d.declined[addr] = true
		delete(d.leases, m.ClientHWAddr.String())
		d.mu.Unlock()
		d.s.log.Warn("pxe dhcp: client declined its address: in use on the segment", "mac", m.ClientHWAddr.String(), "ip", addr.String())
		return nil, "declined"
	case dhcpv4.MessageTypeRelease:
		// The lease is kept: the same address after the next DISCOVER.
		return nil, "released"
	default:
		return nil, "not_for_server"
	}
	mask := net.CIDRMask(d.subnet.Bits(), 32)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(d.ip), // siaddr: next-server (TFTP)
		dhcpv4.WithYourIP(yi),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(d.ip)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(mask)),
		dhcpv4.WithOptionCopied(m, dhcpv4.OptionClientMachineIdentifier),
	}
	if m.MessageType() != dhcpv4.MessageTypeInform {
		// Options 51, 58, 59 (RFC 2132 9.2, 9.11, 9.12): T1 half the
		// lease, T2 seven eighths, as dnsmasq and ISC dhcpd send them.
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(d.lease)),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRenewTimeValue, be32(uint32(d.lease/2/time.Second)))),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRebindingTimeValue, be32(uint32(d.lease*7/8/time.Second)))),
		)
	}
	bc := net.IP(broadcastOf(d.subnet).AsSlice())
	mods = append(mods, dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(bc)))
	if d.router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(net.IP(d.router.AsSlice()))))
	}
	if len(d.dns) > 0 {
		var ips []net.IP
		for _, a := range d.dns {
			ips = append(ips, net.IP(a.AsSlice()))
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(ips...)))
	}
	d.s.mu.Lock()
	j := d.s.jobFor(m.ClientHWAddr)
	d.s.mu.Unlock()
	bootFile := ""
	if j != nil {
		// The boot file and next-server exactly as the proxy picks them
		// (no option 60/43: without PXEClient in the reply the ROM takes
		// file and siaddr from it, PXE spec 2.1 2.2.1).
		bootFile = (&proxyDHCP{s: d.s, ip: d.ip}).bootFile(m, j)
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptBootFileName(bootFile)),
			dhcpv4.WithOption(dhcpv4.OptTFTPServerName(d.ip.String())))
	}
	r, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return nil, "build_failed"
	}
	r.BootFileName = bootFile
	return r, ""
}

// nak refuses a REQUEST for an address that is not the client's lease
// (RFC 2131 4.3.2): it falls back to DISCOVER and gets its lease.
func (d *serverDHCP) nak(m *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, string) {
	r, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(d.ip)),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	if err != nil {
		return nil, "build_failed"
	}
	r.YourIPAddr = net.IPv4zero
	r.ServerIPAddr = net.IPv4zero
	return r, ""
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

func broadcastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// watchRogues reads the client port for answers from other servers.
func (d *serverDHCP) watchRogues() {
	buf := make([]byte, 1500)
	for {
		n, peer, err := d.watch.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		sid := m.ServerIdentifier()
		if sid == nil {
			sid = m.ServerIPAddr
		}
		if sid.Equal(d.ip) {
			continue
		}
		t := m.MessageType()
		if t != dhcpv4.MessageTypeOffer && t != dhcpv4.MessageTypeAck && t != dhcpv4.MessageTypeNak {
			continue
		}
		d.mu.Lock()
		first := !d.rogues[sid.String()]
		d.rogues[sid.String()] = true
		d.mu.Unlock()
		fields := map[string]any{
			"server_id": sid.String(), "from": peer.String(), "type": t.String(),
			"client": m.ClientHWAddr.String(), "yiaddr": m.YourIPAddr.String(),
			"probe": m.TransactionID == d.xid, "interface": d.s.cfg.DHCPInterface,
		}
		d.s.emit("dhcp_rogue", fields)
		if first {
			d.s.log.Warn("pxe dhcp: another DHCP server answers on the segment; targets may take its lease",
				"server_id", sid.String(), "from", peer.String(), "interface", d.s.cfg.DHCPInterface)
		}
	}
}

// probeLoop broadcasts a DISCOVER from the interface's own MAC at start
// and every probeEvery, flag broadcast (RFC 2131 4.1): every server on the
// segment answers by broadcast, where watchRogues hears it. Ours ignores
// it (not a leased MAC, and the probe's xid).
func (d *serverDHCP) probeLoop(port int) {
	hw := d.hw
	if len(hw) != 6 {
		hw = net.HardwareAddr{0x02, 0xba, 0x5a, 0x17, 0, 1}
	}
	probe := func() {
		m, err := dhcpv4.New(
			dhcpv4.WithTransactionID(d.xid),
			dhcpv4.WithHwAddr(hw),
			dhcpv4.WithBroadcast(true),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("basalt-rogue-probe")),
		)
		if err != nil {
			return
		}
		if _, err := d.watch.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: port}); err != nil {
			d.s.log.Debug("pxe dhcp probe failed", "err", err)
		}
	}
	probe()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			probe()
		}
	}
}
