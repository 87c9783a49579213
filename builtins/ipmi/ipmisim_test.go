package ipmi_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// chassisScript is ipmi_sim's chassis_control program: ipmi_sim runs it as
// "SCRIPT <mc> get power boot" (prints "power:1", "boot:pxe") and
// "SCRIPT <mc> set power 1 boot pxe ..." (prints nothing on success). State
// lives in files beside it.
const chassisScript = `#!/bin/sh
dir=$(dirname "$0")
shift
op=$1; shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
		boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done ;;
set)
	while [ $# -gt 0 ]; do
		p=$1; v=$2; shift 2
		case $p in
		power)
			# A chassis that cannot power on (TestBMCRefusedPowerOnLikeIPMISim).
			if [ "$v" = 1 ] && [ -e "$dir/refuse_power_on" ]; then echo "power supply failed"; exit 1; fi
			echo "$v" > "$dir/power" ;;
		reset) echo "$v" >> "$dir/resets" ;;
		boot) echo "$v" > "$dir/boot" ;;
		identify) shift ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done ;;
*) exit 1 ;;
esac
`

// ipmiSim runs OpenIPMI's ipmi_sim on 127.0.0.1 and returns its lab entry.
// withChassis adds the chassis_control script (without one ipmi_sim refuses
// boot device settings).
func ipmiSim(t testing.TB, withChassis bool) (lab.IPMI, string) {
	t.Helper()
	s := startIPMISim(t, withChassis)
	return s.cfg, s.dir
}

// simProc is a running ipmi_sim.
type simProc struct {
	cfg  lab.IPMI
	dir  string
	argv []string
	cmd  *exec.Cmd
	out  *strings.Builder
}

// restart kills ipmi_sim and starts it again on the same port: it knows
// no session any more.
func (s *simProc) restart(t testing.TB) {
	t.Helper()
	s.cmd.Process.Kill() // by PID: the process this test started
	s.cmd.Wait()
	s.start(t)
}

func (s *simProc) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Dir = s.dir
	s.out = &strings.Builder{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	// Wait until it answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := ipmitool(s.cfg, "3", "mc", "info"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipmi_sim did not come up: %s", s.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startIPMISim(t testing.TB, withChassis bool) *simProc {
	t.Helper()
	return startIPMISimWith(t, withChassis, "")
}

// startIPMISimWith is startIPMISim with more lines for the MC's section of
// lan.conf (ipmi_lan(5)), such as a sol line.
func startIPMISimWith(t testing.TB, withChassis bool, mcConf string) *simProc {
	t.Helper()
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		t.Skip("ipmi_sim not installed (Debian package openipmi)")
	}
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Skip("ipmitool not installed (Debian package ipmitool)")
	}
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
  user 2 true "admin" "s3cret-pw" admin 10 none md2 md5 straight
