package sol

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian package coreutils/dash): %v", tool, err)
		}
	}
}

func TestCommandUnderPty(t *testing.T) {
	needTools(t, "cat")
	var capture builtinstest.SyncBuffer
	c := start(t, Command{Argv: []string{"cat"}}, Options{Capture: &capture, Backoff: fastBackoff})
	ctx := testContext(t)
	if err := c.SendLine(ctx, "hello pty", SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expect(ctx, expect.Literal("hello pty\n")); err != nil {
		t.Fatal(err)
	}
	// Raw mode: the terminal neither echoes nor turns \n into \r\n.
	if got := capture.String(); got != "hello pty\n" {
		t.Errorf("capture = %q, want %q", got, "hello pty\n")
	}
	if got := c.String(); got != "command cat" {
		t.Errorf("String() = %q, want %q", got, "command cat")
	}
}

func TestCommandExitReconnects(t *testing.T) {
	needTools(t, "sh", "cat")
	count := t.TempDir() + "/count"
	script := fmt.Sprintf(`n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s; echo "run $n"; [ $n -lt 3 ] && exit 0; exec cat`, count)
	rec := &builtinstest.Recorder{}
	c := start(t, Command{Argv: []string{"sh", "-c", script}}, Options{Emit: rec.Emit, Backoff: fastBackoff})
	ctx := testContext(t)
	for i := 1; i <= 3; i++ {
		if _, err := c.Expect(ctx, expect.Literal(fmt.Sprintf("run %d\n", i))); err != nil {
			t.Fatalf("Expect(run %d) = %v", i, err)
		}
	}
	if err := c.SendLine(ctx, "still there", SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expect(ctx, expect.Literal("still there\n")); err != nil {
		t.Fatal(err)
	}
	gaps := rec.Events("console_gap")
	if len(gaps) != 2 || !strings.Contains(fmt.Sprint(gaps[0]["error"]), "exited") {
		t.Errorf("console_gap events = %v, want 2 saying the command exited", gaps)
	}
}

func TestCommandCloseKillsProcessGroup(t *testing.T) {
	needTools(t, "sh", "sleep")
	c := start(t, Command{Argv: []string{"sh", "-c", `sleep 300 & echo "child $!"; wait`}}, Options{})
	m, err := c.Expect(testContext(t), expect.MustRegexp(`child (\d+)\n`))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(m.Groups[0])
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscallKill(pid)
			t.Fatalf("child %d of the console command still runs after Close", pid)
		}
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func syscallKill(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}

// LAVA's ser2net connection command: `telnet localhost PORT` under a pty,
// against a console server on loopback that drops the first connection.
func TestCommandTelnetSer2net(t *testing.T) {
	needTools(t, "telnet")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for conn := 0; ; conn++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, conn int) {
				defer c.Close()
				fmt.Fprintf(c, "ser2net port %d connection %d\r\n", ln.Addr().(*net.TCPAddr).Port, conn)
				if conn == 0 {
					return // the console server drops the first connection
				}
				// echo each line back, like a device's shell
				buf := make([]byte, 256)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}(c, conn)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	rec := &builtinstest.Recorder{}
	c := start(t, Command{Argv: []string{"telnet", "127.0.0.1", strconv.Itoa(port)}}, Options{Emit: rec.Emit, Backoff: fastBackoff})
	ctx := testContext(t)
	if _, err := c.Expect(ctx, expect.Literal("connection 1\r\n")); err != nil {
		t.Fatalf("Expect(connection 1) = %v", err)
	}
	if err := c.SendLine(ctx, "uname -a", SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expect(ctx, expect.Literal("uname -a")); err != nil {
		t.Fatalf("Expect(echo) = %v", err)
	}
	if gaps := rec.Events("console_gap"); len(gaps) < 1 {
		t.Errorf("console_gap events = %v, want one for the dropped connection", gaps)
	}
}
