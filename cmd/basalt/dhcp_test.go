package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A dhcp_interface that does not exist is an infrastructure error (exit 3)
// naming it, before the device is powered on.
func TestRunDHCPInterfaceMissing(t *testing.T) {
	labDir := simLab(t)
	if err := os.WriteFile(filepath.Join(labDir, "lab.star"), []byte(`lab(name = "t", dhcp = "server", dhcp_interface = "nosuch0", dhcp_range = "10.9.0.100-10.9.0.199")`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	job := writeJob(t, `load("@stdlib//master.star", "master")
job(name = "dhcp-if", timeout = "1m", params = {"kernel": "vmlinuz", "initrd": "initrd.gz"})
stage("one", master.boot)
`)
	out := filepath.Join(t.TempDir(), "b")
	code, _, stderr := runCLI("run", job, "--lab", labDir, "--device", "sim01", "--out", out)
	if code != 3 || !strings.Contains(stderr, `dhcp_interface "nosuch0": no such interface`) {
		t.Errorf("run with a missing dhcp_interface = exit %d, stderr %q; want 3 naming nosuch0", code, stderr)
	}
	evs, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
	if strings.Contains(string(evs), `"power.`) || strings.Contains(string(evs), `"ipmi.`) {
		t.Errorf("the device was powered before the DHCP interface was checked:\n%s", evs)
	}
}

// An answer file the installer never fetches is a device error (exit 4)
// at its timeout, naming the file.
func TestRunPreseedNeverFetched(t *testing.T) {
	labDir := simLab(t)
	job := writeJob(t, `job(name = "preseed", timeout = "1m")
def one(ctx):
    url = pxe.publish("preseed.cfg", "d-i debian-installer/locale string en_US\n")
    if not url.endswith("/files/preseed.cfg"):
        fail("publish returned %s" % url)
    pxe.wait_fetch("preseed.cfg", timeout = "300ms")
stage("one", one)
`)
	out := filepath.Join(t.TempDir(), "b")
	code, _, stderr := runCLI("run", job, "--lab", labDir, "--device", "sim01", "--out", out)
	if code != 4 || !strings.Contains(stderr, "did not fetch files/preseed.cfg") {
		t.Errorf("run with a preseed never fetched = exit %d, stderr %q; want 4 naming files/preseed.cfg", code, stderr)
	}
}
