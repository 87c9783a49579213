package ubootsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Link is the board's NIC on a network with a DHCP server on it (a veth
// in a namespace of its own, joined to a segment's bridge). U-Boot has an
// IP stack of its own; the sim stands in for it with the kernel's: DHCP
// over a raw packet socket on Interface (an interface with no address
// yet, as U-Boot's NIC is before its lease), and, once bound, the leased
// address given to Interface (SetAddr) so that TFTP and HTTP go out of it.
type Link struct {
	// Interface is the NIC's interface, in the namespace Exec enters.
	Interface string
	// Exec runs fn where Interface is (a network namespace: every socket
	// of the board is opened in fn); nil runs it here.
	Exec func(fn func() error) error
	// SetAddr gives Interface the leased address; nil leaves it alone.
	SetAddr func(ip net.IP, mask net.IPMask) error
}

func (l *Link) exec(fn func() error) error {
	if l == nil || l.Exec == nil {
		return fn()
	}
	return l.Exec(fn)
}

// net/bootp.c's constants for Highbank (highbank_defconfig, an ARMv7
// board; cmd/Kconfig and net/Kconfig defaults).
const (
	// TIMEOUT_MS with CONFIG_NET_RETRY_COUNT 5: how long DISCOVERs are
	// sent before "Retry time exceeded" (bootpretryperiod overrides it).
	bootpTimeoutMS = (3 + 5*5) * 1000
	// CONFIG_BOOTP_VCI_STRING for CPU_V7A.
	vendorClass = "U-Boot.armv7"
	// CONFIG_BOOTP_PXE_CLIENTARCH for ARM (RFC 4578 0x15, ARM 32-bit
	// UEFI).
	clientArch = 0x15
	// Option 57: 576 - 312 + OPT_FIELD_SIZE (312 with CONFIG_CMD_DHCP).
	maxMessageSize = 576
	// dhcp_handler's wait for the ACK after the REQUEST.
	requestTimeout = 5 * time.Second
	// CONFIG_BOOTP_ID_CACHE_SIZE: the xids a reply may answer.
	idCacheSize = 4
)

// The Parameter Request List: CONFIG_BOOTP_SUBNETMASK, _GATEWAY, _DNS,
// _HOSTNAME and _BOOTPATH, the ones on by default, in dhcp_extended's order.
var paramRequest = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionHostName, dhcpv4.OptionRootPath,
}

// handledOptions are the options dhcp_process_options takes or ignores
// on purpose (Highbank has no SNTP, so 2 and 42 are not among them); any
// other one in an OFFER or ACK is printed as unhandled.
var handledOptions = map[byte]bool{1: true, 3: true, 6: true, 12: true, 15: true, 17: true, 28: true,
	51: true, 52: true, 53: true, 54: true, 58: true, 59: true, 66: true, 67: true}

// lease is what a DHCP exchange gave (net/bootp.c's net_* globals).
type lease struct {
	ip, server, mask, gateway, dns net.IP
	hostname, rootPath, bootFile   string
}

// errNoLease ends an exchange that got no ACK in time.
var errNoLease = errors.New("no DHCP lease")

// errAbort is ^C during the net loop.
var errAbort = errors.New("abort")

// errNoEthernet is a Link whose interface cannot be opened.
var errNoEthernet = errors.New("no ethernet")

