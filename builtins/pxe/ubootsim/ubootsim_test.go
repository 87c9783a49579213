package ubootsim_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/pxe/ubootsim"
)

// console is the test's end of the board's serial line.
type console struct {
	r  *io.PipeReader
	w  *io.PipeWriter // keystrokes to the board
	mu sync.Mutex
	b  strings.Builder
	ch chan struct{}
}

func (c *console) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.b.Write(p)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
	return len(p), nil
}

func newConsole() *console {
	r, w := io.Pipe()
	return &console{r: r, w: w, ch: make(chan struct{}, 1)}
}

func (c *console) out() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// expect waits for re in the output after from and returns the offset
// after the match.
func (c *console) expect(t *testing.T, from int, re string) int {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(10 * time.Second)
	for {
		o := c.out()
		if m := rx.FindStringIndex(o[from:]); m != nil {
			return from + m[1]
		}
		select {
		case <-c.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("console never showed %q; output since %d:\n%s", re, from, o[from:])
		}
	}
}

// runner returns a function that types cmd, waits for its echo, for want
// (a regexp, "" for none) after it and for the prompt; *at is where the
// output read so far ends.
func (c *console) runner(t *testing.T, at *int) func(cmd, want string) {
	return func(cmd, want string) {
		t.Helper()
		c.send(t, cmd+"\r")
		*at = c.expect(t, *at, regexp.QuoteMeta(cmd)+"\r\n")
		if want != "" {
			*at = c.expect(t, *at, want)
		}
		*at = c.expect(t, *at, "^(?s:.*)=> $")
	}
}

