package pxe_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// segment is a DHCP segment of the test's own: two network namespaces
// joined by a veth pair, the server's end (Srv, Addr/24) and the client's
// (Cli, no address, MAC set per run).
type segment struct {
	srvNS, cliNS string
	srv, cli     string
	addr         netip.Addr
	subnet       string // "10.77.N"
}

var segCount atomic.Int32

func newSegment(t *testing.T) *segment {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	need(t, "ip")
	n := segCount.Add(1)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, n)
	sub := fmt.Sprintf("10.77.%d", 10+n)
	g := &segment{
		srvNS: "bdhcp-s-" + id, cliNS: "bdhcp-c-" + id, srv: "bds" + id, cli: "bdc" + id, subnet: sub,
		addr: netip.MustParseAddr(sub + ".1"),
	}
	ip := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, ns := range []string{g.srvNS, g.cliNS} {
		if err := ip("netns", "add", ns); err != nil {
			t.Skipf("cannot create a network namespace: %v", err)
		}
		t.Cleanup(func() { ip("netns", "del", ns) })
	}
	for _, args := range [][]string{
		{"-n", g.srvNS, "link", "add", g.srv, "type", "veth", "peer", "name", g.cli, "netns", g.cliNS},
		{"-n", g.srvNS, "addr", "add", g.addr.String() + "/24", "dev", g.srv},
		{"-n", g.srvNS, "link", "set", "lo", "up"},
		{"-n", g.srvNS, "link", "set", g.srv, "up"},
		{"-n", g.cliNS, "link", "set", "lo", "up"},
		{"-n", g.cliNS, "link", "set", g.cli, "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// in runs fn on an OS thread inside ns (runtime/qemu's NetNS.Exec, what
// basalt run uses for a segment); sockets fn opens stay there.
func in(t *testing.T, ns string, fn func() error) error {
	t.Helper()
	return (&qemu.NetNS{Name: ns}).Exec(fn)
}

// serverConfig is the server-mode config of the segment: range .100-.109,
// router .1, DNS .53 and .54, lease 1h.
func (g *segment) serverConfig(t *testing.T) pxe.Config {
	t.Helper()
	r, err := lab.ParseDHCPRange(g.subnet + ".100-" + g.subnet + ".109")
	if err != nil {
		t.Fatal(err)
	}
	return pxe.Config{
		TFTPAddr: g.addr.String() + ":69", HTTPAddr: g.addr.String() + ":8080",
		DHCP: "server", DHCPInterface: g.srv, DHCPRange: r,
		DHCPRouter: g.addr,
		DHCPDNS:    []netip.Addr{netip.MustParseAddr(g.subnet + ".53"), netip.MustParseAddr(g.subnet + ".54")},
		DHCPLease:  time.Hour,
	}
}

// startIn starts a server-mode server inside the segment's server ns.
func (g *segment) startIn(t *testing.T, cfg pxe.Config) (*pxe.Server, *events, error) {
	t.Helper()
	ev := &events{}
	if cfg.LoaderDir == "" {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "pxelinux.0"), []byte("fake pxelinux.0\n"), 0o644)
		cfg.LoaderDir = dir
	}
	cfg.CacheDir = t.TempDir()
	cfg.Emit = ev.Emit
	s := pxe.NewServer(cfg)
	err := in(t, g.srvNS, func() error { return s.Start(context.Background()) })
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, ev, err
}

// udhcpcScript prints what busybox udhcpc got (its environment at
// "bound", udhcpc's networking/udhcp/dhcpc.c and simple.script).
const udhcpcScript = `#!/bin/sh
[ "$1" = bound ] || exit 0
for v in ip subnet router dns serverid siaddr boot_file lease broadcast; do
	eval "echo lease.$v=\$$v"
done
`

