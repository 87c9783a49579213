package segment_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
	"github.com/basalt-lab/basalt/runtime/segment"
	"golang.org/x/sys/unix"
)

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// in runs fn on an OS thread inside ns (the NetNS.Exec a segment uses):
// sockets fn opens and commands it starts belong to ns.
func in(ns string, fn func() error) error {
	return (&qemu.NetNS{Name: ns}).Exec(fn)
}

const devMAC = "52:54:00:00:10:02"

// TestVLANSegment: the VLAN form on a trunk of the test's own (a veth pair
// between a "dispatcher" and a "switch port" namespace): Create adds the
// 802.1Q subinterface with basalt's address, basalt's DHCP server on it
// leases to busybox udhcpc on the same VLAN on the other side, nothing
// answers the same MAC untagged, and Close removes the subinterface.
func TestVLANSegment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install busybox-static)")
	}
	id := os.Getpid() % 100000
	disp, port := fmt.Sprintf("bvlan-d-%d", id), fmt.Sprintf("bvlan-p-%d", id)
	for _, ns := range []string{disp, port} {
		ip(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	ip(t, "-n", disp, "link", "add", "trunk0", "type", "veth", "peer", "name", "eth0", "netns", port)
	ip(t, "-n", disp, "link", "set", "trunk0", "up")
	ip(t, "-n", port, "link", "set", "eth0", "address", devMAC)
	ip(t, "-n", port, "link", "set", "eth0", "up")
	if out, err := exec.Command("ip", "-n", port, "link", "add", "link", "eth0", "name", "eth0.102", "type", "vlan", "id", "102").CombinedOutput(); err != nil {
		t.Skipf("this kernel makes no 802.1Q links (no 8021q module): %v: %s", err, out)
	}
	ip(t, "-n", port, "link", "set", "eth0.102", "up")

	dev := &lab.Device{Name: "hb1", MAC: devMAC, Segment: lab.Segment{Kind: "vlan", Parent: "trunk0", VLAN: 102, Addr: "10.102.0.1/24"}}
	var seg *segment.Segment
	if err := in(disp, func() (err error) { seg, err = segment.Create(dev, nil); return err }); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if seg.Interface != "trunk0.102" || seg.Range.First.String() != "10.102.0.1" || seg.Range.Last.String() != "10.102.0.254" {
		t.Errorf("segment = %s %v-%v, want trunk0.102 10.102.0.1-10.102.0.254", seg.Interface, seg.Range.First, seg.Range.Last)
	}
	// A second job on the same VLAN never adopts the first one's link.
	if err := in(disp, func() error { _, err := segment.Create(dev, nil); return err }); err == nil || !strings.Contains(err.Error(), "trunk0.102 exists already") {
		t.Errorf("Create again = %v, want it refused", err)
	}
	inDisp := func(fn func() error) error { return in(disp, fn) }
	srv := pxe.NewServer(pxe.Config{
		TFTPAddr: "10.102.0.1:69", HTTPAddr: "10.102.0.1:8080", DHCP: "server", DHCPInterface: seg.Interface,
		DHCPRange: seg.Range, DHCPMACs: []string{devMAC}, SocketsIn: inDisp, LoaderDir: t.TempDir(), CacheDir: t.TempDir(),
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer srv.Close()

	script := filepath.Join(t.TempDir(), "script")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo lease=$ip\nexit 0\n"), 0o755)
	udhcpc := func(iface string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", port, bb, "udhcpc", "-f", "-q", "-n", "-i", iface, "-s", script, "-t", "3", "-T", "1").CombinedOutput()
		return string(out)
	}
	if out := udhcpc("eth0.102"); !strings.Contains(out, "lease=10.102.0.2\n") {
		t.Errorf("udhcpc on VLAN 102 = %q, want 10.102.0.2 from basalt", out)
	}
	if out := udhcpc("eth0"); strings.Contains(out, "lease=") {
		t.Errorf("udhcpc untagged = %q, want no lease: the server is on VLAN 102 only", out)
	}
	srv.Close()
	if err := in(disp, seg.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := in(disp, func() error { _, err := net.InterfaceByName("trunk0.102"); return err }); err == nil {
		t.Error("trunk0.102 still exists after Close")
	}
}

// A netns segment is a namespace named for this process and the device,
// with the bridge, basalt's address and the VM's tap; Close removes it, and
// Create removes the namespaces of basalt processes that died without
// their cleanup.
func TestNetNSSegment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	// A pid that is not running: the namespace of a killed basalt.
	stale := ""
	for pid := 4000000; pid > 3000000; pid -= 7919 {
		if unix.Kill(pid, 0) == unix.ESRCH {
			stale = fmt.Sprintf("%s-%d-gone", segment.Prefix, pid)
			break
		}
	}
	ip(t, "netns", "add", stale)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", stale).Run() })
	var evs []map[string]any
	dev := &lab.Device{Name: "qemu-seg-test", Segment: lab.Segment{Kind: "netns"}}
	seg, err := segment.Create(dev, func(typ string, f map[string]any) { evs = append(evs, f) })
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s-%d-qemu-seg-test", segment.Prefix, os.Getpid())
	if _, err := os.Stat("/run/netns/" + name); err != nil || seg.NetNS.Name != name {
		t.Errorf("namespace %s: %v (segment's %s)", name, err, seg.NetNS.Name)
	}
	if _, err := os.Stat("/run/netns/" + stale); err == nil {
		t.Errorf("stale namespace %s of a dead basalt was not removed", stale)
	}
	var gotTap bool
	if err := seg.Exec(func() error {
		_, err := net.InterfaceByName(seg.NetNS.Tap)
		gotTap = err == nil
		return nil
	}); err != nil || !gotTap || seg.Interface != seg.NetNS.Bridge {
		t.Errorf("segment interfaces: tap %v, %v, interface %s", gotTap, err, seg.Interface)
	}
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + name); err == nil {
		t.Errorf("namespace %s left after Close", name)
	}
	if len(evs) < 2 || evs[0]["event"] != "stale_removed" || evs[1]["event"] != "created" {
		t.Errorf("events = %v, want stale_removed then created", evs)
	}
}
