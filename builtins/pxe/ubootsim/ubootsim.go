// Package ubootsim is the U-Boot of the simulated node (device option
// sim = {"bootloader": "u-boot"}): the autoboot countdown, the "=> " shell
// with its line editor, the environment (setenv, printenv, saveenv into a
// store that outlives power cycles), dhcp, tftpboot over real TFTP
// (github.com/pin/tftp/v3) and wget over real HTTP (net/http) from basalt's
// servers, and bootz, booti and bootm of what was loaded.
//
// The peer it imitates is U-Boot 2023.01, the version Debian 12 ships
// (u-boot-qemu, which the differential test boots under qemu); its messages
// and command syntax are checked against that binary and U-Boot's source
// (github.com/u-boot/u-boot:
// common/autoboot.c, common/cli_readline.c, common/command.c, cmd/nvedit.c,
// env/env.c, cmd/net.c, net/net.c, net/tftp.c, net/bootp.c, net/wget.c,
// cmd/bootz.c, arch/arm/lib/zimage.c, arch/arm/lib/image.c, boot/bootm.c)
// and quoted from it; no code is taken from it. dhcp is a real DHCPv4
// exchange on the board's Link (a raw packet socket on its interface, as
// U-Boot's own IP stack sends and takes frames); a board without a Link
// has no DHCP server to reach and fails as U-Boot does with none. Memory is
// a map of loaded blobs, not bytes at addresses.
package ubootsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pin/tftp/v3"
)

// Prompt is U-Boot's default CONFIG_SYS_PROMPT.
const Prompt = "=> "

// Default DRAM: Highbank's first bank starts at 0; U-Boot relocates itself
// and its heap to the top of DRAM and reserves that region (LMB), which a
// load may not overwrite.
const (
	DefaultDRAMBase = 0x00000000
	DefaultDRAMSize = 512 << 20
	reservedTop     = 16 << 20 // U-Boot, its heap and stack at the top of DRAM
)

// ErrAutoboot is returned by Run when the countdown ran out and bootcmd is
// the default one: the board boots its BMC's boot device (the sim's PXE or
// disk path), standing in for Highbank's distro boot.
var ErrAutoboot = errors.New("ubootsim: autoboot")

// ErrReset is returned by Run after the reset command: the board restarts.
var ErrReset = errors.New("ubootsim: reset")

// Store is U-Boot's persistent environment (Highbank keeps it in NVRAM). It
// outlives power cycles of the node that owns it; saveenv writes it.
type Store struct {
	mu    sync.Mutex
	saved map[string]string // nil until the first saveenv
}

func (s *Store) load() (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saved == nil {
		return nil, false
	}
	return copyEnv(s.saved), true
}

func (s *Store) save(env map[string]string) {
	s.mu.Lock()
	s.saved = copyEnv(env)
	s.mu.Unlock()
}

// Saved returns a copy of the saved environment, nil before any saveenv.
func (s *Store) Saved() map[string]string {
	e, _ := s.load()
	return e
}

