package pxe_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
)

// Requests pin/tftp alone would serve (mode "bogus", served as octet) or
// drop without an answer (a name too long for its 516-byte read) get an
// ERROR packet (RFC 1350 section 5: opcode 5, code, message) that names the
// reason.
func TestTFTPBadRequestsAnswered(t *testing.T) {
	s, ev := startServer(t, pxe.Config{})
	dir, _ := jobDir(t, 1000)
	serveJob(t, s, dir)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, _ := net.ResolveUDPAddr("udp", s.TFTPAddr())
	rrq := func(name, mode string) []byte {
		p := append([]byte{0, 1}, name...)
		p = append(p, 0)
		p = append(p, mode...)
		return append(p, 0)
	}
	if runtime.GOOS != "linux" {
		t.Skip("the TFTP front needs Linux's SO_ATTACH_REUSEPORT_CBPF")
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		code byte
		want string
	}{
		// basalt's read-request path (tftpsend.go) refuses other modes
		// with code 4, illegal TFTP operation.
		{"mode bogus", rrq("pxelinux.0", "bogus"), 4, `unsupported transfer mode "bogus"`},
		{"mode mail", rrq("pxelinux.0", "mail"), 4, `unsupported transfer mode "mail"`},
		// The front answers what is too long for pin/tftp's 516-byte read.
		{"600-byte name", rrq(strings.Repeat("a", 600), "octet"), 4, "file name of 600 bytes is longer than 255"},
		{"600-byte name, no NUL", append([]byte{0, 1}, strings.Repeat("b", 600)...), 4, "file name of 600 bytes or more is longer than 255"},
		{"request over 516 bytes", rrq("pxelinux.0", "octet"+"\x00blksize\x00"+strings.Repeat("1", 500)), 4, "longer than 512 (RFC 2347)"},
		{"long write request", append(append([]byte{0, 2}, strings.Repeat("w", 600)...), "\x00octet\x00"...), 4, "file name of 600 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conn.WriteTo(tc.pkt, srv); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1024)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if n < 5 || buf[0] != 0 || buf[1] != 5 || buf[2] != 0 || buf[3] != tc.code || buf[n-1] != 0 {
				t.Fatalf("answer % x, want ERROR (opcode 5) with code %d and a NUL-terminated message", buf[:min(n, 16)], tc.code)
			}
			if msg := string(buf[4 : n-1]); !strings.Contains(msg, tc.want) {
				t.Errorf("ERROR message = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
	got := map[string]bool{}
	for _, f := range ev.Events("pxe_refused") {
		got[f["reason"].(string)] = true
	}
	for _, r := range []string{"mode", "too_long"} {
		if !got[r] {
			t.Errorf("pxe_refused reasons = %v, want %q", got, r)
		}
	}
}

// The front shares the TFTP port through SO_REUSEPORT; a second server on
// the same address must still fail to start, not join the group and take
// this server's requests.
func TestTFTPPortStillExclusive(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	other := pxe.NewServer(pxe.Config{TFTPAddr: s.TFTPAddr(), LoaderDir: t.TempDir()})
	if err := other.Start(context.Background()); err == nil {
		other.Close()
		t.Fatalf("a second server started on %s, want address already in use", s.TFTPAddr())
	} else if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second server on %s: %v, want address already in use", s.TFTPAddr(), err)
	}
}