// dhcp is cmd/net.c's do_dhcp, netboot_common around net_loop(DHCP):
// net/bootp.c's exchange (DISCOVER, OFFER, REQUEST, ACK) on the board's
// Link, the environment from the ACK, then, unless autoload is off, the
// boot file over TFTP (net_auto_load).
func (b *board) dhcp(ctx context.Context, argv []string) int {
	addr, _, _, ok := b.loadArgs(argv)
	if !ok {
		return b.usage("dhcp", "[loadAddress] [[hostIPaddr:]bootfilename]")
	}
	// net_boot_file_name: the name on the command line as typed (with a
	// hostIPaddr: prefix) beats the server's (net_boot_file_name_explicit);
	// else the environment's bootfile, sent in the DISCOVER's file field
	// and replaced by the reply's.
	explicit := len(argv) == 3 || (len(argv) == 2 && !isHex(argv[1]))
	name := b.env["bootfile"]
	if explicit {
		name = argv[len(argv)-1]
	}
	mac, err := net.ParseMAC(b.env["ethaddr"])
	if err != nil || len(mac) != 6 {
		b.printf("*** ERROR: `ethaddr' not set\n")
		return 1
	}
	// net_start_again: netretry "yes" forever, "no" (and unset) never,
	// "once" or a number that many more times.
	retries, forever := 0, false
	switch v := b.env["netretry"]; v {
	case "", "no":
	case "yes":
		forever = true
	case "once":
		retries = 1
	default:
		n, _ := strconv.ParseUint(v, 0, 32) // simple_strtoul, base 0
		retries = int(n)
	}
	var l *lease
	for try := 1; ; try++ {
		l, err = b.exchange(ctx, mac, name)
		if err == nil || errors.Is(err, errAbort) || errors.Is(err, errNoEthernet) || ctx.Err() != nil {
			break
		}
		if !forever && try > retries {
			break
		}
	}
	if err != nil {
		return 1
	}
	// store_bootp_params: the boot file goes to the environment at once
	// (the explicit one too); netboot_update_env sets the rest after
	// net_loop.
	if !explicit && l.bootFile != "" {
		name = l.bootFile
	}
	if name != "" {
		b.env["bootfile"] = name
	}
	// tftp_start: a hostIPaddr: prefix names the server, else siaddr,
	// else the serverip from before.
	_, server, file, _ := b.loadArgs([]string{"dhcp", "0", name})
	if server == "" && l.server != nil {
		server = l.server.String()
	}
	if server == "" {
		server = b.env["serverip"]
	}
	update := func() {
		for k, ip := range map[string]net.IP{"gatewayip": l.gateway, "netmask": l.mask, "ipaddr": l.ip, "serverip": l.server, "dnsip": l.dns} {
			if ip != nil && !ip.IsUnspecified() {
				b.env[k] = ip.String()
			}
		}
		if l.hostname != "" {
			b.env["hostname"] = l.hostname
		}
		if l.rootPath != "" {
			b.env["rootpath"] = l.rootPath
		}
	}
	if yesno(b.env["autoload"]) == 0 {
		update()
		return 0
	}
	if server == "" {
		b.printf("*** ERROR: `serverip' not set\nCannot autoload with TFTPGET\n")
		return 1
	}
	b.env["ipaddr"] = l.ip.String()
	if file == "" {
		ip := l.ip.To4()
		file = fmt.Sprintf("%02X%02X%02X%02X.img", ip[0], ip[1], ip[2], ip[3])
		b.printf("*** Warning: no boot file name; using '%s'\n", file)
	}
	data, err := b.tftp(ctx, addr, server, file)
	if err != nil {
		return 1
	}
	update()
	b.store(addr, data)
	b.printf("Bytes transferred = %d (%x hex)\n", len(data), len(data))
	b.env["filesize"] = fmt.Sprintf("%x", len(data))
	b.env["fileaddr"] = fmt.Sprintf("%x", addr)
	return 0
}

func isHex(s string) bool { _, err := parseHex(s); return err == nil }

// yesno is lib's env_get_yesno: 1 for y, t, 1; 0 for n, f, 0 (the first
// character, either case); -1 otherwise or unset.
func yesno(v string) int {
	if v == "" {
		return -1
	}
	switch v[0] {
	case 'y', 'Y', 't', 'T', '1':
		return 1
	case 'n', 'N', 'f', 'F', '0':
		return 0
	}
	return -1
}

// packet is one datagram read from the board's socket.
type packet struct {
	b   []byte
	err error
}