func copyEnv(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Config describes the board. Console and Store are required.
type Config struct {
	// Console is the serial line: keystrokes are read from it and output
	// written to it ('\n' goes out as "\r\n", as U-Boot's serial drivers
	// send it).
	Console io.ReadWriter
	Store   *Store
	// MAC is the NIC's ethaddr.
	MAC string
	// IP, ServerIP and Netmask are the default environment's ipaddr,
	// serverip and netmask, as a U-Boot built with CONFIG_IPADDR,
	// CONFIG_SERVERIP and CONFIG_NETMASK has them: a static address that
	// tftpboot and wget use without dhcp. Empty: not in the environment
	// (Netmask defaults to 255.0.0.0 when IP is set).
	IP, ServerIP, Netmask string
	// Link is the NIC's network, where dhcp, tftpboot and wget go; nil:
	// this namespace, with no DHCP server reachable (dhcp sends nothing
	// and gives up as U-Boot does when nothing answers).
	Link *Link
	// BootDelay is the default environment's bootdelay in seconds;
	// default 3.
	BootDelay int
	// DRAMBase and DRAMSize bound where files may be loaded; default
	// DefaultDRAMBase and DefaultDRAMSize.
	DRAMBase, DRAMSize uint64
	// TFTPTimeout is the wait per TFTP packet; default 1 s (U-Boot's is
	// 5 s, too long for a loopback test).
	TFTPTimeout time.Duration
}

// Boot is what bootz, booti or bootm hands to the kernel.
type Boot struct {
	Command  string // bootz | booti | bootm
	Kernel   []byte
	Initrd   []byte // nil without one
	FDT      []byte // nil without one
	Bootargs string // the bootargs variable
}

// blob is one loaded file in memory.
type blob struct {
	addr uint64
	data []byte
}

type board struct {
	cfg   Config
	keys  chan byte
	rerr  chan error // holds the console's read error once it failed
	out   io.Writer
	env   map[string]string
	mem   []blob
	boot  *Boot
	reset bool
	// started is power-on, U-Boot's get_timer(0) base.
	started time.Time
}

// crlf turns '\n' into "\r\n" as U-Boot's serial output does.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	_, err := c.w.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n")))
	return len(p), err
}

// Run powers U-Boot on: banner, environment, the autoboot countdown, then
// bootcmd or (after a key) the shell, until a boot command succeeds. It
// returns what was booted, ErrAutoboot, or the console's or ctx's error.
func Run(ctx context.Context, cfg Config) (*Boot, error) {
	if cfg.BootDelay == 0 {
		cfg.BootDelay = 3
	}
	if cfg.DRAMSize == 0 {
		cfg.DRAMBase, cfg.DRAMSize = DefaultDRAMBase, DefaultDRAMSize
	}
	if cfg.Netmask == "" && cfg.IP != "" {
		cfg.Netmask = "255.0.0.0"
	}
	if cfg.TFTPTimeout <= 0 {
		cfg.TFTPTimeout = time.Second
	}
	b := &board{cfg: cfg, out: crlf{cfg.Console}, keys: make(chan byte), rerr: make(chan error, 1), started: time.Now()}
	stop := make(chan struct{})
	defer close(stop)
	go b.readConsole(stop)
	b.printf("\n\nU-Boot 2023.01 (basalt sim)\n\nModel: Calxeda Highbank\nDRAM:  %d MiB\n", cfg.DRAMSize>>20)
	b.printf("Core:  sim\nIn:    serial\nOut:   serial\nErr:   serial\nNet:   eth_xgmac\n")
	// env/env.c and env/common.c: a store without a valid environment
	// falls back to the default one.
	if env, ok := cfg.Store.load(); ok {
		b.env = env
		b.printf("Loading Environment from NVRAM... OK\n")
	} else {
		b.env = b.defaultEnv()
		b.printf("Loading Environment from NVRAM... *** Warning - bad CRC, using default environment\n\n")
	}
	if !b.autoboot(ctx) {
		if cmd, ok := b.env["bootcmd"]; ok && cmd != "" && cmd != defaultBootcmd {
			b.runLine(ctx, cmd)
			if b.boot != nil {
				return b.boot, nil
			}
			if b.reset {
				return nil, ErrReset
			}
			// A failed bootcmd leaves the board at the prompt.
		} else {
			return nil, ErrAutoboot
		}
	}
	return b.shell(ctx)
}

// defaultBootcmd stands for "boot the BMC's boot device" (ErrAutoboot).
const defaultBootcmd = "run distro_bootcmd"

