package target

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

func mustPattern(re string) expect.Pattern { return expect.MustRegexp(re) }

func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

func TestRunExact(t *testing.T) {
	r := newRig(t)
	tests := []struct {
		cmd  string
		out  string
		code int
	}{
		{"echo hello", "hello\n", 0},
		{"printf foo", "foo", 0},
		{`printf 'a\n\nb\n'`, "a\n\nb\n", 0},
		{"printf ''", "", 0},
		{"true", "", 0},
		{"false", "", 1},
		{"(exit 3)", "", 3},
		{"(echo out; echo err >&2; exit 7)", "out\nerr\n", 7},
		{"echo hi # a comment", "hi\n", 0},
		{"echo a\necho b", "a\nb\n", 0},
		{`echo "it's" 'a "quote"'`, "it's a \"quote\"\n", 0},
		{"nosuchcmd", "sh: nosuchcmd: not found\n", 127},
		{"cat", "", 0}, // standard input is /dev/null, not the console
		{"echo BASALT-0-S; echo BASALT-0-E:9", "BASALT-0-S\nBASALT-0-E:9\n", 0},
		{"seq 1 300", seqOutput(300), 0},
		{"printf 'trailing spaces  \\n  \\n'", "trailing spaces  \n  \n", 0},
	}
	for _, inject := range []bool{false, true} {
		r.inject.Store(inject)
		for _, tc := range tests {
			res, err := r.tgt.Run(r.context(), tc.cmd, false)
			if err != nil {
				t.Errorf("inject=%v: Run(%q) = %v", inject, tc.cmd, err)
				continue
			}
			if res.Output != tc.out || res.ExitCode != tc.code {
				t.Errorf("inject=%v: Run(%q) = (%q, %d), want (%q, %d)", inject, tc.cmd, res.Output, res.ExitCode, tc.out, tc.code)
			}
		}
	}
	// With injection on, the kernel lines did reach the console and stayed
	// in Raw.
	res := r.run("echo x; echo y")
	if !strings.Contains(res.Raw, strings.TrimSuffix(kernelLine, "\r\n")) || res.Output != "x\ny\n" {
		t.Errorf("Run with kernel messages = output %q raw %q, want output \"x\\ny\\n\" and the kernel line in raw", res.Output, res.Raw)
	}
	if !strings.Contains(r.capture.String(), kernelLine) {
		t.Error("console capture has no injected kernel line; the test did not test anything")
	}
}

func TestRunSyntaxErrorStatus(t *testing.T) {
	// An unterminated construct must not swallow the end marker; the exact
	// status a shell gives it varies, but it is not 0.
	r := newRig(t)
	for _, cmd := range []string{"echo 'unterminated", "if true; then", "echo $(("} {
		if res := r.run(cmd); res.ExitCode == 0 {
			t.Errorf("Run(%q) = %+v, want a non-zero status", cmd, res)
		}
	}
	if got := r.run("echo next").Output; got != "next\n" {
		t.Errorf("Run after a syntax error = %q, want \"next\\n\"", got)
	}
}

func TestRunKeepsShellState(t *testing.T) {
	r := newRig(t)
	r.run("cd /tmp")
	r.run("X=42")
	if got := r.run("pwd; echo $X").Output; got != "/tmp\n42\n" {
		t.Errorf("pwd; echo $X = %q, want \"/tmp\\n42\\n\"", got)
	}
}

func TestRunKernelLookalikeOutput(t *testing.T) {
	r := newRig(t)
	res := r.run(`echo '[    1.000000] fake'; echo real`)
	if res.Output != "real\n" || res.Raw != "[    1.000000] fake\nreal\n" {
		t.Errorf("output %q raw %q, want \"real\\n\" and both lines in raw", res.Output, res.Raw)
	}
	r2 := newRig(t, withConfig(func(c *Config) { c.KernelMessage = "-" }))
	if got := r2.run(`echo '[    1.000000] fake'`).Output; got != "[    1.000000] fake\n" {
		t.Errorf("KernelMessage \"-\": output %q, want the line kept", got)
	}
}