`, port)
	if withChassis {
		script := filepath.Join(dir, "chassis")
		if err := os.WriteFile(script, []byte(chassisScript), 0o755); err != nil {
			t.Fatal(err)
		}
		conf += fmt.Sprintf("  chassis_control %q\n", script+" 0x20")
	}
	conf += mcConf
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
	s := &simProc{
		cfg: lab.IPMI{Host: "127.0.0.1", Port: port, User: "admin",
			Password: lab.NewSecret("IPMI_SIM_PW", "s3cret-pw"), Timeout: 300 * time.Millisecond, Retries: 2},
		dir:  dir,
		argv: []string{bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "sim.emu"), "-n", "-s", state},
	}
	s.start(t)
	t.Cleanup(func() {
		s.cmd.Process.Kill() // by PID: the process this test started
		s.cmd.Wait()
	})
	return s
}

func freeUDPPort(t testing.TB) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// ipmitool runs one ipmitool lanplus command with cipher suite suite.
func ipmitool(cfg lab.IPMI, suite string, args ...string) (string, error) {
	argv := append([]string{"-I", "lanplus", "-H", cfg.Host, "-p", fmt.Sprint(cfg.Port),
		"-U", cfg.User, "-P", cfg.Password.Value(), "-C", suite, "-N", "1", "-R", "3"}, args...)
	out, err := exec.Command("ipmitool", argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ipmitool %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// TestClientAgainstIPMISim drives OpenIPMI's simulator, an independent BMC
// implementation that does not know cipher suite 17: the client falls back
// to 3, and one session carries every call. What ipmi_sim reports back
// (power status, the boot device selector) is checked by
// TestControllerSuite/Client/ipmi_sim; here, what reached its
// chassis_control program.
func TestClientAgainstIPMISim(t *testing.T) {
	cfg, dir := ipmiSim(t, true)
	ev := &events{}
	c := newClient(t, cfg, ev)
	ctx := ctxT(t, time.Minute)

	for _, a := range []ipmi.Action{ipmi.On, ipmi.On, ipmi.Off, ipmi.Off, ipmi.On} {
		if err := c.Power(ctx, a); err != nil {
			t.Fatalf("Power(%s) = %v", a, err)
		}
		st, _ := os.ReadFile(filepath.Join(dir, "power"))
		if got, want := strings.TrimSpace(string(st)), map[bool]string{true: "1", false: "0"}[a == ipmi.On]; got != want {
			t.Errorf("after Power(%s): chassis_control power = %q, want %q", a, got, want)
		}
	}
	if err := c.SetBootDevice(ctx, ipmi.PXE, ipmi.BootOptions{}); err != nil {
		t.Fatalf("SetBootDevice(pxe) = %v", err)
	}
	if st, _ := os.ReadFile(filepath.Join(dir, "boot")); strings.TrimSpace(string(st)) != "pxe" {
		t.Errorf("after SetBootDevice(pxe): chassis_control boot = %q, want pxe", st)
	}
	opens := 0
	for _, cmd := range ev.commands() {
		if strings.HasPrefix(cmd, "open session") {
			opens++
		}
	}
	if opens != 1 {
		t.Errorf("opened %d sessions, want 1: %v", opens, ev.commands())
	}
}

// TestClientIPMISimRefusal: without a chassis_control program ipmi_sim
// refuses boot device settings; the error names the device, the command and
// the completion code in words.
func TestClientIPMISimRefusal(t *testing.T) {
	cfg, _ := ipmiSim(t, false)
	c := newClient(t, cfg, nil)
	err := c.SetBootDevice(ctxT(t, 30*time.Second), ipmi.PXE, ipmi.BootOptions{})
	if err == nil {
		t.Fatal("SetBootDevice(pxe) without chassis_control succeeded")
	}
	if builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("class = %s, want infra", builtins.ClassOf(err))
	}
	msg := err.Error()
	if !strings.Contains(msg, `device "sim": set boot device pxe: BMC answered completion code `) || !strings.Contains(msg, "h (") {
		t.Errorf("error %q does not name device, command and completion code in words", msg)
	}
	t.Log(msg)
}

// TestClientIPMISimRestart: a restarted ipmi_sim knows no session and
// ignores the old one's packets; the next call spends one datagram on it,
// then opens a new session, instead of its whole retry budget.
func TestClientIPMISimRestart(t *testing.T) {
	s := startIPMISim(t, true)
	r := newRelay(t, net.JoinHostPort(s.cfg.Host, fmt.Sprint(s.cfg.Port)))
	cfg := s.cfg
	cfg.Port, cfg.CipherSuites, cfg.Keepalive = r.Port(), []int{3}, -1
	ev := &events{}
	c := newClient(t, cfg, ev)
	ctx := ctxT(t, time.Minute)
	if err := c.Power(ctx, ipmi.On); err != nil {
		t.Fatal(err)
	}
	s.restart(t)
	// ipmi_sim restarts in a fraction of a second; a BMC takes far
	// longer than one datagram timeout, within which the client trusts
	// a session that answered.
	time.Sleep(2 * cfg.Timeout)
	before := r.snapshot()
	ev.Reset()
	if err := c.Power(ctx, ipmi.Off); err != nil {
		t.Fatalf("Power(off) after ipmi_sim restarted = %v", err)
	}
	checkForgotten(t, "after ipmi_sim restarted", before, r.since(before))
	if got, want := ev.commands(), []string{"open session=ok", "chassis control (power off)=ok"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// TestClientIPMISimRestartNoTimeout: the call after ipmi_sim restarted does
// not wait out a datagram timeout on the forgotten session. With a
// datagram timeout longer than the call's whole deadline the call still
// succeeds: it opens a new session beside the silent one soon after
// its one datagram, and runs there. (It failed before: the
// call waited the full timeout for the forgotten session's answer.)
func TestClientIPMISimRestartNoTimeout(t *testing.T) {
	s := startIPMISim(t, true)
	r := newRelay(t, net.JoinHostPort(s.cfg.Host, fmt.Sprint(s.cfg.Port)))
	cfg := s.cfg
	cfg.Port, cfg.CipherSuites, cfg.Keepalive, cfg.Timeout = r.Port(), []int{3}, -1, 4*time.Second
	ev := &events{}
	c := newClient(t, cfg, ev)
	if _, err := c.PowerStatus(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.restart(t)
	time.Sleep(cfg.Timeout + 200*time.Millisecond) // the session is now silent for longer than a timeout
	before := r.snapshot()
	ev.Reset()
	if _, err := c.PowerStatus(ctxT(t, cfg.Timeout/2)); err != nil {
		t.Fatalf("PowerStatus after ipmi_sim restarted, within half a datagram timeout = %v", err)
	}
	checkForgotten(t, "after ipmi_sim restarted", before, r.since(before))
	if got, want := ev.commands(), []string{"open session=ok", "get chassis status=ok"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	// A reset is not repeated: on a silent session it waits for the
	// probe's answer (here: none, then a new session) before it is sent.
	s.restart(t)
	time.Sleep(cfg.Timeout + 200*time.Millisecond)
	before = r.snapshot()
	ev.Reset()
	if err := c.Power(ctxT(t, cfg.Timeout/2), ipmi.Reset); err != nil {
		t.Fatalf("Power(reset) after ipmi_sim restarted = %v", err)
	}
	checkForgotten(t, "reset after ipmi_sim restarted", before, r.since(before))
	if got, want := ev.commands(), []string{"open session=ok", "chassis control (power reset)=ok"}; !slices.Equal(got, want) {
		t.Errorf("reset: events = %v, want %v", got, want)
	}
}

// TestIPMISimForgetsIdleSession (make e2e; 40 s): ipmi_sim, and the sim BMC
// with Config.SessionTimeout set to ipmi_sim's 30 s, both forget a session
// left silent for 40 s and ignore its packets without an answer; a Client
// with the default keepalive keeps its session through the same 40 s.
// (Before basalt's keepalive, go-ipmi's at 30 s raced ipmi_sim's timeout
// at 29–30 s and mostly lost.)
func TestIPMISimForgetsIdleSession(t *testing.T) {
	if os.Getenv("BASALT_E2E") != "1" {
		t.Skip("set BASALT_E2E=1 to idle 40 s against ipmi_sim")
	}
	bmcs := map[string]func(t *testing.T) lab.IPMI{
		"ipmi_sim": func(t *testing.T) lab.IPMI {
			cfg := startIPMISim(t, true).cfg
			cfg.CipherSuites = []int{3}
			return cfg
		},
		"bmcsim": func(t *testing.T) lab.IPMI {
			return startBMC(t, bmcsim.Config{SessionTimeout: 30 * time.Second}).IPMI()
		},
	}
	for name, start := range bmcs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := start(t)
			r := newRelay(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
			quiet := cfg
			quiet.Port, quiet.Keepalive = r.Port(), -1
			qev, kev := &events{}, &events{}
			q := newClient(t, quiet, qev) // no keepalive
			cfg.Keepalive = 0             // the default
			k := newClient(t, cfg, kev)
			ctx := ctxT(t, 2*time.Minute)
			for _, c := range []*ipmi.Client{q, k} {
				if err := c.Power(ctx, ipmi.On); err != nil {
					t.Fatal(err)
				}
			}
			r.mute(true) // silence go-ipmi's keepalive too
			time.Sleep(40 * time.Second)
			r.mute(false)
			before := r.snapshot()
			if err := q.Power(ctx, ipmi.Off); err != nil {
				t.Fatalf("Power(off) after 40 s idle without keepalive = %v", err)
			}
			checkForgotten(t, "after 40 s idle without keepalive", before, r.since(before))
			if err := k.Power(ctx, ipmi.On); err != nil {
				t.Fatalf("Power(on) after 40 s idle with keepalive = %v", err)
			}
			want := []string{"open session=ok", "chassis control (power on)=ok", "chassis control (power on)=ok"}
			if got := kev.commands(); !slices.Equal(got, want) {
				t.Errorf("with keepalive: events = %v, want %v", got, want)
			}
		})
	}
}
