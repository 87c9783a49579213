// Package pxesim is the PXE client of the simulated node: what a PXE ROM
// and pxelinux do once DHCP has named the TFTP server. Boot fetches the
// pxelinux config the way pxelinux looks it up (UUID, 01-<mac>, the client
// IP in hex shortened a digit at a time, default — asking for each in turn
// and taking the first that exists), parses it, fetches the kernel, initrds
// and FDT over real TFTP (github.com/pin/tftp/v3), and prints to the
// console what a real ROM and pxelinux print, failures included.
//
// A failed boot returns a *BootError; the sim node then hangs, as a real
// board whose PXE boot failed does, and the job meets its timeout.
package pxesim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// Config describes the simulated client. Only TFTPAddr and MAC are needed.
type Config struct {
	TFTPAddr string // host:port of the TFTP server DHCP named
	MAC      string // the boot NIC, aa:bb:cc:dd:ee:ff
	// UUID is the SMBIOS system UUID pxelinux tries first; default one
	// derived from the MAC.
	UUID string
	// IP is the client's address; default 192.0.2.10. pxelinux tries its
	// hex form, then shorter and shorter prefixes.
	IP net.IP
	// BootFile is the first-stage loader the ROM fetches before pxelinux
	// runs ("pxelinux.0"); "" skips that step, as if it came from flash.
	BootFile string
	// Console receives what the ROM and pxelinux print; nil discards it.
	Console io.Writer
	// BlockSize is the TFTP blksize asked for; default 1468 (pxelinux's).
	BlockSize int
	// Timeout is the wait for each TFTP packet; default 1s. Retries is the
	// number of resends; default 3.
	Timeout time.Duration
	Retries int
	// KeepData keeps the fetched files' bytes in Boot; otherwise only their
	// sizes and sha256.
	KeepData bool
}

// File is one fetched file.
type File struct {
	Name   string // as named in the config
	Size   int64
	SHA256 string
	Data   []byte // only with Config.KeepData
}

// Booted is what pxelinux would hand to the kernel.
type Booted struct {
	Config string // the config name that answered, "pxelinux.cfg/01-..."
	Label  string
	Kernel File
	Initrd []File
	DTB    *File
	Append string // the kernel command line (APPEND)
	Nonce  string // basalt.nonce= from Append, if any
}

// BootError is a failed boot. Message is what the console showed last.
type BootError struct {
	Stage   string // rom | config | kernel | initrd | fdt
	File    string
	Message string
	Err     error
}

func (e *BootError) Error() string {
	msg := fmt.Sprintf("pxe boot failed at %s", e.Stage)
	if e.File != "" {
		msg += " (" + e.File + ")"
	}
	msg += ": " + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *BootError) Unwrap() error { return e.Err }

type client struct {
	cfg Config
	con io.Writer
	tc  *tftp.Client
}

// Boot runs the PXE boot against cfg.TFTPAddr and returns what pxelinux
// would hand to the kernel. It returns a *BootError when the boot fails
// (after printing what a real ROM or pxelinux prints), or ctx's error.
func Boot(ctx context.Context, cfg Config) (*Booted, error) {
	mac, err := net.ParseMAC(cfg.MAC)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("pxesim: mac %q: not an Ethernet MAC", cfg.MAC)
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 1468
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	if cfg.IP == nil {
		cfg.IP = net.IPv4(192, 0, 2, 10)
	}
	if cfg.UUID == "" {
		cfg.UUID = fmt.Sprintf("00000000-0000-0000-0000-%x", []byte(mac))
	}
	con := cfg.Console
	if con == nil {
		con = io.Discard
	}
	tc, err := tftp.NewClient(cfg.TFTPAddr)
	if err != nil {
		return nil, fmt.Errorf("pxesim: %w", err)
	}
	tc.SetTimeout(cfg.Timeout)
	tc.SetRetries(cfg.Retries)
	tc.SetBackoff(func(int) time.Duration { return 0 })
	tc.SetBlockSize(cfg.BlockSize)
	tc.RequestTSize(true)
	c := &client{cfg: cfg, con: con, tc: tc}
	return c.boot(ctx, mac)
}

