package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// ipxeToScript boots the VM's iPXE ROM once on a segment where basalt's
// server mode is the only DHCP server, with or without its router
// advertisements, and returns the time from iPXE's first DISCOVER to its
// request for the boot script.
func ipxeToScript(b *testing.B, n int, ra bool) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, err := NewNetNS(fmt.Sprintf("basalt-rab-%d-%d", os.Getpid(), n))
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	a := ns.Addr.Addr().As4()
	subnet := fmt.Sprintf("%d.%d.%d", a[0], a[1], a[2])
	rng, _ := lab.ParseDHCPRange(subnet + ".100-" + subnet + ".199")
	events := &eventLog{}
	const mac = "52:54:00:ba:5a:1a"
	srv := pxe.NewServer(pxe.Config{
		TFTPAddr: ns.Addr.Addr().String() + ":69", HTTPAddr: ns.Addr.Addr().String() + ":8080",
		DHCP: "server", DHCPInterface: ns.Bridge, DHCPRange: rng, DHCPMACs: []string{mac},
		RouterAdvertisements: ra, SocketsIn: ns.Exec, Emit: events.emit,
	})
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("not booted"), 0o644)
	if _, err := srv.Serve(ctx, pxe.Boot{Kernel: "vmlinuz", JobDir: dir, MAC: mac, Loader: "ipxe"}); err != nil {
		b.Fatal(err)
	}
	vm, err := Start(ctx, Config{NetNS: ns.Name, NIC: NIC{Tap: ns.Tap, MAC: mac}, DefaultBoot: BootPXE})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	// Read the serial line: unread, it fills and stalls the guest.
	go io.Copy(io.Discard, vm.Serial())
	if err := NewNode(vm).PowerOn(ctx, bmcsim.BootPXE); err != nil {
		b.Fatal(err)
	}
	for {
		var discover time.Time
		for _, e := range events.all() {
			if e.typ == "dhcp" && e.fields["type"] == "DISCOVER" && discover.IsZero() {
				discover = e.at
			}
			if e.typ == "http" && strings.HasSuffix(fmt.Sprint(e.fields["file"]), "boot.ipxe") && !discover.IsZero() {
				return e.at.Sub(discover)
			}
		}
		if err := sleep(ctx, 100); err != nil {
			b.Fatalf("iPXE never asked for its script: %v\n%s", err, events)
		}
	}
}

// BenchmarkIPXEIPv6Wait measures what server mode's router advertisements
// save: iPXE's first DISCOVER to its boot script request, with RAs and
// without (iPXE waits for IPv6 configuration until it gives up). Medians
// of alternated samples; BASALT_E2E=1, root.
func BenchmarkIPXEIPv6Wait(b *testing.B) {
	needQemu(b)
	needRoot(b)
	needE2E(b)
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-e1000.rom"); err != nil {
		b.Skip("no iPXE ROM for e1000 (apt-get install ipxe-qemu)")
	}
	const samples = 2
	var with, without []float64
	for i := 0; i < b.N; i++ {
		for s := 0; s < samples; s++ {
			with = append(with, ipxeToScript(b, 2*s, true).Seconds())
			without = append(without, ipxeToScript(b, 2*s+1, false).Seconds())
		}
	}
	b.ReportMetric(median(with), "s-with-RA")
	b.ReportMetric(median(without), "s-without-RA")
}
