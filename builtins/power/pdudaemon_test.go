package power_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/power"
)

// The real peer: Debian's pdudaemon (package pdudaemon), with its
// localcmdline driver, whose cmd_on/cmd_off templates run a local command
// per outlet; ours appends "PORT on|off" to a file. pdudaemon's "reboot" is
// off, a delay (5 s unless the request gives one), then on.

// startPDUDaemon runs pdudaemon with listener ("http" or "tcp") on
// 127.0.0.1:port and one PDU called pdu, and returns the file its outlets
// write to. It is stopped by PID when the test ends.
func startPDUDaemon(t *testing.T, listener string, port int) string {
	t.Helper()
	bin, err := exec.LookPath("pdudaemon")
	if err != nil {
		t.Skip("pdudaemon not installed (Debian package pdudaemon)")
	}
	dir := t.TempDir()
	outlets := filepath.Join(dir, "outlets")
	conf := map[string]any{
		"daemon": map[string]any{"hostname": "127.0.0.1", "port": port, "listener": listener, "logging_level": "DEBUG"},
		"pdus": map[string]any{"pdu": map[string]any{
			"driver":  "localcmdline",
			"cmd_on":  "echo '%s on' >> " + outlets,
			"cmd_off": "echo '%s off' >> " + outlets,
		}},
	}
	data, _ := json.Marshal(conf)
	cf := filepath.Join(dir, "pdudaemon.conf")
	if err := os.WriteFile(cf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(dir, "pdudaemon.log")
	cmd := exec.Command(bin, "--conf", cf, "--logfile", logf, "--loglevel", "DEBUG")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(logf)
			t.Logf("pdudaemon log:\n%s", log)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return outlets
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logf)
			t.Fatalf("pdudaemon exited: %v\n%s", cmd.ProcessState, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pdudaemon not listening on %s: %v", addr, err)
		}
	}
}

// waitOutlets waits until the outlet file holds want (pdudaemon runs the
// driver's command in its runner, perhaps after the reply).
func waitOutlets(t *testing.T, file, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(file)
		if string(data) == want {
			return
		}
		if time.Now().After(deadline) || !strings.HasPrefix(want, string(data)) {
			t.Fatalf("outlets = %q, want %q", data, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pdudaemon's HTTP listener on a free port, reached with curl: a job's
// power.reset(), power.off() and power.on() each run their command and
// pdudaemon switches outlet 5.
func TestPDUDaemonHTTP(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	port := freeTCPPort(t)
	outlets := startPDUDaemon(t, "http", port)
	url := fmt.Sprintf("http://127.0.0.1:%d/power/control/", port)
	c, err := power.NewCommands("foo", "devices/foo.star", map[string]string{
		"on":    curl + ` -fsS '` + url + `on?hostname=pdu&port=05'`,
		"off":   curl + ` -fsS '` + url + `off?hostname=pdu&port=05'`,
		"reset": curl + ` -fsS '` + url + `reboot?hostname=pdu&port=05&delay=0'`,
	})
	if err != nil {
		t.Fatal(err)
	}
	thread := newThread(t, ctxT(t), c)
	if err := run(t, thread, "power.reset()\n"); err != nil {
		t.Fatal(err)
	}
	waitOutlets(t, outlets, "5 off\n5 on\n")
	if err := run(t, thread, "power.off()\n"); err != nil {
		t.Fatal(err)
	}
	waitOutlets(t, outlets, "5 off\n5 on\n5 off\n")
	if err := run(t, thread, "power.on()\n"); err != nil {
		t.Fatal(err)
	}
	waitOutlets(t, outlets, "5 off\n5 on\n5 off\n5 on\n")

	// A PDU pdudaemon does not know: it answers 500, curl exits 22, and
	// the job gets an infrastructure error with curl's stderr.
	bad, _ := power.NewCommands("foo", "", map[string]string{"off": curl + ` -fsS '` + url + `off?hostname=nopdu&port=05'`})
	err = run(t, newThread(t, ctxT(t), bad), "power.off()\n")
	if err == nil || !strings.Contains(err.Error(), "exit status 22") || !strings.Contains(err.Error(), "500") {
		t.Errorf("power.off() through an unknown PDU = %v, want curl's exit status 22 and the 500", err)
	}
}

// pduclientPort is the port pduclient always connects to (it takes no
// port option).
const pduclientPort = 16421

// The seed's exact line (LAVA's add_device.py -p 5): pduclient --daemon
// localhost --hostname pdu --command reboot --port 05, to pdudaemon's TCP
// listener on pduclient's fixed port.
func TestPDUDaemonPduclient(t *testing.T) {
	client := "/usr/bin/pduclient"
	if _, err := os.Stat(client); err != nil {
		p, err := exec.LookPath("pduclient")
		if err != nil {
			t.Skip("pduclient not installed (upstream pdudaemon ships it; Debian's pdudaemon package does not)")
		}
		client = p
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", pduclientPort))
	if err != nil {
		t.Skipf("pduclient's fixed port %d is not free: %v", pduclientPort, err)
	}
	l.Close()
	outlets := startPDUDaemon(t, "tcp", pduclientPort)
	line := func(cmd string) string {
		return client + " --daemon localhost --hostname pdu --command " + cmd + " --port 05"
	}
	c, err := power.NewCommands("foo", "devices/foo.star", map[string]string{
		"on": line("on"), "off": line("off"), "reset": line("reboot"),
	})
	if err != nil {
		t.Fatal(err)
	}
	thread := newThread(t, ctxT(t), c)
	if err := run(t, thread, "power.reset()\npower.on()\n"); err != nil {
		t.Fatal(err)
	}
	// pdudaemon queues the reboot (off, 5 s, on) and the on.
	waitOutlets(t, outlets, "5 off\n5 on\n5 on\n")
}
