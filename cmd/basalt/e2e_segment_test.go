package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// segmentLab writes a lab whose qemu devices each get a segment of their
// own per job (segment = "netns"): no namespace, bridge or dnsmasq exists
// before basalt run makes them, and lab.star names no DHCP at all.
func segmentLab(t *testing.T, q *qemuLab, devices ...string) {
	t.Helper()
	q.labDir = filepath.Join(q.dir, "lab")
	must(t, os.MkdirAll(filepath.Join(q.labDir, "devices"), 0o755))
	must(t, os.WriteFile(filepath.Join(q.labDir, "lab.star"), []byte(fmt.Sprintf("lab(name = \"qemu-seg\", lock_dir = %q, cache_dir = %q)\n",
		filepath.Join(q.dir, "locks"), filepath.Join(q.dir, "cache"))), 0o644))
	for i, d := range devices {
		must(t, os.WriteFile(filepath.Join(q.labDir, "devices", d+".star"), []byte(fmt.Sprintf(
			"device(name = %q, type = \"qemu\", mac = \"52:54:00:be:e3:%02x\", segment = \"netns\", vm_disk_mb = 64)\n", d, i+1)), 0o644))
	}
}

type jsonEvent map[string]any

func readEvents(t *testing.T, out string) []jsonEvent {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
	var evs []jsonEvent
	for _, l := range bytes.Split(data, []byte("\n")) {
		var e jsonEvent
		if json.Unmarshal(l, &e) == nil {
			evs = append(evs, e)
		}
	}
	return evs
}

// segmentOf returns the namespace the run's segment events name, and
// whether it was removed.
func segmentOf(evs []jsonEvent) (netns string, removed bool) {
	for _, e := range evs {
		if e["type"] != "segment" {
			continue
		}
		if e["event"] == "created" {
			netns, _ = e["netns"].(string)
		}
		if e["event"] == "removed" {
			removed = true
		}
	}
	return netns, removed
}

// leftovers fails t if the namespace or any link of the segment is left.
func leftovers(t *testing.T, what, netns string) {
	t.Helper()
	if netns == "" {
		t.Errorf("%s: no segment created event", what)
		return
	}
	if _, err := os.Stat(filepath.Join("/run/netns", netns)); err == nil {
		t.Errorf("%s: namespace %s left behind", what, netns)
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), netns) {
		t.Errorf("%s: ip netns list still shows %s:\n%s", what, netns, out)
	}
}

// TestE2EQemuSegment is `make e2e` in segment mode: jobs/qemu-master.star
// on two qemu devices at once, each job in a network namespace basalt run
// makes (bridge, the VM's tap), basalt the only DHCP server of each (no
// dnsmasq anywhere), both removed afterwards; neither job's DHCP saw the
// other's device. Then a job that fails and one canceled by SIGINT leave
// nothing behind either.
func TestE2EQemuSegment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q := newQemuLab(t, ctx, "")
	segmentLab(t, q, "qemu01", "qemu02")
	macs := map[string]string{"qemu01": "52:54:00:be:e3:01", "qemu02": "52:54:00:be:e3:02"}

	var wg sync.WaitGroup
	outs := map[string]string{}
	errs := map[string]error{}
	logs := map[string][]byte{}
	var mu sync.Mutex
	t0 := time.Now()
	for d := range macs {
		out := filepath.Join(q.dir, "out-"+d)
		outs[d] = out
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := exec.CommandContext(ctx, q.bin, "run", filepath.Join(q.jobDir, "qemu-master.star"), "--lab", q.labDir, "--device", d, "--out", out)
			b, err := run.CombinedOutput()
			mu.Lock()
			errs[d], logs[d] = err, b
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("two jobs at once took %s", time.Since(t0).Round(time.Second))
	nets := map[string]bool{}
	for d, mac := range macs {
		if errs[d] != nil {
			con, _ := os.ReadFile(filepath.Join(outs[d], "console.log"))
			t.Errorf("basalt run on %s: %v\n%s\nconsole.log (last 4 KiB):\n%s", d, errs[d], logs[d], tail(con, 4<<10))
			continue
		}
		evs := readEvents(t, outs[d])
		netns, removed := segmentOf(evs)
		nets[netns] = true
		if !removed {
			t.Errorf("%s: no segment removed event", d)
		}
		leftovers(t, d, netns)
		leased := false
		for _, e := range evs {
			if e["type"] == "dhcp_lease" && e["mac"] == mac {
				leased = true
			}
			if e["type"] == "dhcp" && e["client"] != mac {
				t.Errorf("%s: its DHCP server saw another client: %v", d, e)
			}
			if e["type"] == "dhcp_rogue" {
				t.Errorf("%s: another DHCP server answered on its segment: %v", d, e)
			}
		}
		if !leased {
			t.Errorf("%s: basalt's DHCP leased nothing to %s", d, mac)
		}
	}
	if len(nets) != 2 {
		t.Errorf("the two jobs' namespaces = %v, want two different ones", nets)
	}

	// A job that fails, and one canceled with SIGINT while its VM boots.
	job := filepath.Join(q.jobDir, "seg-fail.star")
	must(t, os.WriteFile(job, []byte(`load("@stdlib//master.star", "master")
job(name = "seg-fail", device_type = "qemu", timeout = "5m",
    params = {"kernel": "images/qemu/vmlinuz", "initrd": "images/qemu/master.cpio.gz", "boot": "no"})
def one(ctx):
    if ctx.params.boot == "yes":
        master.boot(ctx)
    fail("broken on purpose")
stage("one", one)
cleanup(master.power_off)
`), 0o644))
	out := filepath.Join(q.dir, "out-fail")
	b, err := exec.CommandContext(ctx, q.bin, "run", job, "--lab", q.labDir, "--device", "qemu01", "--out", out).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("failing job: %v, want exit 2\n%s", err, b)
	}
	netns, _ := segmentOf(readEvents(t, out))
	leftovers(t, "failing job", netns)

	out = filepath.Join(q.dir, "out-sigint")
	run := exec.CommandContext(ctx, q.bin, "run", job, "--lab", q.labDir, "--device", "qemu01", "--out", out, "--param", "boot=yes")
	var runOut bytes.Buffer
	run.Stdout, run.Stderr = &runOut, &runOut
	must(t, run.Start())
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	leased := false
	for !leased {
		select {
		case err := <-done:
			t.Fatalf("run ended (%v) before its VM got a lease:\n%s", err, runOut.String())
		case <-time.After(200 * time.Millisecond):
		}
		for _, e := range readEvents(t, out) {
			leased = leased || e["type"] == "dhcp_lease"
		}
	}
	must(t, run.Process.Signal(syscall.SIGINT))
	err = <-done
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
		t.Errorf("SIGINT during the boot: %v, want exit 5\n%s", err, runOut.String())
	}
	netns, _ = segmentOf(readEvents(t, out))
	leftovers(t, "SIGINT", netns)
}
