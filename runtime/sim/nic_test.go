package sim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
)

// On a netns segment the node's U-Boot NIC is a veth: eth0 with the
// device's MAC in the board's own namespace, its peer a port of the
// segment's bridge; Close removes both.
func TestNodeNICOnSegment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	seg, err := qemu.NewNetNS(fmt.Sprintf("bsimt-%d", os.Getpid()%100000))
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	defer seg.Close()
	dev := lab.BuiltinSim("sim")
	dev.MAC = "02:42:00:00:17:09"
	dev.Sim.Bootloader = "u-boot"
	n, err := Start(context.Background(), Config{Device: dev, Dir: t.TempDir(), Segment: seg})
	if err != nil {
		t.Fatal(err)
	}
	board := seg.Name + "-board"
	out, err := exec.Command("ip", "-n", board, "-o", "link", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), dev.MAC) {
		t.Errorf("eth0 in %s: %v %s, want MAC %s", board, err, out, dev.MAC)
	}
	if out, err := exec.Command("ip", "-n", seg.Name, "-o", "link", "show", "master", seg.Bridge).CombinedOutput(); err != nil || !strings.Contains(string(out), "ubp0") {
		t.Errorf("ports of %s: %v %s, want ubp0", seg.Bridge, err, out)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat("/run/netns/" + board); err == nil {
		t.Errorf("%s is still there after Close", board)
	}
}
