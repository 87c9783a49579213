package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/initrd"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// eventLog records a pxe server's events with the time each arrived.
type eventLog struct {
	mu  sync.Mutex
	evs []timedEvent
}

type timedEvent struct {
	at     time.Time
	typ    string
	fields map[string]any
}

func (l *eventLog) emit(typ string, f map[string]any) {
	l.mu.Lock()
	l.evs = append(l.evs, timedEvent{time.Now(), typ, f})
	l.mu.Unlock()
}

func (l *eventLog) all() []timedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]timedEvent(nil), l.evs...)
}

func (l *eventLog) String() string {
	var b strings.Builder
	for _, e := range l.all() {
		fmt.Fprintf(&b, "%s %s %v\n", e.at.Format("15:04:05.000"), e.typ, e.fields)
	}
	return b.String()
}

// TestPXEBootServerDHCP PXE-boots the master image with basalt as the
// segment's only DHCP server (server mode; no dnsmasq): the NIC's iPXE
// ROM, a real PXE client, is leased an address with the boot file, loads
// the script, kernel and initrd over HTTP, and the master image's
// udhcpc, a second client on the same MAC after the "reboot" into Linux,
// is leased the same address. It logs how long iPXE took from its first
// DISCOVER to the script's fetch: with no IPv6 router advertisement on
// the segment iPXE waits for one before it goes on (README).
func TestPXEBootServerDHCP(t *testing.T) {
	needQemu(t)
	needRoot(t)
	needE2E(t)
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-e1000.rom"); err != nil {
		t.Skip("no iPXE ROM for e1000 (apt-get install ipxe-qemu)")
	}
	k := debianKernel(t)
	dir := t.TempDir()
	jobDir := filepath.Join(dir, "job")
	if err := os.Mkdir(jobDir, 0o755); err != nil {
		t.Fatal(err)
	}
	buildInitrd(t, jobDir, "e2e-dhcp", k, "e1000")
	copyFile(t, k.Vmlinuz, filepath.Join(jobDir, "vmlinuz"))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns, err := NewNetNS(fmt.Sprintf("basalt-dhcps-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	a := ns.Addr.Addr().As4()
	subnet := fmt.Sprintf("%d.%d.%d", a[0], a[1], a[2])
	rng, err := lab.ParseDHCPRange(subnet + ".100-" + subnet + ".199")
	if err != nil {
		t.Fatal(err)
	}
	events := &eventLog{}
	const mac = "52:54:00:ba:5a:19"
	srv := pxe.NewServer(pxe.Config{
		TFTPAddr:             ns.Addr.Addr().String() + ":69",
		HTTPAddr:             ns.Addr.Addr().String() + ":8080",
		DHCP:                 "server",
		DHCPInterface:        ns.Bridge,
		DHCPRange:            rng,
		DHCPRouter:           ns.Addr.Addr(),
		DHCPMACs:             []string{mac},
		RouterAdvertisements: os.Getenv("BASALT_NO_RA") == "",
		Emit:                 events.emit,
	})
	if err := ns.Exec(func() error { return srv.Start(ctx) }); err != nil {
		t.Fatalf("pxe server in the namespace: %v", err)
	}
	defer srv.Close()
	served, err := srv.Serve(ctx, pxe.Boot{
		Kernel: "vmlinuz", Initrd: "initrd.gz", JobDir: jobDir, MAC: mac, Loader: "ipxe",
		Append: "console=ttyS0 panic=-1",
	})
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	vm, err := Start(ctx, Config{NetNS: ns.Name, NIC: NIC{Tap: ns.Tap, MAC: mac}, DefaultBoot: BootPXE})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	con := newConsole()
	go con.copyFrom(vm.Serial())
	defer func() {
		if t.Failed() {
			t.Logf("console (last 6 KiB):\n%s\nqemu:\n%s\npxe events:\n%s", con.tail(6144), vm.Output(), events)
		}
	}()
	node := NewNode(vm)
	if err := node.PowerOn(ctx, bmcsim.BootPXE); err != nil {
		t.Fatalf("power on (pxe): %v", err)
	}
	if err := srv.WaitFetch(ctx, "initrd"); err != nil {
		t.Fatalf("WaitFetch(initrd): %v", err)
	}
	off, err := con.waitFrom(ctx, 0, "basalt.nonce="+served.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = con.waitFrom(ctx, off, initrd.DefaultPrompt); err != nil {
		t.Fatal(err)
	}
	// The master image's udhcpc ran before the prompt.
	if !strings.Contains(con.String(), "udhcpc: lease of "+subnet+".100 obtained") {
		t.Errorf("the master image's udhcpc did not get %s.100 from basalt", subnet)
	}
	var ipxeLease, linuxLease string
	var firstDiscover, scriptFetch time.Time
	for _, e := range events.all() {
		switch {
		case e.typ == "dhcp" && e.fields["type"] == "DISCOVER" && firstDiscover.IsZero():
			firstDiscover = e.at
		case e.typ == "http" && strings.HasSuffix(fmt.Sprint(e.fields["file"]), "boot.ipxe") && scriptFetch.IsZero():
			scriptFetch = e.at
		case e.typ == "dhcp_lease" && strings.HasPrefix(fmt.Sprint(e.fields["vendor_class"]), "PXEClient"):
			ipxeLease = fmt.Sprint(e.fields["ip"])
		case e.typ == "dhcp_lease" && strings.HasPrefix(fmt.Sprint(e.fields["vendor_class"]), "udhcp"):
			linuxLease = fmt.Sprint(e.fields["ip"])
		}
	}
	if ipxeLease != subnet+".100" || linuxLease != ipxeLease {
		t.Errorf("leases: iPXE %q, Linux udhcpc %q; want both %s.100\n%s", ipxeLease, linuxLease, subnet, events)
	}
	solicited := false
	for _, e := range events.all() {
		solicited = solicited || (e.typ == "ipv6_ra" && e.fields["reason"] == "solicited")
	}
	if ra := os.Getenv("BASALT_NO_RA") == ""; solicited != ra {
		t.Errorf("router advertisement answered to a solicitation: %v, want %v (iPXE solicits one)", solicited, ra)
	}
	if !firstDiscover.IsZero() && !scriptFetch.IsZero() {
		t.Logf("iPXE: first DISCOVER to boot.ipxe fetched: %v (router advertisements: %v)",
			scriptFetch.Sub(firstDiscover).Round(100*time.Millisecond), os.Getenv("BASALT_NO_RA") == "")
	}
}
