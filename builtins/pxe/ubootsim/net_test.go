package ubootsim_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/pxe/ubootsim"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
)

const boardMAC = "52:54:00:12:34:56"

// wire is a segment of the test's own: the server's namespace (address
// .1/24 on srv) and the board's (its NIC, no address until a lease),
// joined by a veth pair.
type wire struct {
	srvNS, brdNS, srv, nic, subnet string
	addr                           string
}

var wires atomic.Int32

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newWire(t *testing.T) *wire {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2)")
	}
	n := wires.Add(1)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, n)
	w := &wire{srvNS: "bub-s-" + id, brdNS: "bub-b-" + id, srv: "bus" + id, nic: "bub" + id, subnet: fmt.Sprintf("10.78.%d", 10+n)}
	w.addr = w.subnet + ".1"
	for _, ns := range []string{w.srvNS, w.brdNS} {
		if err := ipCmd("netns", "add", ns); err != nil {
			t.Skipf("cannot create a network namespace: %v", err)
		}
		t.Cleanup(func() { ipCmd("netns", "del", ns) })
	}
	for _, args := range [][]string{
		{"-n", w.srvNS, "link", "add", w.srv, "type", "veth", "peer", "name", w.nic, "netns", w.brdNS},
		{"-n", w.srvNS, "addr", "add", w.addr + "/24", "dev", w.srv},
		{"-n", w.srvNS, "link", "set", "lo", "up"},
		{"-n", w.srvNS, "link", "set", w.srv, "up"},
		{"-n", w.brdNS, "link", "set", "lo", "up"},
		{"-n", w.brdNS, "link", "set", w.nic, "address", boardMAC},
		{"-n", w.brdNS, "link", "set", w.nic, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// link is the board's NIC in its namespace; the lease goes on it with ip.
func (w *wire) link() *ubootsim.Link {
	return &ubootsim.Link{Interface: w.nic, Exec: (&qemu.NetNS{Name: w.brdNS}).Exec,
		SetAddr: func(ip net.IP, mask net.IPMask) error {
			ones, _ := mask.Size()
			return ipCmd("-n", w.brdNS, "addr", "replace", fmt.Sprintf("%s/%d", ip, ones), "dev", w.nic)
		}}
}

// events records the pxe server's events.
type events struct {
	mu sync.Mutex
	ev []map[string]any
}

func (e *events) emit(typ string, f map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f["event"] = typ
	e.ev = append(e.ev, f)
}

func (e *events) of(typ string) []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []map[string]any
	for _, f := range e.ev {
		if f["event"] == typ {
			out = append(out, f)
		}
	}
	return out
}

// basalt starts basalt's pxe server in the server namespace with cfg's
// DHCP mode and serves the rig's files to the board's MAC.
func (w *wire) basalt(t *testing.T, cfg pxe.Config) (*pxe.Served, *events, []byte) {
	t.Helper()
	ev := &events{}
	cfg.TFTPAddr, cfg.HTTPAddr = w.addr+":69", w.addr+":8080"
	cfg.DHCPInterface = w.srv
	cfg.LoaderDir, cfg.CacheDir, cfg.Emit = t.TempDir(), t.TempDir(), ev.emit
	// Every socket of the server in its namespace, the per-transfer TFTP
	// ones too.
	cfg.SocketsIn = (&qemu.NetNS{Name: w.srvNS}).Exec
	s := pxe.NewServer(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start basalt's pxe server: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	dir := t.TempDir()
	k := zImage(70000)
	os.WriteFile(filepath.Join(dir, "zImage"), k, 0o644)
	os.WriteFile(filepath.Join(dir, "initrd.gz"), []byte(strings.Repeat("initrd", 1000)), 0o644)
	sv, err := s.Serve(context.Background(), pxe.Boot{Kernel: "zImage", Initrd: "initrd.gz", Append: "console=ttyAMA0",
		MAC: boardMAC, JobDir: dir, NoConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	return sv, ev, k
}

// boot powers the board on with its NIC on the wire and stops autoboot.
func boot(t *testing.T, link *ubootsim.Link) (*console, func(cmd, want string)) {
	t.Helper()
	c := newConsole()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ubootsim.Run(ctx, ubootsim.Config{Console: c, Store: &ubootsim.Store{}, MAC: boardMAC, BootDelay: 1, Link: link})
	}()
	t.Cleanup(func() { cancel(); c.w.Close(); <-done })
	at := c.expect(t, 0, `Hit any key`)
	c.send(t, " ")
	at = c.expect(t, at, "=> $")
	return c, c.runner(t, &at)
}

// dhcpTypes are the message types basalt's DHCP saw from the board, with
// the vendor class each carried.
func dhcpTypes(ev *events) []string {
	var out []string
	for _, e := range ev.of("dhcp") {
		out = append(out, fmt.Sprintf("%v/%v", e["type"], e["vendor_class"]))
	}
	return out
}

// U-Boot's dhcp against basalt's own DHCP server (server mode): DISCOVER
// and REQUEST with U-Boot's vendor class, the lease and next-server in the
// environment, tftpboot over the NIC from basalt's TFTP server, and dhcp
// with autoload loading the file named on its command line.
func TestDHCPBasaltServer(t *testing.T) {
	w := newWire(t)
	r, err := lab.ParseDHCPRange(w.subnet + ".100-" + w.subnet + ".109")
	if err != nil {
		t.Fatal(err)
	}
	sv, ev, k := w.basalt(t, pxe.Config{DHCP: "server", DHCPRange: r, DHCPRouter: netip.MustParseAddr(w.addr),
		DHCPDNS: []netip.Addr{netip.MustParseAddr(w.subnet + ".53")}, DHCPLease: time.Hour})
	_, run := boot(t, w.link())
	run("setenv autoload no; dhcp", `^BOOTP broadcast 1\r\n(BOOTP broadcast \d+\r\n)*DHCP client bound to address `+regexp.QuoteMeta(w.subnet)+`\.100 \(\d+ ms\)\r\n`)
	run("printenv ipaddr serverip netmask gatewayip dnsip", fmt.Sprintf("ipaddr=%[1]s.100\r\nserverip=%[1]s.1\r\nnetmask=255.255.255.0\r\ngatewayip=%[1]s.1\r\ndnsip=%[1]s.53\r\n", w.subnet))
	if got := dhcpTypes(ev); len(got) < 2 || got[0] != "DISCOVER/U-Boot.armv7" || got[len(got)-1] != "REQUEST/U-Boot.armv7" {
		t.Errorf("basalt's DHCP saw %v, want DISCOVER then REQUEST from U-Boot.armv7", got)
	}
	if l := ev.of("dhcp_lease"); len(l) != 1 || l[0]["ip"] != w.subnet+".100" || l[0]["vendor_class"] != "U-Boot.armv7" {
		t.Errorf("dhcp_lease events = %v, want %s.100 to U-Boot.armv7", l, w.subnet)
	}
	run("tftpboot ${kernel_addr_r} "+sv.Files["kernel"], fmt.Sprintf(`TFTP from server %s\.1; our IP address is %s\.100\r\n(?s:.*)Bytes transferred = %d \(`, w.subnet, w.subnet, len(k)))
	run("setenv autoload yes; dhcp ${ramdisk_addr_r} "+sv.Files["initrd"],
		`DHCP client bound to address .*\r\nUsing eth_xgmac device\r\nTFTP from server `+regexp.QuoteMeta(w.addr)+`(?s:.*)Bytes transferred = 6000 \(1770 hex\)\r\n`)
	// The name on the command line beats the server's, and is bootfile now.
	run("printenv bootfile", "bootfile="+regexp.QuoteMeta(sv.Files["initrd"])+"\r\n")
	run("wget ${kernel_addr_r} /"+sv.Files["kernel"], "") // httpdstp unset: port 80, nothing there
	run("setenv httpdstp 8080; wget ${kernel_addr_r} /"+sv.Files["kernel"], `Transfer Successful\r\nBytes transferred = 70000 `)
}

// U-Boot's dhcp against dnsmasq, the real peer: its offer is unicast to
// the offered address (U-Boot sets no broadcast flag) and still taken; an
// option U-Boot does not know is printed;
// with autoload the boot file dnsmasq names comes from dnsmasq's own TFTP
// server, siaddr and file into serverip and bootfile.
func TestDHCPDnsmasq(t *testing.T) {
	w := newWire(t)
	root := t.TempDir()
	k := zImage(50000)
	os.WriteFile(filepath.Join(root, "zImage"), k, 0o644)
	builtinstest.Dnsmasq(t, w.srvNS, w.srv, "--dhcp-range="+w.subnet+".150,"+w.subnet+".159,255.255.255.0,1h",
		"--enable-tftp", "--tftp-root="+root, "--dhcp-boot=zImage,,"+w.addr,
		"--dhcp-vendorclass=set:uboot,U-Boot.armv7", "--dhcp-option=tag:uboot,option:root-path,/srv/nfs/board",
		"--dhcp-option-force=option:ntp-server,"+w.addr)
	c, run := boot(t, w.link())
	// Option 42 unasked for: Highbank's U-Boot has no SNTP and says so,
	// for the OFFER and again for the ACK.
	run("dhcp", `BOOTP broadcast 1\r\n(BOOTP broadcast \d+\r\n)*\*\*\* Unhandled DHCP Option in OFFER/ACK: 42\r\n\*\*\* Unhandled DHCP Option in OFFER/ACK: 42\r\nDHCP client bound to address `+regexp.QuoteMeta(w.subnet)+`\.15\d \(\d+ ms\)\r\n`+
		`Using eth_xgmac device\r\nTFTP from server `+regexp.QuoteMeta(w.addr)+`; our IP address is `+regexp.QuoteMeta(w.subnet)+`\.15\d\r\nFilename 'zImage'\.\r\n(?s:.*)Bytes transferred = 50000 \(c350 hex\)\r\n`)
	run("printenv bootfile serverip rootpath", fmt.Sprintf("bootfile=zImage\r\nserverip=%s\r\nrootpath=/srv/nfs/board\r\n", w.addr))
	c.send(t, "bootz\r")
	c.expect(t, 0, `Kernel image @ 0x800000 (?s:.*)Starting kernel`)
}

// The lab of a site DHCP (dnsmasq, addresses only) and basalt's proxy
// DHCP: U-Boot takes the site's lease and ignores the proxy's answer,
// which has no address (it is no PXE ROM: no CONFIG_SERVERIP_FROM_PROXYDHCP),
// so serverip is the site server's; the proxy saw U-Boot's DISCOVER.
func TestDHCPSiteAndBasaltProxy(t *testing.T) {
	w := newWire(t)
	builtinstest.Dnsmasq(t, w.srvNS, w.srv, "--dhcp-range="+w.subnet+".150,"+w.subnet+".159,255.255.255.0,1h")
	sv, ev, _ := w.basalt(t, pxe.Config{DHCP: "proxy"})
	_, run := boot(t, w.link())
	run("setenv autoload no; dhcp", `DHCP client bound to address `+regexp.QuoteMeta(w.subnet)+`\.15\d \(\d+ ms\)\r\n`)
	run("printenv serverip", "serverip="+regexp.QuoteMeta(w.addr)+"\r\n")
	if got := dhcpTypes(ev); len(got) == 0 || got[0] != "DISCOVER/U-Boot.armv7" {
		t.Errorf("basalt's proxy saw %v, want U-Boot's DISCOVER", got)
	}
	run(fmt.Sprintf("tftpboot ${kernel_addr_r} %s:%s", w.addr, sv.Files["kernel"]), `Bytes transferred = 70000 `)
}

// With no DHCP server reachable (no Link: the sim on loopback) dhcp does
// what U-Boot does when nothing answers: broadcasts at 250 ms doubling,
// "Retry time exceeded" after bootpretryperiod, and fails; netretry once
// starts over one more time. The static address stays.
func TestDHCPNoServer(t *testing.T) {
	c := newConsole()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer c.w.Close()
	go ubootsim.Run(ctx, ubootsim.Config{Console: c, Store: &ubootsim.Store{}, MAC: boardMAC, BootDelay: 1, IP: "127.0.0.7", ServerIP: "127.0.0.1"})
	at := c.expect(t, 0, `Hit any key`)
	c.send(t, " ")
	at = c.expect(t, at, "=> $")
	c.send(t, "setenv bootpretryperiod 1000; dhcp\r")
	// Three broadcasts in 1 s (0, 250, 750 ms), as real U-Boot sends
	// (TestDifferentialRealUBootDHCP); how many is the scheduler's, not
	// asserted here.
	at = c.expect(t, at, `^.*\r\nBOOTP broadcast 1\r\n(BOOTP broadcast \d\r\n)*\r\nRetry time exceeded; starting again\r\n=> $`)
	c.send(t, "setenv netretry once; dhcp\r")
	at = c.expect(t, at, `^.*\r\nBOOTP broadcast 1\r\n(BOOTP broadcast \d\r\n)+\r\nRetry time exceeded; starting again\r\nBOOTP broadcast 1\r\n(BOOTP broadcast \d\r\n)+\r\nRetry time exceeded; starting again\r\n=> $`)
	c.send(t, "printenv ipaddr serverip\r")
	at = c.expect(t, at, "ipaddr=127.0.0.7\r\nserverip=127.0.0.1\r\n=> $")
	// ^C ends the wait, as net_loop's ctrlc() does.
	c.send(t, "setenv bootpretryperiod; dhcp\r")
	at = c.expect(t, at, `BOOTP broadcast 2\r\n`)
	c.send(t, "\x03")
	c.expect(t, at, "\r\nAbort\r\n=> $")
}

// A Link whose interface is not there: U-Boot's "No ethernet found.", a
// failed command, not a retry, even with netretry yes.
func TestDHCPNoEthernet(t *testing.T) {
	c, run := boot(t, &ubootsim.Link{Interface: "nosuch-nic0"})
	run("setenv netretry yes; dhcp", `^No ethernet found\.\r\n`)
	if strings.Count(c.out(), "No ethernet found.") != 1 {
		t.Errorf("dhcp retried a NIC that is not there:\n%s", c.out())
	}
}
