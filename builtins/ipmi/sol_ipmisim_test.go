package ipmi_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// ipmiSimSOL runs OpenIPMI's ipmi_sim with its SOL port on a TCP
// connection this test serves ("sol tcp:HOST:PORT", ipmi_lan(5)) and
// returns the lab entry and the node's end of that serial line.
func ipmiSimSOL(t *testing.T) (lab.IPMI, net.Conn) {
	t.Helper()
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		t.Skip("ipmi_sim not installed (Debian package openipmi)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dir := t.TempDir()
	port := freeUDPPort(t)
	conf := fmt.Sprintf(`name "basalt"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  sol "tcp:%s" 115200
  user 2 true "admin" "s3cret-pw" admin 10 none md2 md5 straight
`, port, ln.Addr())
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
	for name, body := range map[string]string{"lan.conf": conf, "sim.emu": emu} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "sim.emu"), "-n", "-s", state)
	cmd.Dir = dir
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(15 * time.Second))
	node, err := ln.Accept()
	if err != nil {
		t.Fatalf("ipmi_sim did not connect its SOL port: %v: %s", err, out.String())
	}
	t.Cleanup(func() { node.Close() })
	cfg := lab.IPMI{Host: "127.0.0.1", Port: port, User: "admin", CipherSuites: []int{3},
		Password: lab.NewSecret("IPMI_SIM_PW", "s3cret-pw"), Timeout: 300 * time.Millisecond, Retries: 2}
	return cfg, node
}

// keys collects what reaches the node's end of the serial line.
type keys struct {
	mu sync.Mutex
	b  strings.Builder
}

func (k *keys) read(r io.Reader) {
	buf := make([]byte, 256)
	for {
		n, err := r.Read(buf)
		k.mu.Lock()
		k.b.Write(buf[:n])
		k.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (k *keys) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.b.String()
}

// TestSOLAgainstIPMISim runs basalt's SOL engine against OpenIPMI's
// ipmi_sim, whose BMC pushes output unasked and ignores polls: output
// arrives, keystrokes arrive, and a packet left unacknowledged on purpose
// is sent again by ipmi_sim (lanserv/sol.c retransmits every second) and
// taken once.
func TestSOLAgainstIPMISim(t *testing.T) {
	cfg, node := ipmiSimSOL(t)
	k := &keys{}
	go k.read(node)
	tr := ipmi.NewSOL("ipmi_sim", cfg, ipmi.SOLOptions{})
	ctx := ctxT(t, 30*time.Second)
	// ipmi_sim connects its SOL port before its LAN channel answers.
	var conn io.ReadWriteCloser
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err = tr.Open(ctx); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if _, err := conn.Write([]byte("echo hello\r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "keystrokes at the node", func() bool { return k.String() == "echo hello\r" })
	if _, err := node.Write([]byte("hello\r\n# ")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, conn, "hello\r\n# ")

	// Past the poll probe: ipmi_sim answers no polls, so nothing but its
	// own retransmission brings the packet again.
	time.Sleep(300 * time.Millisecond)
	ipmi.SkipAcks(tr, 1)
	if _, err := node.Write([]byte("unacknowledged\r\n")); err != nil {
		t.Fatal(err)
	}
	got := readUntil(t, conn, "unacknowledged\r\n")
	waitFor(t, "ipmi_sim's retransmission", func() bool { return ipmi.Resent(conn) >= 1 })
	if _, err := node.Write([]byte("after\r\n")); err != nil {
		t.Fatal(err)
	}
	got += readUntil(t, conn, "after\r\n")
	if got != "unacknowledged\r\nafter\r\n" {
		t.Errorf("output after the retransmission = %q, want each line once", got)
	}
}
