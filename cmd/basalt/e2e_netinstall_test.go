package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// diDir is where Debian's debian-installer-12-netboot-amd64 puts the
// netboot installer's kernel and initrd.
const diDir = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64"

// TestE2ENetinstall is jobs/netinstall.star in the qemu lab: Debian's
// installer PXE-booted by iPXE on a segment basalt makes for the job
// (segment = "netns", basalt the only DHCP server, no dnsmasq), its preseed
// served by basalt; the job proves the preseed was fetched, its
// early_command's marker reached the console, the installer was leased by
// basalt, and it asked basalt for the archive mirror the preseed names.
func TestE2ENetinstall(t *testing.T) {
	if os.Getenv("BASALT_E2E") == "" {
		t.Skip("set BASALT_E2E=1 (make e2e) to boot Debian's installer under qemu")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make e2e installs it)", tool)
		}
	}
	for _, f := range []string{filepath.Join(diDir, "linux"), filepath.Join(diDir, "initrd.gz"), "/usr/lib/ipxe/qemu/efi-e1000.rom"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (apt-get install debian-installer-12-netboot-amd64 ipxe-qemu)", f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "basalt")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	jobDir := filepath.Join(dir, "job")
	must(t, os.MkdirAll(filepath.Join(jobDir, "images", "d-i"), 0o755))
	src, err := os.ReadFile(filepath.Join("..", "..", "jobs", "netinstall.star"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(jobDir, "netinstall.star"), src, 0o644))
	for _, f := range []string{"linux", "initrd.gz"} {
		must(t, copyFile(filepath.Join(diDir, f), filepath.Join(jobDir, "images", "d-i", f)))
	}
	q := &qemuLab{dir: dir, bin: bin, jobDir: jobDir}
	segmentLab(t, q, "qemu01")
	// d-i's initrd unpacks to ~150 MiB of tmpfs: 512 MiB (the default)
	// is its low memory mode, which the job's append acknowledges.

	out := filepath.Join(dir, "out")
	t0 := time.Now()
	b, err := exec.CommandContext(ctx, bin, "run", filepath.Join(jobDir, "netinstall.star"), "--lab", q.labDir, "--device", "qemu01", "--out", out).CombinedOutput()
	t.Logf("basalt run took %s:\n%s", time.Since(t0).Round(time.Second), b)
	con, _ := os.ReadFile(filepath.Join(out, "console.log"))
	if err != nil {
		t.Fatalf("basalt run: %v\nconsole.log (last 6 KiB):\n%s", err, tail(con, 6<<10))
	}
	var res struct {
		Status string
		Tests  []struct{ Name, Result, Message string }
	}
	data, err := os.ReadFile(filepath.Join(out, "result.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &res))
	var names []string
	for _, tc := range res.Tests {
		if tc.Result == "pass" {
			names = append(names, tc.Name)
		}
	}
	if want := "preseed-fetched early-command-ran mirror-requested installer-lease"; res.Status != "pass" || strings.Join(names, " ") != want {
		t.Errorf("result: %s, passed %v; want pass with %s", res.Status, names, want)
	}
	m := regexp.MustCompile(`basalt\.nonce=([0-9a-f]+)`).FindSubmatch(con)
	if m == nil || !strings.Contains(string(con), "BASALT-MARKER-"+string(m[1])) {
		t.Errorf("console.log lacks the early_command's marker with this boot's nonce")
	}
	evs := readEvents(t, out)
	var preseed, mirror, diLease bool
	for _, e := range evs {
		f := fmt.Sprint(e["file"])
		switch {
		case e["type"] == "http" && f == "files/preseed.cfg" && fmt.Sprint(e["status"]) == "200":
			preseed = true
		case e["type"] == "http" && strings.HasPrefix(f, "debian/dists/") && fmt.Sprint(e["status"]) == "404":
			mirror = true
		case e["type"] == "dhcp_lease" && !strings.HasPrefix(fmt.Sprint(e["vendor_class"]), "PXEClient"):
			diLease = true
		}
	}
	if !preseed || !mirror || !diLease {
		t.Errorf("events: preseed fetched %v, mirror asked %v, installer leased %v; want all", preseed, mirror, diLease)
	}
	netns, removed := segmentOf(evs)
	if !removed {
		t.Error("no segment removed event")
	}
	leftovers(t, "netinstall", netns)

	// The recording replays without the VM, its segment or a DHCP client:
	// pxe.publish, wait_request and leases answer from it.
	if b, err := exec.CommandContext(ctx, bin, "replay", out, "--out", filepath.Join(dir, "replay")).CombinedOutput(); err != nil ||
		!strings.Contains(string(b), "replay: the job made the recorded calls") {
		t.Errorf("basalt replay of the netinstall bundle: %v\n%s", err, b)
	}
}