// exchange is one net_loop start of DHCP (bootp_reset, bootp_request and
// dhcp_handler): DISCOVERs at 250 ms doubling to 2 s until an OFFER with
// an address, a REQUEST for it, the ACK; "Retry time exceeded" after
// bootpretryperiod ms (TIMEOUT_MS). Without a Link nothing is on the
// wire and nothing answers.
func (b *board) exchange(ctx context.Context, mac net.HardwareAddr, file string) (*lease, error) {
	start := time.Now()
	max := time.Duration(bootpTimeoutMS) * time.Millisecond
	if v, err := strconv.ParseUint(b.env["bootpretryperiod"], 10, 32); err == nil {
		max = time.Duration(v) * time.Millisecond
	}
	pkts := make(chan packet, 16)
	var conn net.PacketConn
	if b.cfg.Link != nil {
		err := b.cfg.Link.exec(func() (err error) {
			conn, err = nclient4.NewRawUDPConn(b.cfg.Link.Interface, dhcpv4.ClientPort)
			return err
		})
		if err != nil {
			// No such NIC: eth_init fails, as U-Boot's does without
			// one, and net_loop returns without starting again.
			b.printf("No ethernet found.\n")
			return nil, fmt.Errorf("%w: %v", errNoEthernet, err)
		}
		defer conn.Close()
		go func() {
			for {
				buf := make([]byte, 1500)
				n, _, err := conn.ReadFrom(buf)
				select {
				case pkts <- packet{buf[:n], err}:
				default: // the board is not listening; the packet is lost
				}
				if err != nil {
					return
				}
			}
		}()
	}
	var ids []dhcpv4.TransactionID
	try := 0
	timeout := 250 * time.Millisecond
	send := func(m *dhcpv4.DHCPv4) {
		if conn != nil {
			conn.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort})
		}
	}
	discover := func() {
		try++
		b.printf("BOOTP broadcast %d\n", try)
		// The xid is the MAC's low four bytes plus the ms timer.
		var xid dhcpv4.TransactionID
		binary.BigEndian.PutUint32(xid[:], binary.BigEndian.Uint32(mac[2:])+uint32(time.Since(b.started).Milliseconds()))
		if len(ids) == idCacheSize {
			ids = ids[1:]
		}
		ids = append(ids, xid)
		send(b.request(dhcpv4.MessageTypeDiscover, xid, mac, file, start, nil, nil))
	}
	discover()
	requesting := false
	deadline := time.Now().Add(timeout)
	for {
		var p packet
		t := time.NewTimer(time.Until(deadline))
		select {
		case p = <-pkts:
		case <-t.C:
		case c := <-b.keys:
			t.Stop()
			if c != 0x03 {
				continue // net_loop's ctrlc() reads the key and drops it
			}
			b.printf("\nAbort\n")
			return nil, errAbort
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
		if p.b == nil && p.err == nil {
			// bootp_timeout_handler.
			if time.Since(start) >= max {
				b.printf("\nRetry time exceeded; starting again\n")
				return nil, errNoLease
			}
			timeout = min(2*timeout, 2*time.Second)
			requesting = false
			discover()
			deadline = time.Now().Add(timeout)
			continue
		}
		if p.err != nil {
			continue // the reader stopped; wait out the timeout
		}
		m, err := dhcpv4.FromBytes(p.b)
		// check_reply_packet, and a reply without an address (a proxy
		// DHCP's) is not one to take (no CONFIG_SERVERIP_FROM_PROXYDHCP).
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.HWType != 1 || len(m.ClientHWAddr) != 6 ||
			!containsID(ids, m.TransactionID) || !equalMAC(m.ClientHWAddr, mac) ||
			m.YourIPAddr == nil || m.YourIPAddr.IsUnspecified() {
			continue
		}
		if !requesting {
			// SELECTING: the first OFFER is taken.
			l := b.options(p.b)
			requesting = true
			deadline = time.Now().Add(requestTimeout)
			send(b.request(dhcpv4.MessageTypeRequest, m.TransactionID, mac, file, start, l.server0, m.YourIPAddr))
			continue
		}
		if m.MessageType() != dhcpv4.MessageTypeAck {
			continue // a NAK or another OFFER: the timeout starts again
		}
		l := b.options(p.b)
		l.ip = m.YourIPAddr
		// store_bootp_params: siaddr is the next server; the file field
		// beats option 67 unless option 52 put options in it.
		if m.ServerIPAddr != nil && !m.ServerIPAddr.IsUnspecified() {
			l.server = m.ServerIPAddr
		}
		if l.overload&1 == 0 && m.BootFileName != "" {
			l.bootFile = m.BootFileName
		}
		b.printf("DHCP client bound to address %s (%d ms)\n", l.ip, time.Since(start).Milliseconds())
		if b.cfg.Link != nil && b.cfg.Link.SetAddr != nil {
			mask := net.IPMask(l.mask.To4())
			if l.mask == nil {
				mask = l.ip.DefaultMask()
			}
			if err := b.cfg.Link.SetAddr(l.ip, mask); err != nil {
				b.printf("*** ERROR: cannot use %s: %v\n", l.ip, err)
				return nil, err
			}
		}
		return &l.lease, nil
	}
}

func containsID(ids []dhcpv4.TransactionID, id dhcpv4.TransactionID) bool {
	for _, i := range ids {
		if i == id {
			return true
		}
	}
	return false
}

func equalMAC(a, b net.HardwareAddr) bool { return string(a) == string(b) }