func (c *console) send(t *testing.T, s string) {
	t.Helper()
	if _, err := c.w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// zImage returns a kernel with the ARM zImage header U-Boot's bootz checks
// (arch/arm/lib/zimage.c: magic at 0x24, start and end after it).
func zImage(size int) []byte {
	k := make([]byte, size)
	binary.LittleEndian.PutUint32(k[0x24:], 0x016f2818)
	binary.LittleEndian.PutUint32(k[0x28:], 0)
	binary.LittleEndian.PutUint32(k[0x2c:], uint32(size))
	for i := 0x30; i < size; i++ {
		k[i] = byte(i * 7)
	}
	return k
}

func fdt() []byte {
	f := make([]byte, 64)
	binary.BigEndian.PutUint32(f, 0xd00dfeed)
	return f
}

type rig struct {
	srv    *pxe.Server
	served *pxe.Served
	kernel []byte
}

func serve(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	k := zImage(70000)
	os.WriteFile(filepath.Join(dir, "zImage"), k, 0o644)
	os.WriteFile(filepath.Join(dir, "initrd.gz"), []byte(strings.Repeat("initrd", 1000)), 0o644)
	os.WriteFile(filepath.Join(dir, "board.dtb"), fdt(), 0o644)
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("not a zImage at all, but long enough to have a header...."), 0o644)
	s := pxe.NewServer(pxe.Config{LoaderDir: t.TempDir(), CacheDir: t.TempDir()})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sv, err := s.Serve(context.Background(), pxe.Boot{Kernel: "zImage", Initrd: "initrd.gz", DTB: "board.dtb",
		Append: "console=ttyAMA0", MAC: "52:54:00:12:34:56", JobDir: dir, NoConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{srv: s, served: sv, kernel: k}
}

func start(t *testing.T, r *rig, store *ubootsim.Store) (*console, chan *ubootsim.Boot, chan error) {
	t.Helper()
	c := newConsole()
	ctx, cancel := context.WithCancel(context.Background())
	bootc, errc := make(chan *ubootsim.Boot, 1), make(chan error, 1)
	go func() {
		b, err := ubootsim.Run(ctx, ubootsim.Config{Console: c, Store: store, MAC: "52:54:00:12:34:56",
			IP: "127.0.0.1", ServerIP: r.served.TFTPHost, BootDelay: 2})
		bootc <- b
		errc <- err
	}()
	t.Cleanup(func() { cancel(); c.w.Close() })
	return c, bootc, errc
}

// U-Boot's shell: the countdown a key stops, the environment, the netboot
// commands against basalt's real TFTP and HTTP servers, and bootz of what
// came: each message as U-Boot 2023.01 prints it.
func TestShell(t *testing.T) {
	r := serve(t)
	store := &ubootsim.Store{}
	c, bootc, errc := start(t, r, store)
	at := c.expect(t, 0, `bad CRC, using default environment`)
	at = c.expect(t, at, `Hit any key to stop autoboot:  2 `)
	c.send(t, " ")
	at = c.expect(t, at, "\r\n=> $")

	run := c.runner(t, &at)
	run("printenv nosuch", `^## Error: "nosuch" not defined\r\n`)
	run("frobnicate 1", `^Unknown command 'frobnicate' - try 'help'\r\n`)
	run("setenv greeting hello  world", "")
	run("printenv greeting", `^greeting=hello world\r\n`)
	run("setenv greeting", "")
	run("printenv greeting", `not defined`)
	// The static address of the default environment (CONFIG_IPADDR,
	// CONFIG_SERVERIP); without one, not on the network.
	run("printenv ipaddr serverip", "ipaddr=127.0.0.1\r\nserverip="+regexp.QuoteMeta(r.served.TFTPHost))
	run("setenv ipaddr; tftpboot 0x800000 "+r.served.Files["kernel"], "\\*\\*\\* ERROR: `ipaddr' not set")
	run("setenv ipaddr 127.0.0.1", "")
	run(fmt.Sprintf("setenv tftpdstp %d", r.served.TFTPPort), "")
	run("tftpboot 0x800000 "+r.served.TFTPHost+":"+r.served.Files["kernel"],
		fmt.Sprintf(`Filename '%s'\.\r\nLoad address: 0x800000\r\nLoading: #+.*\r\n.*\r\ndone\r\nBytes transferred = %d \(%x hex\)\r\n`,
			regexp.QuoteMeta(r.served.Files["kernel"]), len(r.kernel), len(r.kernel)))
	run("printenv filesize", fmt.Sprintf("filesize=%x\r\n", len(r.kernel)))
	// A missing file and an address in U-Boot's own memory fail as U-Boot
	// says they do.
	run("tftpboot 0x800000 nosuch/file", `TFTP error: '[Ff]ile not found' \(1\)\r\nNot retrying\.\.\.\r\n`)
	run("tftpboot 0x1ff00000 "+r.served.Files["kernel"], `TFTP error: trying to overwrite reserved memory\.\.\.\r\n`)
	run(fmt.Sprintf("setenv httpdstp %s; wget ${ramdisk_addr_r} /%s", strings.TrimPrefix(r.served.HTTPURL, "http://"+r.served.TFTPHost+":"), r.served.Files["initrd"]),
		`Transfer Successful\r\nBytes transferred = 6000 \(1770 hex\)\r\n`)
	run("wget ${fdt_addr_r} /nosuch", `wget: Transfer Fail`)
	run("tftp ${fdt_addr_r} "+r.served.Files["dtb"], `Bytes transferred = 64 \(40 hex\)`)
	run("booti 0x800000", `Bad Linux ARM64 Image magic!\r\n`)
	run("bootm 0x800000", `Wrong Image Format for bootm command\r\nERROR: can't get kernel image!\r\n`)
	run("bootz 0x800000 ${ramdisk_addr_r} ${fdt_addr_r}", `Wrong Ramdisk Image Format\r\n`)
	run("bootz ${fdt_addr_r}", `zimage: Bad magic!\r\n`)

	// ^U erases the line, as cli_readline does.
	c.send(t, "garbage\x15")
	at = c.expect(t, at, `garbage\x08{7} {7}\x08{7}`)
	c.send(t, "setenv bootargs console=ttyAMA0 basalt.nonce=abc; saveenv\r")
	at = c.expect(t, at, `Saving Environment to NVRAM\.\.\. OK\r\n`)
	c.send(t, "bootz 0x800000 ${ramdisk_addr_r}:1770 ${fdt_addr_r}\r")
	c.expect(t, at, `Kernel image @ 0x800000 \[ 00000000 - 0x011170 \]\r\n## Flattened Device Tree blob at 01000000\r\n.*\r\n\r\nStarting kernel \.\.\.\r\n`)
	b, err := <-bootc, <-errc
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if b.Command != "bootz" || string(b.Kernel[:len(r.kernel)]) != string(r.kernel) || len(b.Initrd) != 6000 || len(b.FDT) == 0 || b.Bootargs != "console=ttyAMA0 basalt.nonce=abc" {
		t.Errorf("Boot = %s kernel %d bytes initrd %d fdt %d bootargs %q, want bootz of the served files with bootargs",
			b.Command, len(b.Kernel), len(b.Initrd), len(b.FDT), b.Bootargs)
	}

	// The saved environment comes back on the next power-on.
	if got := store.Saved()["bootargs"]; got != "console=ttyAMA0 basalt.nonce=abc" {
		t.Errorf("saved bootargs = %q", got)
	}
	c2, _, _ := start(t, r, store)
	at = c2.expect(t, 0, `Loading Environment from NVRAM\.\.\. OK\r\n`)
	at = c2.expect(t, at, `Hit any key`)
	c2.send(t, "x")
	at = c2.expect(t, at, "=> $")
	c2.send(t, "printenv bootargs\r")
	c2.expect(t, at, `bootargs=console=ttyAMA0 basalt.nonce=abc\r\n`)
}

// Without a key the countdown runs out: the default bootcmd hands back to
// the board's firmware (ErrAutoboot); a saved bootcmd runs.
func TestAutoboot(t *testing.T) {
	r := serve(t)
	store := &ubootsim.Store{}
	c, bootc, errc := start(t, r, store)
	c.expect(t, 0, `Hit any key to stop autoboot:  2 \x08\x08\x08 1 \x08\x08\x08 0 \r\n`)
	if b, err := <-bootc, <-errc; b != nil || err != ubootsim.ErrAutoboot {
		t.Fatalf("Run without a key = %v, %v; want ErrAutoboot", b, err)
	}
	c2, bootc, errc := start(t, r, store)
	c2.expect(t, 0, `Hit any key`)
	c2.send(t, "\r")
	at := c2.expect(t, 0, "=> $")
	c2.send(t, fmt.Sprintf("setenv bootcmd 'setenv tftpdstp %d; tftp ${kernel_addr_r} %s; bootz'; setenv bootdelay 1; saveenv; reset\r", r.served.TFTPPort, r.served.Files["kernel"]))
	c2.expect(t, at, `Saving Environment to NVRAM\.\.\. OK\r\nresetting \.\.\.\r\n`)
	if b, err := <-bootc, <-errc; b != nil || err != ubootsim.ErrReset {
		t.Fatalf("Run after reset = %v, %v; want ErrReset", b, err)
	}
	c3, boot3, err3 := start(t, r, store)
	c3.expect(t, 0, `Hit any key to stop autoboot:  1 `)
	c3.expect(t, 0, `Starting kernel`)
	if b, err := <-boot3, <-err3; err != nil || b == nil || b.Command != "bootz" {
		t.Fatalf("Run with a saved bootcmd = %v, %v; want a bootz", b, err)
	}
}