func (c *client) printf(format string, a ...any) { fmt.Fprintf(c.con, format, a...) }

// fetch gets one file; the error says whether it timed out, was not
// found, or came short of its announced size.
func (c *client) fetch(ctx context.Context, name string) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		wt, err := c.tc.Receive(name, "octet")
		if err != nil {
			ch <- result{nil, err}
			return
		}
		// Read tsize now: pin/tftp's receiver forgets it once the
		// transfer runs.
		size, sized := int64(0), false
		if it, ok := wt.(tftp.IncomingTransfer); ok {
			size, sized = it.Size()
		}
		var buf bytes.Buffer
		if sized && size > 0 && size < 1<<31 {
			buf.Grow(int(size))
		}
		_, err = wt.WriteTo(&buf)
		if err == nil && sized && size != int64(buf.Len()) {
			err = &shortError{got: int64(buf.Len()), want: size}
		}
		ch <- result{buf.Bytes(), err}
	}()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type shortError struct{ got, want int64 }

func (e *shortError) Error() string {
	return fmt.Sprintf("got %d bytes, tsize said %d", e.got, e.want)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "code: 1,")
}

func (c *client) boot(ctx context.Context, mac net.HardwareAddr) (*Booted, error) {
	macSp := strings.ToUpper(strings.ReplaceAll(mac.String(), ":", " "))
	c.printf("\r\nIntel UNDI, PXE-2.1 (build 083)\r\nCopyright (C) 1997-2000  Intel Corporation\r\n\r\n")
	c.printf("CLIENT MAC ADDR: %s  GUID: %s\r\n", macSp, strings.ToUpper(c.cfg.UUID))
	c.printf("CLIENT IP: %s  MASK: 255.255.255.0  DHCP IP: %s\r\n", c.cfg.IP, serverHost(c.cfg.TFTPAddr))
	if c.cfg.BootFile != "" {
		c.printf("TFTP.")
		if _, err := c.fetch(ctx, c.cfg.BootFile); err != nil {
			return nil, c.romError(err, c.cfg.BootFile)
		}
		c.printf("\r\n")
	}
	c.printf("\r\nPXELINUX 6.04 PXE 20200816 Copyright (C) 1994-2015 H. Peter Anvin et al\r\n")
	c.printf("!PXE entry point found (we hope) at 9AE5:00D6 via plan A\r\n")
	c.printf("My IP address seems to be %s %s\r\n", hexIP(c.cfg.IP), c.cfg.IP)
	c.printf("BOOTIF=01-%s\r\nSYSUUID=%s\r\nTFTP prefix: \r\n", strings.ReplaceAll(mac.String(), ":", "-"), c.cfg.UUID)

	var cfgData []byte
	var cfgName string
	for _, name := range LookupOrder(c.cfg.UUID, mac, c.cfg.IP) {
		c.printf("Trying to load: %-40s ", name)
		data, err := c.fetch(ctx, name)
		if err == nil {
			c.printf(" ok\r\n")
			cfgData, cfgName = data, name
			break
		}
		c.printf(" failed\r\n")
		if ctx.Err() != nil || isTimeout(err) {
			return nil, c.hang(&BootError{Stage: "config", File: name, Message: "TFTP timeout", Err: err})
		}
	}
	if cfgData == nil {
		c.printf("Unable to locate configuration file\r\n")
		return nil, c.hang(&BootError{Stage: "config", Message: "Unable to locate configuration file"})
	}
	menu, err := ParseConfig(cfgData)
	var entry Label
	if err == nil {
		entry, err = menu.Entry()
	}
	if err != nil {
		c.printf("Unable to parse configuration file: %v\r\n", err)
		return nil, c.hang(&BootError{Stage: "config", File: cfgName, Message: "bad configuration file", Err: err})
	}
	for _, s := range menu.Say {
		c.printf("%s\r\n", s)
	}
	b := &Booted{Config: cfgName, Label: entry.Name, Append: entry.Append}
	for _, f := range strings.Fields(entry.Append) {
		if v, ok := strings.CutPrefix(f, "basalt.nonce="); ok {
			b.Nonce = v
		}
	}
	k, err := c.load(ctx, "kernel", entry.Kernel)
	if err != nil {
		return nil, err
	}
	b.Kernel = k
	for _, name := range entry.Initrd {
		f, err := c.load(ctx, "initrd", name)
		if err != nil {
			return nil, err
		}
		b.Initrd = append(b.Initrd, f)
	}
	if entry.FDT != "" {
		f, err := c.load(ctx, "fdt", entry.FDT)
		if err != nil {
			return nil, err
		}
		b.DTB = &f
	}
	return b, nil
}