func (b *board) defaultEnv() map[string]string {
	e := map[string]string{
		"bootdelay":      strconv.Itoa(b.cfg.BootDelay),
		"bootcmd":        defaultBootcmd,
		"distro_bootcmd": "bmc boot device",
		"baudrate":       "115200",
		"loadaddr":       "0x800000", // highbank_defconfig CONFIG_SYS_LOAD_ADDR
		"kernel_addr_r":  "0x800000",
		"fdt_addr_r":     "0x1000000",
		"ramdisk_addr_r": "0x1100000",
		"fdt_high":       "0x03000000",
		"initrd_high":    "0x03000000",
		"stdin":          "serial",
		"stdout":         "serial",
		"stderr":         "serial",
	}
	if b.cfg.MAC != "" {
		e["ethaddr"] = strings.ToLower(b.cfg.MAC)
	}
	for k, v := range map[string]string{"ipaddr": b.cfg.IP, "serverip": b.cfg.ServerIP, "netmask": b.cfg.Netmask} {
		if v != "" {
			e[k] = v
		}
	}
	return e
}

func (b *board) printf(format string, a ...any) { fmt.Fprintf(b.out, format, a...) }

// readKey waits up to d (0: forever) for a keystroke; ok is false when
// none came in time.
func (b *board) readKey(ctx context.Context, d time.Duration) (byte, bool, error) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case c := <-b.keys:
		return c, true, nil
	case err := <-b.rerr:
		b.rerr <- err
		return 0, false, err
	case <-timeout:
		return 0, false, nil
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
}

// readConsole feeds keystrokes to keys until the console fails or stop
// closes; the console's Read must end when the boot does (the sim's tty).
func (b *board) readConsole(stop <-chan struct{}) {
	buf := make([]byte, 64)
	for {
		n, err := b.cfg.Console.Read(buf)
		for _, c := range buf[:n] {
			select {
			case b.keys <- c:
			case <-stop:
				return
			}
		}
		if err != nil {
			b.rerr <- err
			return
		}
	}
}

// autoboot is common/autoboot.c's abortboot_single_key: the countdown in
// whole seconds, redrawn in place; any key stops it and is consumed.
func (b *board) autoboot(ctx context.Context) bool {
	delay, err := strconv.Atoi(b.env["bootdelay"])
	if err != nil {
		delay = b.cfg.BootDelay
	}
	if delay < 0 {
		return false
	}
	// 2023.01 redraws the number with backspaces (later releases clear
	// the line instead).
	b.printf("Hit any key to stop autoboot: %2d ", delay)
	abort := false
	for delay > 0 && !abort {
		delay--
		if _, ok, err := b.readKey(ctx, time.Second); err != nil {
			return false
		} else if ok {
			abort, delay = true, 0
		}
		b.printf("\b\b\b%2d ", delay)
	}
	b.printf("\n")
	return abort
}

// shell is the command loop until a boot command succeeds.
func (b *board) shell(ctx context.Context) (*Boot, error) {
	for {
		b.printf("%s", Prompt)
		line, err := b.readLine(ctx)
		if err != nil {
			return nil, err
		}
		if line == nil {
			// ^C: common/cli_simple.c prints this and a new prompt.
			b.printf("<INTERRUPT>\n")
			continue
		}
		b.runLine(ctx, *line)
		if b.boot != nil {
			return b.boot, nil
		}
		if b.reset {
			return nil, ErrReset
		}
	}
}

// readLine is common/cli_readline.c's line editor (cread_line): echo,
// ^H/DEL erase a character, ^U the line, ^C discards it (nil), Enter ends
// it.
func (b *board) readLine(ctx context.Context) (*string, error) {
	var buf []byte
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, _, err := b.readKey(ctx, 0)
		if err != nil {
			return nil, err
		}
		switch c {
		case '\r', '\n':
			b.printf("\n")
			s := string(buf)
			return &s, nil
		case 0:
		case 0x03:
			b.printf("\n")
			return nil, nil
		case 0x15:
			// cread_line (CONFIG_CMDLINE_EDITING) backs over the line,
			// blanks it and backs over it again.
			n := len(buf)
			b.printf("%s%s%s", strings.Repeat("\b", n), strings.Repeat(" ", n), strings.Repeat("\b", n))
			buf = buf[:0]
		case 0x17:
			for len(buf) > 0 && buf[len(buf)-1] == ' ' {
				buf = buf[:len(buf)-1]
				b.printf("\b \b")
			}
			for len(buf) > 0 && buf[len(buf)-1] != ' ' {
				buf = buf[:len(buf)-1]
				b.printf("\b \b")
			}
		case 0x08, 0x7f:
			if len(buf) > 0 {
				buf = buf[:len(buf)-1]
				b.printf("\b \b")
			}
		default:
			buf = append(buf, c)
			b.out.Write([]byte{c})
		}
	}
}

