package builtinstest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Dnsmasq starts dnsmasq (the real peer of basalt's DHCP server and of
// the sim's DHCP clients) in network namespace ns on iface, with args
// added (--dhcp-range=..., --enable-tftp ...), and returns once its DHCP
// socket is bound. It skips without dnsmasq, and stops it when the test
// ends, logging its output if the test failed.
func Dnsmasq(t *testing.T, ns, iface string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq not installed (apt-get install dnsmasq-base)")
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=" + iface, "--bind-interfaces", "--pid-file=", "--no-resolv", "--no-hosts", "--log-dhcp",
		"--dhcp-leasefile=" + filepath.Join(t.TempDir(), "leases")}, args...)...)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID: the process this test started
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", out.String())
		}
	})
	for range 100 {
		if o, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-lun", "sport", "= :67").Output(); strings.Contains(string(o), ":67") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