// request is bootp_request's and dhcp_send_request_packet's packet with
// dhcp_extended's options: message type, maximum size, server identifier
// and requested address (REQUEST), client architecture, network interface
// identifier (UNDI 1.0.0), vendor class (bootp_vci overrides it; bootp_arch
// the architecture), parameter request list. No broadcast flag: U-Boot
// takes a unicast reply at its MAC.
func (b *board) request(typ dhcpv4.MessageType, xid dhcpv4.TransactionID, mac net.HardwareAddr, file string, start time.Time, server, requested net.IP) *dhcpv4.DHCPv4 {
	arch := uint16(clientArch)
	if v, err := strconv.ParseUint(b.env["bootp_arch"], 16, 16); err == nil {
		arch = uint16(v)
	}
	vci := vendorClass
	if v, ok := b.env["bootp_vci"]; ok {
		vci = v
	}
	m := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootRequest, HWType: 1, TransactionID: xid,
		NumSeconds:   uint16(time.Since(start) / time.Second),
		ClientHWAddr: mac, ClientIPAddr: net.IPv4zero, YourIPAddr: net.IPv4zero,
		ServerIPAddr: net.IPv4zero, GatewayIPAddr: net.IPv4zero,
		BootFileName: file,
		Options:      dhcpv4.Options{},
	}
	m.UpdateOption(dhcpv4.OptMessageType(typ))
	m.UpdateOption(dhcpv4.OptMaxMessageSize(maxMessageSize))
	if server != nil {
		m.UpdateOption(dhcpv4.OptServerIdentifier(server))
	}
	if requested != nil {
		m.UpdateOption(dhcpv4.OptRequestedIPAddress(requested))
	}
	if arch > 0 {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(arch >> 8), byte(arch)}))
	}
	m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 0, 0}))
	if vci != "" {
		m.UpdateOption(dhcpv4.OptClassIdentifier(vci))
	}
	m.UpdateOption(dhcpv4.OptParameterRequestList(paramRequest...))
	return m
}

// optLease is a lease being read from a reply's options, with what only
// the exchange needs.
type optLease struct {
	lease
	server0  net.IP // option 54, the server identifier
	overload byte
}

// options is dhcp_packet_process_options: the options field in packet
// order, then the file and sname fields when option 52 says they hold
// options; an option U-Boot does not know is printed.
func (b *board) options(pkt []byte) optLease {
	var l optLease
	if len(pkt) < 240 || binary.BigEndian.Uint32(pkt[236:]) != 0x63825363 {
		return l
	}
	b.walkOptions(&l, pkt[240:])
	if l.overload&1 != 0 {
		b.walkOptions(&l, pkt[108:236])
	}
	if l.overload&2 != 0 {
		b.walkOptions(&l, pkt[44:108])
	}
	return l
}

func (b *board) walkOptions(l *optLease, p []byte) {
	ip := func(v []byte) net.IP {
		if len(v) < 4 {
			return nil
		}
		return net.IPv4(v[0], v[1], v[2], v[3])
	}
	for len(p) > 0 && p[0] != 0xff {
		if p[0] == 0 {
			p = p[1:]
			continue
		}
		if len(p) < 2 || len(p) < 2+int(p[1]) {
			return
		}
		code, v := p[0], p[2:2+int(p[1])]
		p = p[2+int(p[1]):]
		switch code {
		case 1:
			l.mask = ip(v)
		case 3:
			l.gateway = ip(v)
		case 6:
			l.dns = ip(v)
		case 12:
			l.hostname = truncate(b, "Host Name", v, 32)
		case 17:
			l.rootPath = truncate(b, "Root Path", v, 64) // CONFIG_BOOTP_MAX_ROOT_PATH_LEN
		case 52:
			if len(v) > 0 {
				l.overload = v[0]
			}
		case 54:
			l.server0 = ip(v)
		case 67:
			l.bootFile = truncate(b, "Bootfile", v, 128)
		default:
			if !handledOptions[code] {
				b.printf("*** Unhandled DHCP Option in OFFER/ACK: %d\n", code)
			}
		}
	}
}

// truncate is net/bootp.c's truncate_sz for a field of max bytes with
// its NUL.
func truncate(b *board, name string, v []byte, max int) string {
	if len(v) >= max {
		b.printf("*** WARNING: %s is too long (%d - max: %d) - truncated\n", name, len(v), max)
		v = v[:max-1]
	}
	return strings.TrimRight(string(v), "\x00")
}