// commandsOf splits a line at the semicolons outside quotes.
func commandsOf(line string) []string {
	var out []string
	start, quote := 0, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\\':
			i++
		case c == '\'' || c == '"':
			quote = c
		case c == ';':
			out = append(out, line[start:i])
			start = i + 1
		}
	}
	return append(out, line[start:])
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z0-9_.]+)\}|\$([A-Za-z0-9_]+)`)

// split is the hush parser's part we need: ';' separates commands, quotes
// group words ('...' literal, "..." expanded), $name and ${name} expand.
func (b *board) split(line string) [][]string {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
		}
		w.Reset()
		inWord = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			w.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				j = len(line) - i - 1
			}
			w.WriteString(b.expand(line[i+1 : i+1+j]))
			inWord = true
			i += j + 1
		case c == '\\' && i+1 < len(line):
			w.WriteByte(line[i+1])
			inWord = true
			i++
		case c == ';':
			flush()
			if len(words) > 0 {
				cmds = append(cmds, words)
			}
			words = nil
		case c == ' ' || c == '\t':
			flush()
		case c == '$':
			m := varRef.FindStringSubmatchIndex(line[i:])
			if m == nil || m[0] != 0 {
				w.WriteByte(c)
				inWord = true
				continue
			}
			w.WriteString(b.expand(line[i : i+m[1]]))
			inWord = true
			i += m[1] - 1
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	flush()
	if len(words) > 0 {
		cmds = append(cmds, words)
	}
	return cmds
}

func (b *board) expand(s string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		return b.env[name]
	})
}

// runLine runs each command of a line; like hush, a failed command does not
// stop the next (only && would). It stops after a successful boot.
func (b *board) runLine(ctx context.Context, line string) int {
	rc := 0
	// Each command's variables expand when it runs, after the ones before
	// it ("setenv v 1; echo $v" prints 1).
	for _, raw := range commandsOf(line) {
		cmds := b.split(raw)
		if len(cmds) == 0 {
			continue
		}
		rc = b.run(ctx, cmds[0])
		if b.boot != nil || b.reset || ctx.Err() != nil {
			break
		}
	}
	return rc
}

func (b *board) usage(name, usage string) int {
	b.printf("%s - %s\n\nUsage:\n%s %s\n", name, commands[name], name, usage)
	return 1
}

var commands = map[string]string{
	"bootz":    "boot Linux zImage image from memory",
	"booti":    "boot Linux kernel 'Image' format from memory",
	"bootm":    "boot application image from memory",
	"dhcp":     "boot image via network using DHCP/TFTP protocol",
	"echo":     "echo args to console",
	"help":     "print command description/usage",
	"printenv": "print environment variables",
	"reset":    "Perform RESET of the CPU",
	"run":      "run commands in an environment variable",
	"saveenv":  "save environment variables to persistent storage",
	"setenv":   "set environment variables",
	"tftpboot": "boot image via network using TFTP protocol",
	"version":  "print monitor, compiler and linker version",
	"wget":     "boot image via network using HTTP protocol",
}

// run is common/command.c's cmd_process for one command.
func (b *board) run(ctx context.Context, argv []string) int {
	name := argv[0]
	if name == "tftp" {
		name = "tftpboot"
	}
	switch name {
	case "setenv":
		// cmd/nvedit.c: setenv name [value ...]; no value deletes.
		if len(argv) < 2 {
			return b.usage(name, "name value ...\n    - set environment variable 'name' to 'value ...'\nsetenv name\n    - delete environment variable 'name'")
		}
		if len(argv) == 2 {
			delete(b.env, argv[1])
		} else {
			b.env[argv[1]] = strings.Join(argv[2:], " ")
		}
		return 0
	case "printenv":
		return b.printenv(argv[1:])
	case "saveenv":
		b.printf("Saving Environment to NVRAM... ")
		b.cfg.Store.save(b.env)
		b.printf("OK\n")
		return 0
	case "echo":
		b.printf("%s\n", strings.Join(argv[1:], " "))
		return 0
	case "reset":
		// arch/arm/lib/reset.c
		b.printf("resetting ...\n")
		b.reset = true
		return 0
	case "version":
		b.printf("U-Boot 2023.01 (basalt sim)\n")
		return 0
	case "run":
		if len(argv) < 2 {
			return b.usage(name, "var [...]\n    - run the commands in the environment variable(s) 'var'")
		}
		for _, v := range argv[1:] {
			cmd, ok := b.env[v]
			if !ok {
				b.printf("## Error: \"%s\" not defined\n", v)
				return 1
			}
			if rc := b.runLine(ctx, cmd); rc != 0 || b.boot != nil || b.reset {
				return rc
			}
		}
		return 0
	case "help":
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			b.printf("%-10s- %s\n", n, commands[n])
		}
		return 0
	case "dhcp":
		return b.dhcp(ctx, argv)
	case "tftpboot":
		return b.netload(ctx, "tftpboot", argv)
	case "wget":
		return b.netload(ctx, "wget", argv)
	case "bootz", "booti", "bootm":
		return b.bootCmd(name, argv[1:])
	}
	b.printf("Unknown command '%s' - try 'help'\n", argv[0])
	return 1
}

func (b *board) printenv(names []string) int {
	if len(names) == 0 {
		keys := make([]string, 0, len(b.env))
		for k := range b.env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		size := 0
		for _, k := range keys {
			n, _ := fmt.Fprintf(io.Discard, "%s=%s\n", k, b.env[k])
			size += n
			b.printf("%s=%s\n", k, b.env[k])
		}
		// cmd/nvedit.c prints the used and total size (CONFIG_ENV_SIZE
		// 0x2000 on Highbank, minus the CRC word).
		b.printf("\nEnvironment size: %d/%d bytes\n", size+1, 0x2000-4)
		return 0
	}
	rc := 0
	for _, n := range names {
		v, ok := b.env[n]
		if !ok {
			b.printf("## Error: \"%s\" not defined\n", n)
			rc = 1
			continue
		}
		b.printf("%s=%s\n", n, v)
	}
	return rc
}

// loadArgs is cmd/net.c's parse_args: [loadAddress] [[hostIPaddr:]file].
// One argument is an address if it is all hex digits, else a file name.
func (b *board) loadArgs(argv []string) (addr uint64, server, file string, ok bool) {
	addr, _ = parseHex(b.env["loadaddr"])
	file = b.env["bootfile"]
	switch len(argv) {
	case 1:
	case 2:
		if a, err := parseHex(argv[1]); err == nil {
			addr = a
		} else {
			file = argv[1]
		}
	case 3:
		a, err := parseHex(argv[1])
		if err != nil {
			return 0, "", "", false
		}
		addr, file = a, argv[2]
	default:
		return 0, "", "", false
	}
	// [hostIPaddr:]bootfilename: an IPv4 address before the first colon.
	if i := strings.IndexByte(file, ':'); i > 0 {
		if ip := net.ParseIP(file[:i]); ip != nil && ip.To4() != nil {
			server, file = file[:i], file[i+1:]
		}
	}
	return addr, server, file, true
}

func parseHex(s string) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" {
		return 0, errors.New("empty")
	}
	return strconv.ParseUint(s, 16, 64)
}

// netload is tftpboot and wget: net/net.c's net_loop around net/tftp.c or
// net/wget.c, and the "Bytes transferred" line, filesize and fileaddr.
func (b *board) netload(ctx context.Context, cmd string, argv []string) int {
	addr, server, file, ok := b.loadArgs(argv)
	if !ok {
		return b.usage(cmd, "[loadAddress] [[hostIPaddr:]bootfilename]")
	}
	if b.env["ipaddr"] == "" {
		b.printf("*** ERROR: `ipaddr' not set\n")
		return 1
	}
	if server == "" {
		server = b.env["serverip"]
	}
	if server == "" {
		b.printf("*** ERROR: `serverip' not set\n")
		return 1
	}
	if file == "" {
		// net/tftp.c: the default name is the client IP in hex.
		ip := net.ParseIP(b.env["ipaddr"]).To4()
		if ip == nil {
			ip = net.IPv4zero.To4()
		}
		file = fmt.Sprintf("%02X%02X%02X%02X.img", ip[0], ip[1], ip[2], ip[3])
		b.printf("*** Warning: no boot file name; using '%s'\n", file)
	}
	var data []byte
	var err error
	if cmd == "wget" {
		data, err = b.wget(ctx, addr, server, file)
	} else {
		data, err = b.tftp(ctx, addr, server, file)
	}
	if err != nil {
		return 1
	}
	b.store(addr, data)
	b.printf("Bytes transferred = %d (%x hex)\n", len(data), len(data))
	b.env["filesize"] = fmt.Sprintf("%x", len(data))
	b.env["fileaddr"] = fmt.Sprintf("%x", addr)
	return 0
}