// udhcpc runs busybox udhcpc on the client end with mac, once, as a
// client after a reboot does (no address remembered), and returns what it
// was leased, or its output when it got nothing.
func (g *segment) udhcpc(t *testing.T, mac string, extra ...string) (map[string]string, string, error) {
	t.Helper()
	bb := need(t, "busybox")
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "-n", g.cliNS, "link", "set", g.cli, "address", mac).CombinedOutput(); err != nil {
		t.Fatalf("set mac: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"netns", "exec", g.cliNS, bb, "udhcpc", "-f", "-q", "-n", "-i", g.cli, "-s", script, "-t", "3", "-T", "1"}, extra...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "lease."), "="); ok && strings.HasPrefix(l, "lease.") {
			got[k] = v
		}
	}
	if err == nil && len(got) == 0 {
		err = errors.New("no bound event")
	}
	return got, string(out), err
}

const otherMAC = "02:00:00:00:99:01"

// TestDHCPServerUdhcpc: busybox udhcpc, a real DHCP client, gets a lease
// from server mode in a namespace of the test's own: an address of the
// range, mask, router, DNS and lease time from the config, next-server and
// boot file as the proxy hands them; the same address again after a
// "reboot" (a new client with no memory of it); and a MAC that is not the
// job's gets nothing and is recorded.
func TestDHCPServerUdhcpc(t *testing.T) {
	g := newSegment(t)
	s, ev, err := g.startIn(t, g.serverConfig(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	dir, _ := jobDir(t, 1000)
	serveJob(t, s, dir)

	got, out, err := g.udhcpc(t, testMAC)
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s\nevents:\n%s", err, out, ev)
	}
	sub := g.subnet
	want := map[string]string{
		"ip": sub + ".100", "subnet": "255.255.255.0", "router": sub + ".1", "dns": sub + ".53 " + sub + ".54",
		"serverid": sub + ".1", "siaddr": sub + ".1", "boot_file": "pxelinux.0", "lease": "3600", "broadcast": sub + ".255",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("udhcpc lease %s = %q, want %q", k, got[k], v)
		}
	}
	// A reboot: a new DISCOVER, the same address.
	again, out, err := g.udhcpc(t, testMAC)
	if err != nil || again["ip"] != got["ip"] {
		t.Errorf("udhcpc after a reboot: ip %q, %v, want %s\n%s", again["ip"], err, got["ip"], out)
	}
	// Asking for another address (option 50 in the DISCOVER) still gets
	// the lease: the device has one address for the job.
	if r, out, err := g.udhcpc(t, testMAC, "-r", sub+".105"); err != nil || r["ip"] != got["ip"] {
		t.Errorf("udhcpc -r %s.105: ip %q, %v, want %s\n%s", sub, r["ip"], err, got["ip"], out)
	}
	if l := s.Leases(); len(l) < 2 || l[0] != (pxe.Lease{MAC: testMAC, IP: sub + ".100", VendorClass: "udhcp 1.35.0"}) {
		t.Errorf("Leases() = %v, want %s for %s first", l, sub+".100", testMAC)
	}
	leases := ev.Events("dhcp_lease")
	if len(leases) < 2 || leases[0]["ip"] != sub+".100" || leases[0]["mac"] != testMAC {
		t.Errorf("dhcp_lease events = %v, want %s for %s", leases, sub+".100", testMAC)
	}

	// Another MAC on the segment is not leased to, and is recorded.
	if r, out, err := g.udhcpc(t, otherMAC); err == nil {
		t.Errorf("udhcpc with %s got %v, want no lease\n%s", otherMAC, r, out)
	}
	if !hasEvent(ev, "dhcp", "client", otherMAC, "outcome", "ignored", "reason", "other_mac") {
		t.Errorf("no ignored dhcp event for %s; events:\n%s", otherMAC, ev)
	}
}

