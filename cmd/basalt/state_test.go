package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/lab"
)

func runCLI(args ...string) (int, string, string) {
	var o, e bytes.Buffer
	c := run(context.Background(), context.Background(), args, nil, &o, &e)
	return c, o.String(), e.String()
}

// A watcher attached read-only to a running job sees the bytes of its
// console.log, and its keys never reach the job's console.
func TestWatcherSeesConsoleLog(t *testing.T) {
	labDir := simLab(t)
	job := writeJob(t, `load("@stdlib//master.star", "master")
job(name = "watched", timeout = "2m", params = {"kernel": "vmlinuz", "initrd": "initrd.gz"})
def one(ctx):
    master.boot(ctx)
    time.sleep("1500ms")
    target.run("echo after-the-watcher-came")
stage("one", one)
cleanup(master.power_off)
`)
	out := filepath.Join(t.TempDir(), "b")
	code := make(chan int, 1)
	go func() {
		c, _, e := runCLI("run", job, "--lab", labDir, "--device", "sim01", "--out", out)
		if c != 0 {
			t.Errorf("run exit %d: %s", c, e)
		}
		code <- c
	}()
	sock := filepath.Join(os.Getenv("BASALT_LOCK_DIR"), "sim01.console.sock")
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	var wo, we syncBuf
	wc := make(chan int, 1)
	go func() {
		wc <- run(context.Background(), context.Background(), []string{"console", "sim01", "--lab", labDir}, pr, &wo, &we)
	}()
	for !strings.Contains(we.String(), "read-only") {
		time.Sleep(10 * time.Millisecond)
	}
	pw.Write([]byte("echo typed-by-the-watcher\n"))
	// A running job's power is never lent.
	if c, _, e := runCLI("power", "sim01", "off", "--lab", labDir); c != 3 || !strings.Contains(e, "busy") {
		t.Errorf("power off during a running job = %d %q, want 3 busy", c, e)
	}
	<-code
	if c := <-wc; c != 0 {
		t.Fatalf("watcher exit %d: %s", c, we.String())
	}
	log := readFile(t, filepath.Join(out, "console.log"))
	if wo.String() != log {
		t.Errorf("watcher saw %d bytes, console.log has %d; they differ:\nwatcher: %q\nconsole.log: %q", len(wo.String()), len(log), wo.String(), log)
	}
	if !strings.Contains(log, "after-the-watcher-came") || strings.Contains(log, "typed-by-the-watcher") {
		t.Errorf("console.log = %q, want the job's command and not the watcher's", log)
	}
	if !strings.Contains(we.String(), "ended") {
		t.Errorf("watcher stderr = %q, want it to say the job ended", we.String())
	}
}

