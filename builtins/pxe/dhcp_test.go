package pxe_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// netns creates a network namespace joined to this one by a veth pair:
// hostIf (hostIP/24) here, nsIf (no address) there. Both go away at
// cleanup.
func netns(t *testing.T, hostIP string) (ns, hostIf, nsIf string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	need(t, "ip")
	id := os.Getpid() % 100000
	ns, hostIf, nsIf = fmt.Sprintf("basalt-pxe-%d", id), fmt.Sprintf("bpxh%d", id), fmt.Sprintf("bpxn%d", id)
	ip := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ip("netns", "add", ns); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		ip("link", "del", hostIf)
		ip("netns", "del", ns)
	})
	for _, args := range [][]string{
		{"link", "add", hostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", ns},
		{"addr", "add", hostIP + "/24", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", ns, "link", "set", nsIf, "address", testMAC},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", nsIf, "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	return ns, hostIf, nsIf
}

// inNetns runs fn on an OS thread moved into ns (in). Sockets fn opens
// stay in ns.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	if err := in(t, ns, func() error { fn(); return nil }); err != nil {
		t.Fatalf("entering netns %s: %v", ns, err)
	}
}

func TestProxyDHCP(t *testing.T) {
	const serverIP, clientIP = "10.213.7.1", "10.213.7.2"
	ns, hostIf, nsIf := netns(t, serverIP)
	s, ev := startServer(t, pxe.Config{
		TFTPAddr: serverIP + ":0", HTTPAddr: serverIP + ":0", DHCP: "proxy", DHCPInterface: hostIf,
	})
	dir, _ := jobDir(t, 1000)
	serveJob(t, s, dir)

	var client, other *nclient4.Client
	var rc *net.UDPConn
	inNetns(t, ns, func() {
		var err error
		if client, err = nclient4.New(nsIf, nclient4.WithTimeout(time.Second), nclient4.WithRetry(2)); err != nil {
			t.Errorf("nclient4.New: %v", err)
			return
		}
		other, err = nclient4.New(nsIf, nclient4.WithTimeout(200*time.Millisecond), nclient4.WithRetry(1),
			nclient4.WithHWAddr(net.HardwareAddr{2, 0, 0, 0, 0, 0x77}))
		if err != nil {
			t.Errorf("nclient4.New: %v", err)
			return
		}
		if out, err := exec.Command("ip", "addr", "add", clientIP+"/24", "dev", nsIf).CombinedOutput(); err != nil {
			t.Errorf("ip addr add: %v %s", err, out)
			return
		}
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(clientIP), Port: 68})
		if err != nil {
			t.Errorf("listen %s:68: %v", clientIP, err)
		}
	})
	if t.Failed() {
		return
	}
	defer client.Close()
	defer other.Close()
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pxeClass := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))

	offer, err := client.DiscoverOffer(ctx, pxeClass)
	if err != nil {
		t.Fatalf("DiscoverOffer as a PXE client: %v", err)
	}
	if offer.BootFileName != "pxelinux.0" || !offer.ServerIPAddr.Equal(net.ParseIP(serverIP)) ||
		offer.ClassIdentifier() != "PXEClient" || !offer.YourIPAddr.IsUnspecified() {
		t.Errorf("proxy offer = file %q next-server %s class %q yiaddr %s, want pxelinux.0 from %s, PXEClient, no address",
			offer.BootFileName, offer.ServerIPAddr, offer.ClassIdentifier(), offer.YourIPAddr, serverIP)
	}

	// An iPXE ROM in a pxelinux job chainloads pxelinux.0 like any PXE ROM.
	offer, err = client.DiscoverOffer(ctx, pxeClass, dhcpv4.WithUserClass("iPXE", false))
	if err != nil {
		t.Fatalf("DiscoverOffer as iPXE: %v", err)
	}
	if offer.BootFileName != "pxelinux.0" {
		t.Errorf("iPXE boot file in a pxelinux job = %q, want pxelinux.0", offer.BootFileName)
	}

	// In an iPXE job, iPXE (the ROM, or chainloaded) gets the script URL.
	ipxeJob, err := s.Serve(context.Background(), pxe.Boot{Kernel: "vmlinuz", Initrd: "initrd.gz", MAC: testMAC, JobDir: dir, Loader: "ipxe"})
	if err != nil {
		t.Fatalf("Serve(loader ipxe): %v", err)
	}
	offer, err = client.DiscoverOffer(ctx, pxeClass, dhcpv4.WithUserClass("iPXE", false))
	if err != nil {
		t.Fatalf("DiscoverOffer as iPXE: %v", err)
	}
	if offer.BootFileName != ipxeJob.URLs["ipxe"] {
		t.Errorf("iPXE boot file = %q, want %q", offer.BootFileName, ipxeJob.URLs["ipxe"])
	}
	serveJob(t, s, dir) // back to the pxelinux job for the checks below

	// Another MAC, or a client that is not PXE, gets no answer.
	short, cancel2 := context.WithTimeout(ctx, time.Second)
	if o, err := other.DiscoverOffer(short, pxeClass); err == nil {
		t.Errorf("DiscoverOffer from another MAC = %v, want no offer", o.Summary())
	}
	cancel2()
	short, cancel3 := context.WithTimeout(ctx, time.Second)
	if o, err := client.DiscoverOffer(short); err == nil {
		t.Errorf("DiscoverOffer without PXEClient = %v, want no offer", o.Summary())
	}
	cancel3()

	// The boot-server request PXE firmware unicasts to port 4011.
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr(mustMAC(t, testMAC))),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), pxeClass,
		dhcpv4.WithClientIP(net.ParseIP(clientIP)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP(serverIP), Port: 4011}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := rc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no answer on port 4011: %v", err)
	}
	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "pxelinux.0" || ack.TransactionID != req.TransactionID {
		t.Errorf("port 4011 answer = %s, want an ACK with pxelinux.0", ack.Summary())
	}

	// pxe.serve(config=False): the ROM of the job's own MAC gets no answer
	// either, since there is no config for it to boot.
	if _, err := s.Serve(context.Background(), pxe.Boot{Kernel: "vmlinuz", Initrd: "initrd.gz", MAC: testMAC, JobDir: dir, NoConfig: true}); err != nil {
		t.Fatalf("Serve(NoConfig): %v", err)
	}
	short, cancel4 := context.WithTimeout(ctx, time.Second)
	if o, err := client.DiscoverOffer(short, pxeClass); err == nil {
		t.Errorf("DiscoverOffer in a job served with NoConfig = %v, want no offer", o.Summary())
	}
	cancel4()

	var replied, ignored int
	for _, f := range ev.Events("dhcp") {
		switch f["outcome"] {
		case "replied":
			replied++
		case "ignored":
			ignored++
		}
	}
	if replied < 3 || ignored < 2 {
		t.Errorf("dhcp events: %d replied, %d ignored, want ≥ 3 and ≥ 2", replied, ignored)
	}
}
