package ubootsim_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/pxe/ubootsim"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/qemu"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// realUBoot is Debian's U-Boot 2023.01 for qemu x86 (u-boot-qemu), the
// version the sim imitates.
const realUBoot = "/usr/lib/u-boot/qemu-x86/u-boot.rom"

// board is one end of a U-Boot console: typed keys in, output collected.
type board struct {
	in  io.Writer
	mu  sync.Mutex
	out strings.Builder
}

func (b *board) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}

func (b *board) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// waitFrom waits until s appears after offset from; it returns the offset
// just after it.
func (b *board) waitFrom(t *testing.T, from int, s string, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if i := strings.Index(b.text()[from:], s); i >= 0 {
			return from + i + len(s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q within %s; output since %d:\n%q", s, d, from, b.text()[from:])
	return 0
}

// session interrupts autoboot, types each command and returns, for each,
// what the board printed from the command's echo up to the next prompt.
func session(t *testing.T, b *board, cmds []string, boot time.Duration) []string {
	t.Helper()
	at := b.waitFrom(t, 0, "Hit any key to stop autoboot:", boot)
	io.WriteString(b.in, " ")
	at = b.waitFrom(t, at, "=> ", 10*time.Second)
	var outs []string
	for _, c := range cmds {
		io.WriteString(b.in, c+"\r")
		end := b.waitFrom(t, at, "\r\n=> ", 10*time.Second)
		outs = append(outs, b.text()[at:end-len("=> ")])
		at = end
	}
	return outs
}

// wireSummary is a request's fields and options but its xid, secs and
// parameter request list.
func wireSummary(m *dhcpv4.DHCPv4) string {
	o := dhcpv4.Options{}
	for k, v := range m.Options {
		if k != dhcpv4.OptionParameterRequestList.Code() {
			o[k] = v
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "op=%d htype=%d hlen=%d hops=%d flags=%#x ciaddr=%s yiaddr=%s siaddr=%s giaddr=%s chaddr=%s sname=%q file=%q",
		m.OpCode, m.HWType, len(m.ClientHWAddr), m.HopCount, m.Flags, m.ClientIPAddr, m.YourIPAddr, m.ServerIPAddr,
		m.GatewayIPAddr, m.ClientHWAddr, m.ServerHostName, m.BootFileName)
	keys := make([]int, 0, len(o))
	for k := range o {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %d=%x", k, o[uint8(k)])
	}
	return b.String()
}

// startBoard starts cmd (qemu running real U-Boot) with its serial line
// on stdin and stdout.
func startBoard(t *testing.T, cmd *exec.Cmd) *board {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &board{in: stdin}
	cmd.Stdout = b
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return b
}

// more types cmds at the prompt the board is at and returns what each
// printed, as session does.
func more(t *testing.T, b *board, cmds []string) []string {
	t.Helper()
	at := len(b.text())
	var outs []string
	for _, c := range cmds {
		io.WriteString(b.in, c+"\r")
		end := b.waitFrom(t, at, "\r\n=> ", time.Minute)
		outs = append(outs, b.text()[at:end-len("=> ")])
		at = end
	}
	return outs
}

// The sim's U-Boot against the real one: the same keys typed to both give
// the same bytes back (echo, line editing, messages). Only commands that
// need no network or board-specific memory are compared; netboot messages
// are checked against the source in TestShell.
func TestDifferentialRealUBoot(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	if _, err := os.Stat(realUBoot); err != nil {
		t.Skip("no real U-Boot to compare with (apt-get install u-boot-qemu)")
	}
	cmds := []string{
		"printenv nosuch",
		"frobnicate 1",
		"setenv greeting hello  world",
		"printenv greeting",
		"setenv greeting",
		"printenv greeting",
		"setenv v 1; echo ${v}$v",
		"echo 'a;b' \"x$v\"",
		"run nosuch",
		"bootm 0x1000000",
		"garbage\x15echo erased",
		"echo abcd\x08\x08ef",
		"printenv autoload",
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// No NIC: nothing leaves the VM.
	cmd := exec.CommandContext(ctx, qemu, "-bios", realUBoot, "-display", "none", "-serial", "stdio",
		"-monitor", "none", "-nic", "none", "-m", "256")
	real := startBoard(t, cmd)
	defer func() {
		cmd.Process.Kill() // by PID: the qemu this test started
		cmd.Wait()
	}()
	want := session(t, real, cmds, time.Minute)

	r, w := io.Pipe()
	defer w.Close()
	sim := &board{in: w}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	go ubootsim.Run(sctx, ubootsim.Config{Console: struct {
		io.Reader
		io.Writer
	}{r, sim}, Store: &ubootsim.Store{}, BootDelay: 2})
	got := session(t, sim, cmds, 10*time.Second)

	for i, c := range cmds {
		if got[i] != want[i] {
			t.Errorf("%q: sim printed %q, real U-Boot %q", c, got[i], want[i])
		}
	}
}

// The sim's dhcp against the real U-Boot's, both asking basalt's DHCP
// server (server mode) on one segment: a network namespace with a bridge,
// real U-Boot's e1000 on a tap of it, the sim's NIC on a veth of it. The
// same MAC gets the same lease; what each prints for the exchange and the
// environment it leaves must be the same bytes (the time in "(N ms)" and
// the number of broadcasts before the link was up aside), and basalt must
// have seen the same DHCP messages from both. The sim is told the real
// one's vendor class and architecture (x86: "U-Boot", none) with U-Boot's
// own bootp_vci and bootp_arch variables, and its default bootfile (sent in
// the file field). The DISCOVER and REQUEST each sent are captured on the
// bridge and compared field by field.
func TestDifferentialRealUBootDHCP(t *testing.T) {
	qemuBin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	if _, err := os.Stat(realUBoot); err != nil {
		t.Skip("no real U-Boot to compare with (apt-get install u-boot-qemu)")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	ns, err := qemu.NewNetNS(fmt.Sprintf("bubd-%d", os.Getpid()%100000))
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	a := ns.Addr.Addr().As4()
	sub := fmt.Sprintf("%d.%d.%d", a[0], a[1], a[2])
	r, err := lab.ParseDHCPRange(sub + ".100-" + sub + ".109")
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	var srv *pxe.Server
	// basalt's server comes up on the segment after the first commands,
	// afresh for each board: the same lease for the same MAC.
	startServer := func() {
		if srv != nil {
			srv.Close()
		}
		srv = pxe.NewServer(pxe.Config{TFTPAddr: ns.Addr.Addr().String() + ":69", HTTPAddr: ns.Addr.Addr().String() + ":8080",
			DHCP: "server", DHCPInterface: ns.Bridge, DHCPRange: r, DHCPRouter: ns.Addr.Addr(), DHCPLease: time.Hour,
			DHCPMACs: []string{boardMAC}, SocketsIn: ns.Exec,
			LoaderDir: t.TempDir(), CacheDir: t.TempDir(), Emit: ev.emit})
		if err := srv.Start(context.Background()); err != nil {
			t.Fatalf("start basalt's pxe server: %v", err)
		}
	}
	t.Cleanup(func() {
		if srv != nil {
			srv.Close()
		}
	})

	// Every packet to port 67 on the bridge, from both boards.
	var capConn net.PacketConn
	if err := ns.Exec(func() (err error) {
		capConn, err = nclient4.NewRawUDPConn(ns.Bridge, dhcpv4.ServerPort)
		return err
	}); err != nil {
		t.Fatalf("capture on %s: %v", ns.Bridge, err)
	}
	var capMu sync.Mutex
	var captured []*dhcpv4.DHCPv4
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := capConn.ReadFrom(buf)
			if err != nil {
				return
			}
			if m, err := dhcpv4.FromBytes(buf[:n]); err == nil && m.OpCode == dhcpv4.OpcodeBootRequest {
				capMu.Lock()
				captured = append(captured, m)
				capMu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { capConn.Close() })
	// sent returns the first DISCOVER and the last REQUEST captured since
	// from, and how many there were.
	sent := func(from int) (discover, request *dhcpv4.DHCPv4, n int) {
		capMu.Lock()
		defer capMu.Unlock()
		for _, m := range captured[from:] {
			switch m.MessageType() {
			case dhcpv4.MessageTypeDiscover:
				if discover == nil {
					discover = m
				}
			case dhcpv4.MessageTypeRequest:
				request = m
			}
		}
		return discover, request, len(captured)
	}

	// First with no server on the segment, then with basalt's.
	alone := []string{"setenv autoload no; setenv bootp_vci U-Boot; setenv bootp_arch 0; setenv bootfile bzImage", "setenv bootpretryperiod 1000; dhcp"}
	cmds := []string{"setenv bootpretryperiod; dhcp", "printenv ipaddr serverip netmask gatewayip"}
	norm := regexp.MustCompile(`\(\d+ ms\)`)
	broadcasts := regexp.MustCompile(`(BOOTP broadcast \d+\r\n)+`)
	clean := func(outs []string) []string {
		var c []string
		for _, o := range outs {
			c = append(c, broadcasts.ReplaceAllString(norm.ReplaceAllString(o, "(N ms)"), "BOOTP broadcast N\r\n"))
		}
		return c
	}
	both := func(b *board, boot time.Duration) []string {
		// The number of broadcasts before "Retry time exceeded" (3 in
		// 1 s from both, measured) is timing, not compared.
		first := clean(session(t, b, alone, boot))
		startServer()
		return append(first, clean(more(t, b, cmds))...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// No VGA: U-Boot skips its video init, which under TCG on a loaded
	// host took more than a minute once.
	cmd := ns.Command(ctx, qemuBin, "-bios", realUBoot, "-display", "none", "-serial", "stdio", "-monitor", "none", "-vga", "none",
		"-m", "256", "-nic", "tap,ifname="+ns.Tap+",script=no,downscript=no,model=e1000,mac="+boardMAC)
	real := startBoard(t, cmd)
	want := both(real, 3*time.Minute)
	cmd.Process.Kill() // by PID: the qemu this test started
	cmd.Wait()
	srv.Close()
	srv = nil
	realSaw := dhcpTypes(ev)
	realDisc, realReq, nReal := sent(0)

	// The sim's NIC: a veth on the bridge, its other end in a namespace
	// of the board's own.
	brd := ns.Name + "-b"
	if err := ipCmd("netns", "add", brd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipCmd("netns", "del", brd) })
	for _, args := range [][]string{
		{"-n", ns.Name, "link", "add", "ubp0", "type", "veth", "peer", "name", "ub0", "netns", brd},
		{"-n", ns.Name, "link", "set", "ubp0", "master", ns.Bridge},
		{"-n", ns.Name, "link", "set", "ubp0", "up"},
		{"-n", brd, "link", "set", "ub0", "address", boardMAC},
		{"-n", brd, "link", "set", "ub0", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	w := &wire{brdNS: brd, nic: "ub0"}
	pr, pw := io.Pipe()
	defer pw.Close()
	sim := &board{in: pw}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	go ubootsim.Run(sctx, ubootsim.Config{Console: struct {
		io.Reader
		io.Writer
	}{pr, sim}, Store: &ubootsim.Store{}, BootDelay: 2, MAC: boardMAC, Link: w.link()})
	got := both(sim, 10*time.Second)
	simSaw := dhcpTypes(ev)[len(realSaw):]
	simDisc, simReq, _ := sent(nReal)
	if realDisc == nil || realReq == nil || simDisc == nil || simReq == nil {
		t.Fatalf("captured DISCOVER and REQUEST: real %v %v, sim %v %v", realDisc, realReq, simDisc, simReq)
	}
	// The packets, field by field and option by option, but for the xid,
	// the seconds and the parameter request list: Debian's x86 build has
	// CONFIG_BOOTP_BOOTFILESIZE and asks for option 13 too.
	for _, p := range [][2]*dhcpv4.DHCPv4{{realDisc, simDisc}, {realReq, simReq}} {
		r, m := p[0], p[1]
		if got, want := wireSummary(m), wireSummary(r); got != want {
			t.Errorf("%s on the wire:\n sim  %s\n real %s", r.MessageType(), got, want)
		}
		if prl := fmt.Sprint(r.ParameterRequestList()); prl != "Subnet Mask, Router, Domain Name Server, Host Name, Boot File Size, Root Path" {
			t.Errorf("real U-Boot's parameter request list %s", prl)
		}
		if prl := fmt.Sprint(m.ParameterRequestList()); prl != "Subnet Mask, Router, Domain Name Server, Host Name, Root Path" {
			t.Errorf("the sim's parameter request list %s, want Highbank's (no boot file size)", prl)
		}
	}
	t.Logf("real U-Boot: %q\nsim: %q\nbasalt saw %v then %v", want, got, realSaw, simSaw)

	for i, c := range append(alone, cmds...) {
		if got[i] != want[i] {
			t.Errorf("%q: sim printed %q, real U-Boot %q", c, got[i], want[i])
		}
	}
	// What basalt's server saw: DISCOVERs, then one REQUEST, from each.
	if strings.Join(simSaw[len(simSaw)-2:], " ") != strings.Join(realSaw[len(realSaw)-2:], " ") || realSaw[len(realSaw)-1] != "REQUEST/U-Boot" {
		t.Errorf("basalt's DHCP saw %v from the sim, %v from real U-Boot", simSaw, realSaw)
	}
}