// device offline refuses runs with the reason; online brings it back; a
// failed health check makes the device bad, refused to other jobs, until
// a health check passes (LAVA's health semantics).
func TestDeviceStateAndHealth(t *testing.T) {
	labDir := simLab(t)
	ok := writeJob(t, "job(name = \"ok\")\ndef one(ctx):\n    test.case(\"a\", \"pass\")\nstage(\"one\", one)\n")
	dir := t.TempDir()
	n := 0
	runOn := func(job string) (int, string) {
		n++
		c, _, e := runCLI("run", job, "--lab", labDir, "--device", "sim01", "--out", filepath.Join(dir, string(rune('a'+n))))
		return c, e
	}
	if c, _, e := runCLI("device", "offline", "sim01", "--lab", labDir); c != 64 || !strings.Contains(e, "--why") {
		t.Errorf("device offline without --why = %d %q, want 64 asking for --why", c, e)
	}
	if c, _, e := runCLI("device", "offline", "nosuch", "--lab", labDir, "--why", "x"); c != 64 {
		t.Errorf("device offline nosuch = %d %q, want 64", c, e)
	}
	if c, _, e := runCLI("device", "offline", "sim01", "--lab", labDir, "--why", "fan broken"); c != 0 {
		t.Fatalf("device offline = %d %s", c, e)
	}
	if _, o, _ := runCLI("device", "list", "--lab", labDir); !strings.Contains(o, "offline (fan broken)") {
		t.Errorf("device list =\n%s\nwant sim01 offline with its reason", o)
	}
	if c, e := runOn(ok); c != 4 || !strings.Contains(e, "fan broken") {
		t.Errorf("run on an offline device = %d %q, want 4 with the reason", c, e)
	}
	if c, _, e := runCLI("device", "online", "sim01", "--lab", labDir); c != 0 {
		t.Fatalf("device online = %d %s", c, e)
	}
	if c, e := runOn(ok); c != 0 {
		t.Fatalf("run on an online device = %d %s", c, e)
	}

	badHC := writeJob(t, "job(name = \"hc\", health_check = True)\ndef one(ctx):\n    fail(\"no disk\")\nstage(\"one\", one)\n")
	goodHC := writeJob(t, "job(name = \"hc\", health_check = True)\ndef one(ctx):\n    test.case(\"disk\", \"pass\")\nstage(\"one\", one)\n")
	if c, _ := runOn(badHC); c != 2 {
		t.Fatalf("failing health check = %d, want 2", c)
	}
	if _, o, _ := runCLI("device", "list", "--lab", labDir); !strings.Contains(o, "sim01  sim   bad") {
		t.Errorf("device list after a failed health check =\n%s\nwant sim01 bad", o)
	}
	if c, e := runOn(ok); c != 4 || !strings.Contains(e, "bad health") || !strings.Contains(e, `"hc"`) {
		t.Errorf("run on a bad device = %d %q, want 4 naming the failed health check", c, e)
	}
	if c, e := runOn(goodHC); c != 0 {
		t.Fatalf("passing health check on a bad device = %d %s", c, e)
	}
	if c, e := runOn(ok); c != 0 {
		t.Errorf("run after a passing health check = %d %s", c, e)
	}
	if _, o, _ := runCLI("device", "list", "--lab", labDir); !strings.Contains(o, "online  good") {
		t.Errorf("device list after a passing health check =\n%s\nwant online good", o)
	}
}

