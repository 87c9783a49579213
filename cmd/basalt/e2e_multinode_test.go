package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestE2EMultinode is `make e2e` for multi-device jobs (issue 20):
// jobs/multinode.star on two qemu VMs on the lab's netns bridge, each
// behind a BMC basalt starts, both PXE-booted by one basalt (one proxy
// DHCP and TFTP server serving both MACs, each its own config) with
// dnsmasq as the site DHCP server; the server VM runs busybox httpd, the
// client VM wgets a file from it and checks its sha256.
func TestE2EMultinode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	q := newQemuLab(t, ctx, "basalt-e2e-mn")
	must(t, q.ns.AddTap("tap1"))
	must(t, os.WriteFile(filepath.Join(q.labDir, "devices", "qemu02.star"), []byte(fmt.Sprintf(
		"device(name = \"qemu02\", type = \"qemu\", mac = \"52:54:00:be:e2:02\", vm_tap = %q, vm_disk_mb = 16)\n", "tap1")), 0o644))
	src, err := os.ReadFile(filepath.Join("..", "..", "jobs", "multinode.star"))
	must(t, err)
	job := filepath.Join(q.jobDir, "multinode.star")
	must(t, os.WriteFile(job, src, 0o644))

	out := filepath.Join(q.dir, "out")
	run := q.ns.Command(ctx, q.bin, "run", job, "--lab", q.labDir, "--device", "server=qemu01", "--device", "client=qemu02", "--out", out)
	t0 := time.Now()
	output, err := run.CombinedOutput()
	t.Logf("basalt run took %s:\n%s", time.Since(t0).Round(time.Second), output)
	if err != nil {
		for _, role := range []string{"server", "client"} {
			con, _ := os.ReadFile(filepath.Join(out, "console-"+role+".log"))
			t.Logf("console-%s.log (last 4 KiB):\n%s", role, tail(con, 4<<10))
		}
		dl, _ := os.ReadFile(filepath.Join(q.dir, "dnsmasq.log"))
		t.Fatalf("basalt run: %v\ndnsmasq:\n%s", err, dl)
	}
	var res struct {
		Status  string
		Devices map[string]struct{ Name, MAC string }
		Tests   []struct{ Name, Result, Role string }
	}
	data, err := os.ReadFile(filepath.Join(out, "result.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &res))
	if res.Status != "pass" || res.Devices["server"].Name != "qemu01" || res.Devices["client"].Name != "qemu02" {
		t.Errorf("result: status %s, devices %v; want pass, server qemu01, client qemu02", res.Status, res.Devices)
	}
	fetched := false
	for _, tc := range res.Tests {
		if tc.Name == "fetch-from-server" && tc.Role == "client" && tc.Result == "pass" {
			fetched = true
		}
	}
	if !fetched {
		t.Errorf("tests %v: no passed client fetch-from-server", res.Tests)
	}
	// Each VM booted this job's kernel from its own config, on its own console.
	evs, err := os.ReadFile(filepath.Join(out, "events.jsonl"))
	must(t, err)
	for role, mac := range map[string]string{"server": "52-54-00-be-e2-01", "client": "52-54-00-be-e2-02"} {
		con, err := os.ReadFile(filepath.Join(out, "console-"+role+".log"))
		must(t, err)
		for _, want := range []string{"iPXE", "PXELINUX", "basalt.nonce="} {
			if !strings.Contains(string(con), want) {
				t.Errorf("console-%s.log lacks %q", role, want)
			}
		}
		if !strings.Contains(string(evs), `"file":"pxelinux.cfg/01-`+mac+`","kind":"pxelinux_config","outcome":"ok"`) {
			t.Errorf("no TFTP transfer of %s's config pxelinux.cfg/01-%s", role, mac)
		}
		// The one proxy DHCP answered this MAC.
		replied := regexp.MustCompile(`"client":"` + strings.ReplaceAll(mac, "-", ":") + `".*"outcome":"replied"`)
		if !replied.Match(evs) {
			t.Errorf("no proxy DHCP reply to %s (%s)", role, mac)
		}
	}
}