func TestRunCheck(t *testing.T) {
	r := newRig(t)
	_, err := r.tgt.Run(r.context(), "ls /nonexistent", true)
	var re *RunError
	if !errors.As(err, &re) || builtins.ClassOf(err) != builtins.ClassDevice {
		t.Fatalf("Run(ls /nonexistent, check) = %v, want a device *RunError", err)
	}
	if re.ExitCode == 0 || !strings.Contains(err.Error(), "ls /nonexistent") || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("error = %q, want the command, its status and its output", err)
	}
	if _, err := r.tgt.Run(r.context(), "true", true); err != nil {
		t.Errorf("Run(true, check) = %v", err)
	}
}

func TestRunTimeout(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(r.ctx, 300*time.Millisecond)
	defer cancel()
	_, err := r.tgt.Run(ctx, "sleep 60", false)
	var te *sol.TimeoutError
	if !errors.As(err, &te) || builtins.ClassOf(err) != builtins.ClassDevice {
		t.Fatalf("Run(sleep 60) past its deadline = %v, want a device *sol.TimeoutError", err)
	}
	// The command was interrupted: the shell takes the next one.
	if got := r.run("echo after").Output; got != "after\n" {
		t.Errorf("Run after a timeout = %q, want \"after\\n\"", got)
	}
}

func TestRunLongLineRefused(t *testing.T) {
	r := newRig(t)
	_, err := r.tgt.Run(r.context(), "echo "+strings.Repeat("x", 5000), false)
	if builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("Run(5000 characters) = %v, want a job error", err)
	}
}

func TestIP(t *testing.T) {
	r := newRig(t)
	ip, err := r.tgt.IP(r.context())
	if err != nil || ip != r.ip {
		t.Errorf("IP() = %q, %v, want %s", ip, err, r.ip)
	}
	// A device fact wins over asking the console.
	tgt := New(Config{Console: r.con, Prompt: testPrompt})
	tgt.SetFacts(map[string]any{"ip": "192.0.2.7"})
	if ip, err := tgt.IP(r.context()); ip != "192.0.2.7" || err != nil {
		t.Errorf("IP() with fact = %q, %v, want 192.0.2.7", ip, err)
	}
}

func TestParseIP(t *testing.T) {
	ipAddr := `1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000
    inet 127.0.0.1/8 scope host lo
       valid_lft forever preferred_lft forever
2: enp1s0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP group default qlen 1000
    altname enx525400123456
    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic noprefixroute enp1s0
       valid_lft 86005sec preferred_lft 86005sec
`
	busyboxIfconfig := `eth0      Link encap:Ethernet  HWaddr 52:54:00:12:34:56
          inet addr:192.168.1.20  Bcast:192.168.1.255  Mask:255.255.255.0
          UP BROADCAST RUNNING MULTICAST  MTU:1500  Metric:1

lo        Link encap:Local Loopback
          inet addr:127.0.0.1  Mask:255.0.0.0
`
	netTools := `lo: flags=73<UP,LOOPBACK,RUNNING>  mtu 65536
        inet 127.0.0.1  netmask 255.0.0.0
eth1: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1500
        inet 172.16.0.9  netmask 255.255.0.0  broadcast 172.16.255.255
`
	tests := []struct {
		name string
		f    func(string) string
		in   string
		want string
	}{
		{"parseIPAddr(iproute2)", parseIPAddr, ipAddr, "10.0.2.15"},
		{"parseIPAddr(lo only)", parseIPAddr, "1: lo: <LOOPBACK>\n    inet 127.0.0.1/8 scope host lo\n", ""},
		{"parseIPAddr(empty)", parseIPAddr, "", ""},
		{"parseIfconfig(busybox)", parseIfconfig, busyboxIfconfig, "192.168.1.20"},
		{"parseIfconfig(net-tools)", parseIfconfig, netTools, "172.16.0.9"},
		{"parseIfconfig(lo only)", parseIfconfig, "lo  Link encap:Local Loopback\n  inet addr:127.0.0.1\n", ""},
		{"JoinPrompts(a, b)", func(string) string { return JoinPrompts("a# ", "", "b\\$ ") }, "", `(?:a# )|(?:b\$ )`},
		{"JoinPrompts()", func(string) string { return JoinPrompts() }, "", ""},
	}
	for _, tc := range tests {
		if got := tc.f(tc.in); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
		}
	}
}