// load fetches one file named by the config, printing as pxelinux does.
func (c *client) load(ctx context.Context, stage, name string) (File, error) {
	c.printf("Loading %s...", name)
	data, err := c.fetch(ctx, name)
	var se *shortError
	switch {
	case err == nil && len(data) == 0, errors.As(err, &se):
		c.printf("failed: Invalid or corrupt kernel image.\r\n")
		return File{}, c.hang(&BootError{Stage: stage, File: name, Message: "Invalid or corrupt kernel image.", Err: err})
	case err != nil:
		msg := "No such file or directory"
		if isTimeout(err) || ctx.Err() != nil {
			msg = "TFTP timeout"
		}
		c.printf("failed: %s\r\n", msg)
		if stage == "kernel" {
			c.printf("Could not find kernel image: %s\r\n", name)
		}
		return File{}, c.hang(&BootError{Stage: stage, File: name, Message: msg, Err: err})
	}
	c.printf("ok\r\n")
	sum := sha256.Sum256(data)
	f := File{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	if c.cfg.KeepData {
		f.Data = data
	}
	return f, nil
}

// hang prints pxelinux's last words before it sits at a prompt forever.
func (c *client) hang(err *BootError) error {
	c.printf("boot: ")
	return err
}

// romError prints what the PXE ROM prints when its boot file transfer
// fails (Intel PXE error codes, PXE spec appendix).
func (c *client) romError(err error, name string) error {
	var msg string
	switch {
	case isNotFound(err):
		c.printf("\r\nPXE-T01: File not found\r\nPXE-E3B: TFTP Error - File Not found\r\n")
		msg = "PXE-E3B: TFTP Error - File Not found"
	case isTimeout(err):
		c.printf("\r\nPXE-E32: TFTP open timeout\r\n")
		msg = "PXE-E32: TFTP open timeout"
	default:
		c.printf("\r\nPXE-E35: TFTP read timeout\r\n")
		msg = "PXE-E35: TFTP read timeout"
	}
	c.printf("PXE-M0F: Exiting Intel PXE ROM.\r\n")
	return &BootError{Stage: "rom", File: name, Message: msg, Err: err}
}

func serverHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

func hexIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return strings.ToUpper(hex.EncodeToString(v4))
	}
	return ""
}

// LookupOrder returns the config names pxelinux tries, in order
// (syslinux doc/pxelinux.txt): pxelinux.cfg/<uuid> (when known),
// pxelinux.cfg/01-<mac>, the IP in upper-case hex and each shorter prefix
// down to one digit, then pxelinux.cfg/default.
func LookupOrder(uuid string, mac net.HardwareAddr, ip net.IP) []string {
	var out []string
	if uuid != "" {
		out = append(out, "pxelinux.cfg/"+strings.ToLower(uuid))
	}
	out = append(out, "pxelinux.cfg/01-"+strings.ReplaceAll(strings.ToLower(mac.String()), ":", "-"))
	if h := hexIP(ip); h != "" {
		for i := len(h); i >= 1; i-- {
			out = append(out, "pxelinux.cfg/"+h[:i])
		}
	}
	return append(out, "pxelinux.cfg/default")
}