// fits reports whether size bytes at addr lie in DRAM below the region
// U-Boot reserved for itself (lmb_read_check in net/tftp.c's store_block).
func (b *board) fits(addr, size uint64) bool {
	lo, hi := b.cfg.DRAMBase, b.cfg.DRAMBase+b.cfg.DRAMSize-reservedTop
	return addr >= lo && addr+size <= hi && addr+size >= addr
}

func (b *board) store(addr uint64, data []byte) {
	end := addr + uint64(len(data))
	// What overlaps the new blob is overwritten.
	b.mem = slices.DeleteFunc(b.mem, func(o blob) bool {
		return o.addr < end && addr < o.addr+uint64(len(o.data))
	})
	b.mem = append(b.mem, blob{addr: addr, data: data})
}

// at returns what is in memory from addr on (nil: nothing loaded there).
func (b *board) at(addr uint64) []byte {
	for _, o := range b.mem {
		if addr >= o.addr && addr < o.addr+uint64(len(o.data)) {
			return o.data[addr-o.addr:]
		}
	}
	return nil
}

func sizeString(n int) string {
	// lib/display_options.c print_size, for the sizes a boot file has.
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d Bytes", n)
}

var tftpErr = regexp.MustCompile(`code: (\d+), message: (.*)`)

func (b *board) tftp(ctx context.Context, addr uint64, server, file string) ([]byte, error) {
	port := 69
	if p, err := strconv.Atoi(b.env["tftpdstp"]); err == nil && p > 0 && p < 65536 {
		// CONFIG_TFTP_PORT: tftpdstp names the server's port.
		port = p
	}
	b.printf("Using eth_xgmac device\nTFTP from server %s; our IP address is %s\nFilename '%s'.\nLoad address: 0x%x\nLoading: ", server, b.env["ipaddr"], file, addr)
	c, err := tftp.NewClient(net.JoinHostPort(server, strconv.Itoa(port)))
	if err != nil {
		b.printf("\nTFTP error: '%s' (0)\nStarting again\n\n", err)
		return nil, err
	}
	c.SetTimeout(b.cfg.TFTPTimeout)
	c.SetRetries(3)
	c.SetBackoff(func(int) time.Duration { return 0 })
	if bs, err := strconv.Atoi(b.env["tftpblocksize"]); err == nil && bs >= 8 {
		c.SetBlockSize(bs)
	} else {
		c.SetBlockSize(1468) // CONFIG_TFTP_BLOCKSIZE
	}
	c.RequestTSize(true)
	type res struct {
		data []byte
		err  error
	}
	ch := make(chan res, 1)
	start := time.Now()
	go func() {
		var wt io.WriterTo
		err := b.cfg.Link.exec(func() (err error) {
			wt, err = c.Receive(file, "octet") // its socket opens where the NIC is
			return err
		})
		if err != nil {
			ch <- res{nil, err}
			return
		}
		if n, ok := wt.(tftp.IncomingTransfer).Size(); ok && !b.fits(addr, uint64(n)) {
			ch <- res{nil, errReserved}
			return
		}
		var sb strings.Builder
		_, err = wt.WriteTo(&sb)
		ch <- res{[]byte(sb.String()), err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err == nil && !b.fits(addr, uint64(len(r.data))) {
		r.err = errReserved
	}
	switch {
	case errors.Is(r.err, errReserved):
		b.printf("\nTFTP error: trying to overwrite reserved memory...\n")
		return nil, r.err
	case r.err != nil:
		if m := tftpErr.FindStringSubmatch(r.err.Error()); m != nil {
			b.printf("\nTFTP error: '%s' (%s)\n", strings.TrimRight(m[2], "\x00"), m[1])
			if m[1] == "1" || m[1] == "2" {
				b.printf("Not retrying...\n")
			} else {
				b.printf("Starting again\n\n")
			}
		} else {
			// No answer: net/tftp.c prints a T per timeout, then gives up.
			b.printf("T T T \nRetry count exceeded; starting again\n")
		}
		return nil, r.err
	}
	b.printf("%s  %s\n\t %s/s\ndone\n", strings.Repeat("#", 50), sizeString(len(r.data)),
		sizeString(int(float64(len(r.data))/max(time.Since(start).Seconds(), 0.001))))
	return r.data, nil
}

var errReserved = errors.New("trying to overwrite reserved memory")

// wget is net/wget.c: HTTP/1.0 GET of http://server:httpdstp/path.
func (b *board) wget(ctx context.Context, addr uint64, server, path string) ([]byte, error) {
	port := 80
	if p, err := strconv.Atoi(b.env["httpdstp"]); err == nil && p > 0 && p < 65536 {
		port = p
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	url := "http://" + net.JoinHostPort(server, strconv.Itoa(port)) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		b.printf("\nwget: Transfer Fail, TCP status - %d\n", 1)
		return nil, err
	}
	var d net.Dialer
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = b.cfg.Link.exec(func() error {
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}}
	resp, err := client.Do(req)
	if err != nil {
		b.printf("\nwget: Transfer Fail, TCP status - %d\n", 1)
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// net/wget.c closes the stream on any status but 200 without
		// reaching NETLOOP_SUCCESS.
		io.Copy(io.Discard, resp.Body)
		b.printf("\nwget: Transfer Fail, TCP status - %d\n", 0)
		return nil, fmt.Errorf("wget %s: %s", url, resp.Status)
	}
	if resp.ContentLength > 0 && !b.fits(addr, uint64(resp.ContentLength)) {
		b.printf("\nwget error: trying to overwrite reserved memory\n")
		return nil, errReserved
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.printf("\nwget: Transfer Fail, TCP status - %d\n", 1)
		return nil, err
	}
	if !b.fits(addr, uint64(len(data))) {
		b.printf("\nwget error: trying to overwrite reserved memory\n")
		return nil, errReserved
	}
	packets := (len(data) + 1459) / 1460
	b.printf("%s\nPackets received %d, Transfer Successful\n", strings.Repeat("#", min(50, packets/10+1)), packets)
	return data, nil
}

// Image magics the boot commands check.
const (
	zImageMagic  = 0x016f2818 // arch/arm/lib/zimage.c LINUX_ARM_ZIMAGE_MAGIC at 0x24
	arm64Magic   = 0x644d5241 // arch/arm/lib/image.c "ARM\x64" at 0x38
	uImageMagic  = 0x27051956 // include/image.h IH_MAGIC, big-endian at 0
	fdtMagic     = 0xd00dfeed // big-endian at 0
	defaultNoArg = "-"
)

// bootCmd is bootz, booti and bootm: check the kernel's header, find the
// initrd and the device tree, and hand over with bootargs.
func (b *board) bootCmd(cmd string, args []string) int {
	if len(args) > 3 {
		return b.usage(cmd, "[addr [initrd[:size]] [fdt]]")
	}
	var addr uint64
	if len(args) > 0 {
		a, err := parseHex(args[0])
		if err != nil {
			return b.usage(cmd, "[addr [initrd[:size]] [fdt]]")
		}
		addr = a
	} else {
		addr, _ = parseHex(b.env["loadaddr"])
	}
	k := b.at(addr)
	switch cmd {
	case "bootz":
		if len(k) < 0x30 || binary.LittleEndian.Uint32(k[0x24:]) != zImageMagic {
			b.printf("zimage: Bad magic!\n")
			return 1
		}
		start, end := binary.LittleEndian.Uint32(k[0x28:]), binary.LittleEndian.Uint32(k[0x2c:])
		b.printf("Kernel image @ %s [ %s - %s ]\n", cHex08(addr), cHex08(uint64(start)), cHex08(uint64(end)))
	case "booti":
		if len(k) < 0x40 || binary.LittleEndian.Uint32(k[0x38:]) != arm64Magic {
			b.printf("Bad Linux ARM64 Image magic!\n")
			return 1
		}
		b.printf("## Booting kernel from Image at %08x ...\n", addr)
	case "bootm":
		if len(k) < 64 || binary.BigEndian.Uint32(k) != uImageMagic {
			// boot/bootm.c, boot_get_kernel's default case.
			b.printf("Wrong Image Format for bootm command\nERROR: can't get kernel image!\n")
			return 1
		}
		b.printf("## Booting kernel from Legacy Image at %08x ...\n", addr)
		k = k[64:]
	}
	boot := &Boot{Command: cmd, Kernel: k, Bootargs: b.env["bootargs"]}
	if len(args) > 1 && args[1] != defaultNoArg {
		a, size, hasSize := strings.Cut(args[1], ":")
		ra, err1 := parseHex(a)
		n, err2 := parseHex(size)
		rd := b.at(ra)
		switch {
		case err1 != nil || (hasSize && err2 != nil):
			return b.usage(cmd, "[addr [initrd[:size]] [fdt]]")
		case !hasSize:
			// Without :size the initrd must be a legacy or FIT image.
			if len(rd) < 4 || binary.BigEndian.Uint32(rd) != uImageMagic {
				b.printf("Wrong Ramdisk Image Format\nRamdisk image is corrupt or invalid\n")
				return 1
			}
			boot.Initrd = rd[64:]
		case rd == nil || uint64(len(rd)) < n:
			// A raw initrd of the given size; nothing (or less) loaded
			// there is garbage to the kernel, which U-Boot cannot tell.
			b.printf("Ramdisk image is corrupt or invalid\n")
			return 1
		default:
			boot.Initrd = rd[:n]
		}
	}
	if len(args) > 2 {
		fa, err := parseHex(args[2])
		if err != nil {
			return b.usage(cmd, "[addr [initrd[:size]] [fdt]]")
		}
		f := b.at(fa)
		if len(f) < 4 || binary.BigEndian.Uint32(f) != fdtMagic {
			b.printf("ERROR: Did not find a cmdline Flattened Device Tree\nCould not find a valid device tree\n")
			return 1
		}
		b.printf("## Flattened Device Tree blob at %08x\n   Booting using the fdt blob at 0x%x\n", fa, fa)
		boot.FDT = f
	}
	b.printf("\nStarting kernel ...\n\n")
	b.boot = boot
	return 0
}

// cHex08 is C's printf("%#08lx"): the width counts the 0x, and zero has no
// 0x at all.
func cHex08(v uint64) string {
	if v == 0 {
		return "00000000"
	}
	h := fmt.Sprintf("%x", v)
	if len(h) < 6 {
		h = strings.Repeat("0", 6-len(h)) + h
	}
	return "0x" + h
}
