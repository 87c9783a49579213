package pxe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// TFTP opcodes and error codes (RFC 1350 section 5, appendix).
const (
	opWRQ = 2 // opRRQ and opERROR are in tftpsend.go

	errCodeAccess  uint16 = 2 // access violation
	errCodeIllegal uint16 = 4 // illegal TFTP operation
)

// maxRequest is the longest request RFC 2347 allows ("the request packet
// must not exceed 512 octets"); a longer one is answered with an error.
const maxRequest = 512

// tftpFront answers the requests pin/tftp v3.2.0 drops without a word.
// pin/tftp reads requests into a 516-byte buffer: a request with a 600-byte
// name arrives truncated, fails to parse and is dropped (the client waits
// out all its timeouts). The front is a second socket on the same port, in
// one SO_REUSEPORT group with pin/tftp's, and a classic BPF program on the
// group (SO_ATTACH_REUSEPORT_CBPF) steers every datagram longer than 516
// bytes to the front, which reads it whole and answers with an ERROR packet
// (RFC 1350 section 5) naming the reason. Everything else goes to pin/tftp,
// whose transfers keep their speed.
type tftpFront struct {
	s    *Server
	conn *net.UDPConn
}

// close closes the front's socket; serve returns. A nil front (no
// SO_REUSEPORT steering on this system) does nothing.
func (f *tftpFront) close() {
	if f != nil {
		f.conn.Close()
	}
}

// serve reads the datagrams steered to the front until its socket closes.
func (f *tftpFront) serve() {
	if f == nil {
		return
	}
	buf := make([]byte, 65536)
	for {
		n, src, err := f.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if client, ok := src.(*net.UDPAddr); ok {
			f.handle(buf[:n], client)
		}
	}
}

// request is a parsed RRQ or WRQ (RFC 1350 section 5; options RFC 2347).
type request struct {
	op         uint16
	name, mode string
}

// parseRequest parses p. The error is what the ERROR packet says; reason
// is the word for the pxe_refused event.
func parseRequest(p []byte) (r request, reason string, err error) {
	if len(p) < 2 {
		return r, "malformed", errors.New("short packet")
	}
	r.op = binary.BigEndian.Uint16(p)
	if r.op != opRRQ && r.op != opWRQ {
		return r, "malformed", fmt.Errorf("opcode %d is not a request", r.op)
	}
	rest := p[2:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		r.name = string(rest)
		if len(rest) > MaxNameLen {
			return r, "too_long", fmt.Errorf("file name of %d bytes or more is longer than %d", len(rest), MaxNameLen)
		}
		return r, "malformed", errors.New("malformed request: the file name is not NUL-terminated (RFC 1350)")
	}
	r.name = string(rest[:i])
	if len(r.name) > MaxNameLen {
		return r, "too_long", fmt.Errorf("file name of %d bytes is longer than %d", len(r.name), MaxNameLen)
	}
	rest = rest[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return r, "malformed", errors.New("malformed request: the mode is not NUL-terminated (RFC 1350)")
	}
	r.mode = strings.ToLower(string(rest[:j]))
	switch r.mode {
	case "octet", "netascii":
	case "mail":
		return r, "mode", errors.New(`transfer mode "mail" is not supported`)
	default:
		return r, "mode", fmt.Errorf("unknown transfer mode %q (RFC 1350: netascii or octet)", clip(string(rest[:j])))
	}
	if len(p) > maxRequest {
		return r, "too_long", fmt.Errorf("request of %d bytes is longer than %d (RFC 2347)", len(p), maxRequest)
	}
	return r, "", nil
}

func (f *tftpFront) handle(p []byte, client *net.UDPAddr) {
	if len(p) >= 2 {
		if op := binary.BigEndian.Uint16(p); op != opRRQ && op != opWRQ {
			// DATA, ACK or ERROR to the server port belong to no transfer.
			return
		}
	}
	r, reason, err := parseRequest(p)
	code := errCodeIllegal
	if err == nil && r.op == opWRQ {
		reason, err, code = "write", errors.New("write requests are refused"), errCodeAccess
	}
	if err == nil {
		// Only datagrams over 516 bytes reach the front; parseRequest
		// refuses every request over 512.
		reason, err = "too_long", fmt.Errorf("request of %d bytes is longer than %d (RFC 2347)", len(p), maxRequest)
	}
	f.s.refuseRequest(client, r.name, reason, err)
	f.conn.WriteTo(errorPacket(code, err.Error()), client)
}

// refuseRequest records a TFTP request refused before any lookup.
func (s *Server) refuseRequest(client *net.UDPAddr, name, reason string, err error) {
	s.log.Warn("pxe tftp refused request", "client", client.String(), "file", clip(name), "reason", reason, "err", err)
	s.emit("pxe_refused", map[string]any{"proto": "tftp", "client": client.String(), "file": clip(name), "reason": reason, "error": err.Error()})
	s.emitTFTP(client.String(), name, 0, 0, time.Now(), nil, "refused", "")
}

// errorPacket is an ERROR packet (RFC 1350 section 5: opcode 5, error code,
// message, NUL).
func errorPacket(code uint16, msg string) []byte {
	if len(msg) > 200 {
		msg = msg[:200]
	}
	p := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(p, opERROR)
	binary.BigEndian.PutUint16(p[2:], code)
	p = append(p, msg...)
	return append(p, 0)
}