func hasEvent(ev *events, typ string, kv ...string) bool {
	for _, e := range ev.Events(typ) {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(e[kv[i]]) != kv[i+1] {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestDHCPServerLikeDnsmasq is a differential test: udhcpc is leased the
// same options, in the same form, by dnsmasq configured as the lab is
// (range, router, DNS, lease, boot file) and by server mode.
func TestDHCPServerLikeDnsmasq(t *testing.T) {
	g := newSegment(t)
	sub := g.subnet
	builtinstest.Dnsmasq(t, g.srvNS, g.srv,
		"--dhcp-range="+sub+".100,"+sub+".109,255.255.255.0,1h",
		"--dhcp-option=option:router,"+sub+".1", "--dhcp-option=option:dns-server,"+sub+".53,"+sub+".54",
		"--dhcp-boot=pxelinux.0,,"+sub+".1")
	// -B: broadcast replies. Without it dnsmasq unicasts its offer to
	// the offered address, which udhcpc on this veth never saw (three
	// offers logged, "no lease"); basalt broadcasts either way.
	ref, out, err := g.udhcpc(t, testMAC, "-B")
	if err != nil {
		t.Fatalf("udhcpc against dnsmasq: %v\n%s", err, out)
	}
	if !strings.HasPrefix(ref["ip"], sub+".10") {
		t.Fatalf("dnsmasq leased %q, want an address of the range", ref["ip"])
	}
	g2 := newSegment(t)
	s, ev, err := g2.startIn(t, g2.serverConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := jobDir(t, 1000)
	serveJob(t, s, dir)
	got, out, err := g2.udhcpc(t, testMAC, "-B")
	if err != nil {
		t.Fatalf("udhcpc against basalt: %v\n%s\n%s", err, out, ev)
	}
	for _, k := range []string{"subnet", "router", "dns", "serverid", "siaddr", "boot_file", "lease", "broadcast"} {
		r := strings.ReplaceAll(ref[k], sub+".", "S.")
		b := strings.ReplaceAll(got[k], g2.subnet+".", "S.")
		if r != b {
			t.Errorf("option %s: basalt %q, dnsmasq %q", k, b, r)
		}
	}
}

// TestDHCPServerRogue: dnsmasq answering on the same segment is found
// from its offers (the server's probe at start), recorded with its server
// identifier and the address it offered.
func TestDHCPServerRogue(t *testing.T) {
	g := newSegment(t)
	sub := g.subnet
	rogue := sub + ".2"
	if out, err := exec.Command("ip", "-n", g.cliNS, "addr", "add", rogue+"/24", "dev", g.cli).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	builtinstest.Dnsmasq(t, g.cliNS, g.cli, "--dhcp-range="+sub+".200,"+sub+".209,255.255.255.0,1h")
	_, ev, err := g.startIn(t, g.serverConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !hasEvent(ev, "dhcp_rogue", "server_id", rogue) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	evs := ev.Events("dhcp_rogue")
	if len(evs) == 0 || evs[0]["server_id"] != rogue || !strings.HasPrefix(fmt.Sprint(evs[0]["yiaddr"]), sub+".20") {
		t.Fatalf("dhcp_rogue events = %v, want dnsmasq %s offering from .200-.209", evs, rogue)
	}
	if hasEvent(ev, "dhcp_rogue", "server_id", g.addr.String()) {
		t.Errorf("the server reported itself as a rogue: %v", evs)
	}
}

// A dhcp_interface that does not exist, or has no IPv4 address, fails
// Start with its name, before anything listens.
func TestDHCPServerBadInterface(t *testing.T) {
	g := newSegment(t)
	cfg := g.serverConfig(t)
	cfg.DHCPInterface = "nosuch0"
	if _, _, err := g.startIn(t, cfg); err == nil || !strings.Contains(err.Error(), `dhcp_interface "nosuch0": no such interface`) {
		t.Errorf("Start with a missing interface = %v, want it named", err)
	}
	cfg.DHCPInterface = "lo"
	if out, err := exec.Command("ip", "-n", g.srvNS, "addr", "flush", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, _, err := g.startIn(t, cfg); err == nil || !strings.Contains(err.Error(), `dhcp_interface "lo" has no IPv4 address`) {
		t.Errorf("Start on an interface without an address = %v, want it named", err)
	}
	cfg.DHCPInterface = g.srv
	cfg.DHCPRange, _ = lab.ParseDHCPRange("10.1.2.3-10.1.2.9")
	if _, _, err := g.startIn(t, cfg); err == nil || !strings.Contains(err.Error(), "dhcp range 10.1.2.3-10.1.2.9 is not inside the subnet "+g.subnet+".0/24") {
		t.Errorf("Start with a range off the interface's subnet = %v, want it said", err)
	}
}

// With SocketsIn the server opens every socket in the namespace, the
// per-transfer TFTP sockets too: busybox tftp in the client namespace
// fetches a loader from it.
func TestServerSocketsInNamespace(t *testing.T) {
	g := newSegment(t)
	cfg := g.serverConfig(t)
	cfg.SocketsIn = func(fn func() error) error { return in(t, g.srvNS, fn) }
	ev := &events{}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pxelinux.0"), []byte("fake pxelinux.0\n"), 0o644)
	cfg.LoaderDir, cfg.CacheDir, cfg.Emit = dir, t.TempDir(), ev.Emit
	s := pxe.NewServer(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	if out, err := exec.Command("ip", "-n", g.cliNS, "addr", "add", g.subnet+".100/24", "dev", g.cli).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := filepath.Join(t.TempDir(), "got")
	out, err := exec.Command("ip", "netns", "exec", g.cliNS, need(t, "busybox"), "tftp", "-g", "-r", "pxelinux.0", "-l", got, g.addr.String()).CombinedOutput()
	if b, _ := os.ReadFile(got); err != nil || string(b) != "fake pxelinux.0\n" {
		t.Errorf("busybox tftp from the namespace: %v, %q\n%s\nevents:\n%s", err, b, out, ev)
	}
}

// A REQUEST for an address that is not the client's lease (INIT-REBOOT
// with a remembered address from elsewhere) is answered NAK (RFC 2131
// 4.3.2); one for the lease is answered ACK.
func TestDHCPServerNAK(t *testing.T) {
	g := newSegment(t)
	s, ev, err := g.startIn(t, g.serverConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := jobDir(t, 1000)
	serveJob(t, s, dir)
	if out, err := exec.Command("ip", "-n", g.cliNS, "link", "set", g.cli, "address", testMAC).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ask := func(want string) dhcpv4.MessageType {
		var got dhcpv4.MessageType
		err := in(t, g.cliNS, func() error {
			conn, err := server4.NewIPv4UDPConn(g.cli, &net.UDPAddr{IP: net.IPv4zero, Port: 68})
			if err != nil {
				return err
			}
			defer conn.Close()
			hw, _ := net.ParseMAC(testMAC)
			m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithBroadcast(true),
				dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(want))))
			if err != nil {
				return err
			}
			if _, err := conn.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
				return err
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1500)
			for {
				n, _, err := conn.ReadFrom(buf)
				if err != nil {
					return err
				}
				if r, err := dhcpv4.FromBytes(buf[:n]); err == nil && r.TransactionID == m.TransactionID && r.OpCode == dhcpv4.OpcodeBootReply {
					got = r.MessageType()
					return nil
				}
			}
		})
		if err != nil {
			t.Fatalf("REQUEST %s: %v\nevents:\n%s", want, err, ev)
		}
		return got
	}
	if got := ask(g.subnet + ".105"); got != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST %s.105 (not the lease) = %s, want NAK", g.subnet, got)
	}
	if got := ask(g.subnet + ".100"); got != dhcpv4.MessageTypeAck {
		t.Errorf("REQUEST %s.100 (the lease) = %s, want ACK", g.subnet, got)
	}
}
