package simshell

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins/target/simdisk"
)

var thirdLine = regexp.MustCompile(`(?m)^\d+ bytes \(.*\) copied, .*\n`)

// Differential: a partition device of the sim behaves as a Linux block
// device of the same size does. The peer is a loop device over the same
// byte range of a copy of the disk (losetup --offset --sizelimit: the
// container has no udev to make /dev/loopNpM), driven by real busybox.
// Needs root, losetup and busybox; skipped otherwise.
func TestPartitionLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup")
	}
	for _, tool := range []string{"losetup", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	disk := abDisk(t, nil)
	data, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(disk)
	parts, err := simdisk.ReadPartitions(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	p3 := parts[2]
	loopFile := disk + ".loop"
	if err := os.WriteFile(loopFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--show", "-f", "-o", strconv.FormatInt(p3.Start, 10),
		"--sizelimit", strconv.FormatInt(p3.Size, 10), loopFile).Output()
	if err != nil {
		t.Skipf("losetup: %v (no loop devices here)", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })

	c := startShell(t, Config{Disks: map[string]string{"/dev/sda": disk}})
	blocks := p3.Size/4096 + 1
	for _, cmd := range []string{
		"blockdev --getsize64 DEV",
		"head -c 1000000 DEV | wc -c",
		"dd if=/dev/zero of=DEV bs=4096 count=" + strconv.FormatInt(blocks, 10) + " 2>&1; echo rc=$?",
		"dd if=DEV bs=4096 skip=" + strconv.FormatInt(blocks, 10) + " 2>&1",
	} {
		real, _ := exec.Command("busybox", "sh", "-c", strings.ReplaceAll(cmd, "DEV", loop)).CombinedOutput()
		want := strings.ReplaceAll(string(real), loop, "/dev/sda3")
		got := c.run(strings.ReplaceAll(cmd, "DEV", "/dev/sda3"))
		// The sim's dd prints busybox's optional third status line
		// ("N bytes (...) copied, ..."; FEATURE_DD_THIRD_STATUS_LINE),
		// which Debian's busybox is built without.
		got = thirdLine.ReplaceAllString(got, "")
		if strings.HasSuffix(cmd, "| wc -c") {
			got, want = strings.TrimSpace(got), strings.TrimSpace(want)
		}
		if got != want {
			t.Errorf("%s: sim %q, Linux loop device with busybox %q", cmd, got, want)
		}
	}
}
