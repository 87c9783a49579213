package pxe_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
)

// windowClient is a minimal RFC 7440 client that behaves as §4 describes
// and as U-Boot does with tftpwindowsize set (U-Boot's tftpblocksize and
// tftpwindowsize variables become the blksize and windowsize options): it
// ACKs only the last block of each window and, when a block is missing,
// ACKs the last block it got in order so that the server resends from the
// next one. drop names blocks to lose once each, as a lossy link would.
// atftp 0.8 (TestAtftpWindowsize) is the real peer that negotiates it.
type windowClient struct {
	blksize, window int
	drop            map[uint16]bool
	acks            []uint16 // the ACKs sent, for the assertions
	oack            map[string]string
	atEnd           func() // run once the last block is in, before its ACK
}

func (c *windowClient) get(t testing.TB, server, name string) []byte {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := []byte{0, 1}
	req = fmt.Appendf(req, "%s\x00octet\x00blksize\x00%d\x00windowsize\x00%d\x00", name, c.blksize, c.window)
	if _, err := conn.WriteToUDP(req, raddr); err != nil {
		t.Fatal(err)
	}
	var tid *net.UDPAddr
	ack := func(n uint16) {
		c.acks = append(c.acks, n)
		p := []byte{0, 4, 0, 0}
		binary.BigEndian.PutUint16(p[2:], n)
		conn.WriteToUDP(p, tid)
	}
	var out bytes.Buffer
	buf := make([]byte, 65536)
	var got uint16 // last block received in order
	inWindow := 0
	for {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("read after block %d: %v", got, err)
		}
		tid = from
		switch op := binary.BigEndian.Uint16(buf); op {
		case 6: // OACK
			c.oack = map[string]string{}
			f := strings.Split(strings.TrimSuffix(string(buf[2:n]), "\x00"), "\x00")
			for i := 0; i+1 < len(f); i += 2 {
				c.oack[f[i]] = f[i+1]
			}
			ack(0)
		case 3: // DATA
			b := binary.BigEndian.Uint16(buf[2:])
			if b == got+1 && c.drop[b] {
				// Lost on the way, the first time it would be next.
				delete(c.drop, b)
				continue
			}
			if b != got+1 {
				// A gap: ACK what arrived in order, once per window.
				if inWindow >= 0 {
					ack(got)
					inWindow = -1
				}
				continue
			}
			got = b
			out.Write(buf[4:n])
			inWindow = max(inWindow, 0) + 1
			last := n-4 < c.blksize
			if inWindow == c.window || last {
				if last && c.atEnd != nil {
					c.atEnd()
				}
				ack(got)
				inWindow = 0
			}
			if last {
				return out.Bytes()
			}
		case 5:
			t.Fatalf("server error: %q", buf[4:n])
		}
	}
}

func TestTFTPWindowsize(t *testing.T) {
	s, _ := startServer(t, pxe.Config{TFTPTimeout: 200 * time.Millisecond})
	dir, files := jobDir(t, 100_000)
	sv := serveJob(t, s, dir)
	for _, tc := range []struct {
		name string
		drop []uint16
	}{
		{"clean", nil},
		{"lost-block", []uint16{13, 40}},
		{"lost-window-end", []uint16{16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &windowClient{blksize: 1024, window: 8, drop: map[uint16]bool{}}
			for _, b := range tc.drop {
				c.drop[b] = true
			}
			got := c.get(t, s.TFTPAddr(), sv.Files["kernel"])
			if c.oack["windowsize"] != "8" || c.oack["blksize"] != "1024" {
				t.Fatalf("OACK = %v, want windowsize 8, blksize 1024", c.oack)
			}
			if !bytes.Equal(got, files["vmlinuz"]) {
				t.Fatalf("got %d bytes, want the %d of vmlinuz", len(got), len(files["vmlinuz"]))
			}
			// 100000 bytes in 1024-byte blocks: 98 blocks, the last short.
			// Without loss the client ACKs 0 (the OACK), 8, 16, ..., 96, 98.
			if tc.drop == nil {
				want := []uint16{0}
				for b := uint16(8); b <= 96; b += 8 {
					want = append(want, b)
				}
				want = append(want, 98)
				if fmt.Sprint(c.acks) != fmt.Sprint(want) {
					t.Errorf("ACKs = %v, want %v", c.acks, want)
				}
			}
			// Each lost block makes the client ACK the block before it;
			// the whole file arriving means the server resent from there.
			for _, b := range tc.drop {
				if !slices.Contains(c.acks, b-1) {
					t.Errorf("ACKs = %v, want one of block %d (before lost %d)", c.acks, b-1, b)
				}
			}
		})
	}
}

// atftp 0.8 negotiates windowsize (RFC 7440) when asked to.
func TestAtftpWindowsize(t *testing.T) {
	atftp := need(t, "atftp")
	s, ev := startServer(t, pxe.Config{})
	dir, files := jobDir(t, 1_500_000)
	sv := serveJob(t, s, dir)
	h, p := hostPort(t, s.TFTPAddr())
	dst := filepath.Join(t.TempDir(), "k")
	if b, err := runTool(t, atftp, "--option", "blksize 1468", "--option", "windowsize 16", "-g", "-r", sv.Files["kernel"], "-l", dst, h, p); err != nil {
		t.Fatalf("atftp: %v\n%s", err, b)
	}
	checkFile(t, "atftp", dst, files["vmlinuz"])
	var got []any
	for _, f := range ev.Events("tftp") {
		if f["file"] == sv.Files["kernel"] {
			got = append(got, f["windowsize"], f["outcome"])
		}
	}
	if fmt.Sprint(got) != "[16 ok]" {
		t.Errorf("tftp event windowsize, outcome = %v, want [16 ok]", got)
	}
}

// A window the server picks itself (Anticipate) goes to a lock-step
// client that ACKs every block (pin/tftp's, like a PXE ROM's): every ACK
// short of the window's end only moves it, and the file arrives whole.
func TestTFTPAnticipateLockStepClient(t *testing.T) {
	s, _ := startServer(t, pxe.Config{Anticipate: 8})
	dir, files := jobDir(t, 300_000)
	sv := serveJob(t, s, dir)
	for _, blk := range []int{0, 1468} {
		got, err := get(tftpClient(t, s.TFTPAddr(), blk), sv.Files["kernel"])
		if err != nil || !bytes.Equal(got, files["vmlinuz"]) {
			t.Errorf("blksize %d: got %d bytes, %v; want the %d of vmlinuz", blk, len(got), err, len(files["vmlinuz"]))
		}
	}
}

// Past block 65535 the block number wraps to 0 (tftpd-hpa and U-Boot do
// so; RFC 1350 has no option for it): a file of more than 65535 blocks
// arrives whole through windows that span the wrap, with a block lost on
// each side of it (65530, and 0: block 65536). blksize 8, RFC 2348's
// smallest, keeps the file small.
func TestTFTPBlockNumberWraps(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	dir, files := jobDir(t, 65540*8)
	sv := serveJob(t, s, dir)
	c := &windowClient{blksize: 8, window: 64, drop: map[uint16]bool{65530: true, 0: true}}
	got := c.get(t, s.TFTPAddr(), sv.Files["kernel"])
	if !bytes.Equal(got, files["vmlinuz"]) {
		t.Fatalf("got %d bytes, want the %d of vmlinuz", len(got), len(files["vmlinuz"]))
	}
	for _, b := range []uint16{65529, 65535} {
		if !slices.Contains(c.acks, b) {
			t.Errorf("no ACK of block %d before a lost one; ACKs end %v", b, c.acks[max(0, len(c.acks)-8):])
		}
	}
}
