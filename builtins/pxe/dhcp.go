package pxe

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// proxyDHCP answers the PXE clients of the job's MAC with the boot server
// and boot file, leaving address assignment to the site DHCP server (PXE
// spec 2.1, "ProxyDHCP"). It listens on port 67, shared with any DHCP
// server on the host (SO_REUSEADDR/SO_REUSEPORT, as server4 sets them), and
// on port 4011, where PXE firmware unicasts its boot-server request after a
// proxy offer.
type proxyDHCP struct {
	s    *Server
	ip   net.IP
	srvs []*server4.Server
}

func (s *Server) startDHCP() (*proxyDHCP, error) {
	ip, err := s.dhcpServerIP()
	if err != nil {
		return nil, err
	}
	p67, p4011 := 67, 4011
	if s.cfg.DHCPPort != 0 {
		p67, p4011 = s.cfg.DHCPPort, s.cfg.DHCPPort+4011-67
	}
	d := &proxyDHCP{s: s, ip: ip}
	for _, port := range []int{p67, p4011} {
		addr := &net.UDPAddr{IP: net.IPv4zero, Port: port}
		srv, err := server4.NewServer(s.cfg.DHCPInterface, addr, d.handler(port == p4011))
		if err != nil {
			d.close()
			return nil, fmt.Errorf("listen udp :%d on %q: %w", port, s.cfg.DHCPInterface, err)
		}
		d.srvs = append(d.srvs, srv)
	}
	for _, srv := range d.srvs {
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			srv.Serve()
		}()
	}
	return d, nil
}

// dhcpServerIP is the address given as next-server and server identifier:
// the TFTP listen address when it is specific, else the interface's first
// IPv4 address.
func (s *Server) dhcpServerIP() (net.IP, error) {
	if a, ok := s.tftpConn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil && !a.IP.IsUnspecified() {
		return a.IP.To4(), nil
	}
	if s.cfg.DHCPInterface == "" {
		return nil, errors.New("tftp listens on no specific address and no dhcp interface is set")
	}
	ifi, err := net.InterfaceByName(s.cfg.DHCPInterface)
	if err != nil {
		return nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("interface %s has no IPv4 address", s.cfg.DHCPInterface)
}

func (d *proxyDHCP) close() error {
	var errs []error
	for _, srv := range d.srvs {
		errs = append(errs, srv.Close())
	}
	return errors.Join(errs...)
}

// isIPXE reports whether the request comes from iPXE (user class "iPXE",
// RFC 3004 option 77, or iPXE's encapsulated options, 175).
func isIPXE(m *dhcpv4.DHCPv4) bool {
	return slices.Contains(m.UserClass(), "iPXE") || m.Options.Has(dhcpv4.GenericOptionCode(175))
}

func (d *proxyDHCP) handler(bootServer bool) server4.Handler {
	port := 67
	if bootServer {
		port = 4011
	}
	return func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		fields := map[string]any{
			"client":       m.ClientHWAddr.String(),
			"peer":         peer.String(),
			"port":         port,
			"type":         m.MessageType().String(),
			"xid":          m.TransactionID.String(),
			"vendor_class": m.ClassIdentifier(),
		}
		if uc := m.UserClass(); len(uc) > 0 {
			fields["user_class"] = strings.Join(uc, ",")
		}
		reply, why := d.reply(m, bootServer)
		if reply == nil {
			fields["outcome"] = "ignored"
			fields["reason"] = why
			d.s.emit("dhcp", fields)
			return
		}
		// server4 turns a peer without an address into the broadcast
		// address on the client port, which is where a proxy offer goes.
		if _, err := conn.WriteTo(reply.ToBytes(), peer); err != nil {
			fields["outcome"] = "error"
			fields["error"] = err.Error()
			d.s.log.Warn("pxe dhcp reply failed", "peer", peer.String(), "err", err)
		} else {
			fields["outcome"] = "replied"
			fields["reply"] = reply.MessageType().String()
			fields["boot_file"] = reply.BootFileName
			fields["next_server"] = reply.ServerIPAddr.String()
		}
		d.s.emit("dhcp", fields)
	}
}

// reply builds the proxy answer for m, or returns nil and why not.
func (d *proxyDHCP) reply(m *dhcpv4.DHCPv4, bootServer bool) (*dhcpv4.DHCPv4, string) {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, "not_a_request"
	}
	if !strings.HasPrefix(m.ClassIdentifier(), "PXEClient") {
		return nil, "not_pxe"
	}
	d.s.mu.Lock()
	serving := len(d.s.jobs) > 0
	j := d.s.jobFor(m.ClientHWAddr)
	d.s.mu.Unlock()
	if !serving {
		return nil, "not_serving"
	}
	if j == nil {
		return nil, "other_mac"
	}
	if j.served.NoConfig {
		// pxe.serve(config=False): nothing for a PXE ROM to boot.
		return nil, "no_config"
	}
	var typ dhcpv4.MessageType
	switch t := m.MessageType(); {
	case t == dhcpv4.MessageTypeDiscover && !bootServer:
		typ = dhcpv4.MessageTypeOffer
	case t == dhcpv4.MessageTypeRequest && bootServer, t == dhcpv4.MessageTypeInform && bootServer:
		typ = dhcpv4.MessageTypeAck
	case t == dhcpv4.MessageTypeRequest && d.ip.Equal(m.ServerIdentifier()):
		// Some ROMs send the boot-server request to port 67.
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, "not_for_proxy"
	}
	bootFile := d.bootFile(m, j)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(d.ip), // siaddr: next-server
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(d.ip)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		// Option 43, PXE_DISCOVERY_CONTROL (sub-option 6) = 8: take the
		// boot file from this packet, no boot-server discovery or menu.
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255})),
		dhcpv4.WithOption(dhcpv4.OptBootFileName(bootFile)),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(d.ip.String())),
		dhcpv4.WithOptionCopied(m, dhcpv4.OptionClientMachineIdentifier),
	}
	r, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return nil, "build_failed"
	}
	r.BootFileName = bootFile
	r.YourIPAddr = net.IPv4zero // a proxy never assigns addresses
	return r, ""
}

// bootFile picks what the client should load: for a job whose loader is
// iPXE, the iPXE script over HTTP when the client already is iPXE; else the
// first-stage loader for the job's loader and the client's architecture
// (option 93) — an iPXE ROM chainloads pxelinux.0 over TFTP like any PXE
// ROM does.
func (d *proxyDHCP) bootFile(m *dhcpv4.DHCPv4, j *job) string {
	if isIPXE(m) && j.served.Loader == "ipxe" {
		u := j.served.URLs["ipxe"]
		// Swap a wildcard listen host for the address the client can reach.
		if h, p, err := net.SplitHostPort(strings.TrimPrefix(d.s.HTTPURL(), "http://")); err == nil {
			if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
				u = strings.Replace(u, "http://"+net.JoinHostPort(h, p), "http://"+net.JoinHostPort(d.ip.String(), p), 1)
			}
		}
		return u
	}
	efi := false
	for _, a := range m.ClientArch() {
		if a != iana.INTEL_X86PC {
			efi = true
		}
	}
	switch j.served.Loader {
	case "ipxe":
		if efi {
			return "ipxe.efi"
		}
		return "undionly.kpxe"
	case "grub":
		return "grubnetx64.efi"
	}
	return j.served.BootFile
}