// Bad input to console, bootdev and release: clear errors, the right
// codes, and a console on pipes (no terminal) that survives a lost
// connection and says so.
func TestConsoleBadInput(t *testing.T) {
	labDir := simLab(t)
	os.WriteFile(filepath.Join(labDir, "devices", "hb1.star"), []byte("device(name = \"hb1\", type = \"highbank\", mac = \"02:42:00:00:00:02\", console_address = \"127.0.0.1:9\", power_command = {\"on\": \"true\", \"off\": \"true\"})\n"), 0o644)
	// The lab refuses a device with no console at all, naming its file and line.
	os.WriteFile(filepath.Join(labDir, "devices", "hb2.star"), []byte("device(name = \"hb2\", type = \"highbank\", mac = \"02:42:00:00:00:04\", power_command = {\"on\": \"true\"})\n"), 0o644)
	os.WriteFile(filepath.Join(labDir, "devices", "flaky.star"), []byte("device(name = \"flaky\", type = \"sim\", mac = \"02:42:00:00:00:03\", sim = {\"console_drops\": 1})\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"console", "nosuch"}, 64, "nosuch"},
		{[]string{"console", "hb2"}, 2, "hb2.star:1:7: device: ipmi_host is required for console"},
		{[]string{"power", "hb2", "status"}, 2, "hb2.star:1:7"},
		{[]string{"console", "sim"}, 64, "basalt shell sim"},
		{[]string{"bootdev", "sim01", "floppy"}, 64, "floppy"},
		{[]string{"bootdev", "hb1", "pxe"}, 3, "no BMC address"},
		{[]string{"bootdev", "nosuch", "pxe"}, 64, "nosuch"},
		{[]string{"release", "sim01"}, 64, "no basalt holds it"},
		{[]string{"run", "x.star", "--device", "sim", "--hold-on-failure", "1m"}, 64, ""},
	} {
		c, _, e := runCLI(append(tc.args, "--lab", labDir)...)
		if c != tc.code || !strings.Contains(e, tc.want) {
			t.Errorf("basalt %s = %d %q, want %d mentioning %q", strings.Join(tc.args, " "), c, e, tc.code, tc.want)
		}
	}

	pr, pw := io.Pipe()
	var o, e syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), context.Background(), []string{"console", "flaky", "--lab", labDir}, pr, &o, &e)
	}()
	for !strings.Contains(e.String(), "lost; reconnecting") {
		select {
		case c := <-done:
			t.Fatalf("console ended (%d) before the drop: %s", c, e.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Two consoles on one device never both get it.
	if c, _, e2 := runCLI("console", "flaky", "--lab", labDir); c != 3 || !strings.Contains(e2, "held by") {
		t.Errorf("second console = %d %q, want 3: the first holds it and serves no console", c, e2)
	}
	pw.Write([]byte("~."))
	if c := <-done; c != 0 {
		t.Errorf("console exit %d: %s", c, e.String())
	}
}

// basalt bootdev and power act on a real RMCP+ BMC (the sim's go-ipmi
// server) through the device's file, and respect the device lock.
func TestBootdevAndPowerThroughBMC(t *testing.T) {
	labDir := simLab(t)
	bmc := bmcsim.New(bmcsim.Config{Password: "bootdev-secret"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := bmc.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HB3_PW", "bootdev-secret")
	ip := bmc.IPMI()
	os.WriteFile(filepath.Join(labDir, "devices", "hb3.star"), []byte(fmt.Sprintf(
		"device(name = \"hb3\", type = \"highbank\", mac = \"02:42:00:00:00:05\", ipmi_host = %q, ipmi_port = %d, ipmi_user = %q, ipmi_password = secret(\"HB3_PW\"), cipher_suites = [3])\n",
		ip.Host, ip.Port, ip.User)), 0o644)
	if c, _, e := runCLI("bootdev", "hb3", "pxe", "--lab", labDir); c != 0 {
		t.Fatalf("bootdev pxe = %d %s", c, e)
	}
	if d, persistent := bmc.BootDevice(); d != bmcsim.BootPXE || persistent {
		t.Errorf("after bootdev pxe the BMC boots %q (persistent %v), want pxe once", d, persistent)
	}
	if c, _, e := runCLI("bootdev", "hb3", "disk", "--persistent", "--lab", labDir); c != 0 {
		t.Fatalf("bootdev disk --persistent = %d %s", c, e)
	}
	if d, persistent := bmc.BootDevice(); d != bmcsim.BootDisk || !persistent {
		t.Errorf("after bootdev disk --persistent the BMC boots %q (persistent %v), want disk, persistent", d, persistent)
	}
	if c, _, e := runCLI("power", "hb3", "on", "--lab", labDir); c != 0 || !bmc.PowerState() {
		t.Fatalf("power on = %d %s; BMC on %v", c, e, bmc.PowerState())
	}
	// A console session holds the device: power and bootdev wait their
	// turn and fail with its holder, as for jobs.
	held, err := lab.Lock(ctx, os.Getenv("BASALT_LOCK_DIR"), "hb3", lab.Holder{Job: "basalt console"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	for _, args := range [][]string{{"bootdev", "hb3", "pxe"}, {"power", "hb3", "off"}} {
		if c, _, e := runCLI(append(args, "--lab", labDir)...); c != 3 || !strings.Contains(e, `busy: held by pid`) || strings.Contains(e, "bootdev-secret") {
			t.Errorf("basalt %s on a held device = %d %q, want 3 naming the holder", strings.Join(args, " "), c, e)
		}
	}
	if !bmc.PowerState() {
		t.Errorf("power off on a held device turned it off")
	}
}

// basalt console over a connection command (console_command: a local
// shell here, as conmux or `ipmitool sol activate` would be): a line
// piped in runs there and its output comes back.
func TestConsoleCommandTransport(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	labDir := simLab(t)
	os.WriteFile(filepath.Join(labDir, "devices", "cmd1.star"), []byte(fmt.Sprintf(
		"device(name = \"cmd1\", type = \"highbank\", mac = \"02:42:00:00:00:08\", console_command = %q, power_command = {\"on\": \"true\"})\n", sh+" -i")), 0o644)
	pr, pw := io.Pipe()
	var o, e syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), context.Background(), []string{"console", "cmd1", "--lab", labDir}, pr, &o, &e)
	}()
	for !strings.Contains(e.String(), "~. detaches") {
		time.Sleep(20 * time.Millisecond)
	}
	pw.Write([]byte("echo cmd-$((2+3))\n"))
	for !strings.Contains(o.String(), "cmd-5") {
		select {
		case c := <-done:
			t.Fatalf("console ended (%d): %s%s", c, o.String(), e.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	pw.Write([]byte("~."))
	if c := <-done; c != 0 {
		t.Errorf("console exit %d: %s", c, e.String())
	}
}
