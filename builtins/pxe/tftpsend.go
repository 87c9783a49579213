package pxe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/pin/tftp/v3/netascii"
)

// basalt answers read requests (RRQ) itself rather than through
// pin/tftp's sender: pin/tftp v3.2.0 refuses every option but blksize and
// tsize, so it cannot negotiate RFC 7440's windowsize that U-Boot asks for
// (its tftpwindowsize variable), and its per-block path arms a timer and
// allocates an address per datagram. rrqConn sits between the listening
// socket and pin/tftp's Server: it takes the RRQs and passes everything
// else (WRQs, which pin/tftp refuses since basalt has no write handler,
// and garbage) on. The transfer itself still goes through Server.tftpRead,
// so validation, lookup and events are the same.

// TFTP opcodes and error codes, RFC 1350 §5 and RFC 2347.
const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6

	errCodeUndefined = 0
	errCodeIllegalOp = 4
	errCodeOption    = 8
)

// maxWindow caps the windowsize basalt accepts (RFC 7440 §3 allows up to
// 65535): 64 blocks of 1468 bytes is ~94 KB in flight, more than the
// default socket buffer of a small board, and U-Boot's default is 1.
const maxWindow = 64

type rrqConn struct {
	net.PacketConn
	s *Server
}

// ReadFrom returns the next datagram that is not a read request; read
// requests are served in their own goroutine.
func (c *rrqConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if n < 2 || binary.BigEndian.Uint16(p) != opRRQ || !ok {
			return n, addr, nil
		}
		req := append([]byte(nil), p[2:n]...)
		c.s.xfers.Add(1)
		go func() {
			defer c.s.xfers.Done()
			c.s.serveRRQ(c.PacketConn.LocalAddr(), ua, req)
		}()
	}
}

// rrq is a parsed read request (RFC 1350 §5, options RFC 2347 §2).
type rrq struct {
	filename, mode string
	opts           map[string]string // lower-case names, in any order
	order          []string          // option names as requested
}

func parseRRQ(b []byte) (rrq, error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) < 3 || len(parts[len(parts)-1]) != 0 {
		return rrq{}, errors.New("request not NUL-terminated")
	}
	parts = parts[:len(parts)-1]
	r := rrq{filename: string(parts[0]), mode: strings.ToLower(string(parts[1])), opts: map[string]string{}}
	for i := 2; i+1 < len(parts); i += 2 {
		name := strings.ToLower(string(parts[i]))
		if _, dup := r.opts[name]; !dup {
			r.order = append(r.order, name)
		}
		r.opts[name] = string(parts[i+1])
	}
	return r, nil
}

// rrqSender is one transfer: it implements the io.ReaderFrom and
// tftp.OutgoingTransfer that Server.tftpRead expects of pin/tftp.
type rrqSender struct {
	s      *Server
	conn   *tidConn
	remote *net.UDPAddr
	req    rrq
	size   int64 // -1 until SetSize

	blksize    int
	window     int
	negotiated bool // windowsize came from the client (RFC 7440)
	timeout    time.Duration
	acked      map[string]string // the options the OACK carried

	buf   []byte // window * (4 + blksize), block k of the window at k*(4+blksize)
	rbuf  []byte
	sent  int // datagrams sent, for the event
	stats bool
}

func (s *Server) serveRRQ(local net.Addr, remote *net.UDPAddr, b []byte) {
	la, _ := local.(*net.UDPAddr)
	var lip net.IP
	if la != nil && !la.IP.IsUnspecified() {
		lip = la.IP
	}
	var conn *tidConn
	err := s.socketsIn(func() (err error) { conn, err = dialTID(lip, remote); return err })
	if err != nil {
		s.log.Warn("pxe tftp cannot open transfer socket", "client", remote.String(), "err", err)
		return
	}
	defer conn.close()
	req, err := parseRRQ(b)
	if err != nil {
		conn.sendError(errCodeIllegalOp, "malformed request")
		s.log.Debug("pxe tftp bad request", "client", remote.String(), "err", err)
		return
	}
	if req.mode != "octet" && req.mode != "netascii" {
		// RFC 1350 §5: netascii and octet ("mail" is obsolete).
		err := fmt.Errorf("unsupported transfer mode %s (RFC 1350: netascii or octet)", strconv.Quote(clip(req.mode)))
		conn.sendError(errCodeIllegalOp, err.Error())
		s.refuseRequest(remote, req.filename, "mode", err)
		return
	}
	snd := &rrqSender{s: s, conn: conn, remote: remote, req: req, size: -1,
		blksize: 512, window: 1, timeout: s.cfg.TFTPTimeout}
	if s.cfg.Anticipate > 1 {
		snd.window = int(min(s.cfg.Anticipate, maxWindow))
	}
	if err := s.tftpRead(req.filename, snd); err != nil {
		if !snd.stats {
			// Not found or refused: the ERROR a client waits for.
			conn.sendError(errCodeFileNotFound(err), err.Error())
		}
	}
}

func errCodeFileNotFound(err error) uint16 {
	if errors.Is(err, errNotFound) {
		return 1 // RFC 1350 §5: file not found
	}
	return errCodeUndefined
}

func (t *rrqSender) RemoteAddr() net.UDPAddr { return *t.remote }
func (t *rrqSender) SetSize(n int64)         { t.size = n }

// maxBlksize is the largest block that fits one datagram on the path:
// the MTU of the interface holding the local address, less 20 bytes of
// IPv4 header, 8 of UDP and 4 of TFTP (RFC 2348 §1 warns against
// fragmentation); 1468 (Ethernet) when the interface is unknown.
func (t *rrqSender) maxBlksize() int {
	if la := t.conn.local; la != nil {
		ifs, _ := net.Interfaces()
		for _, ifc := range ifs {
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.Equal(la.IP) {
					return max(512, min(65464, ifc.MTU-32))
				}
			}
		}
	}
	return 1468
}

// negotiate picks the options to acknowledge: blksize (RFC 2348), tsize
// and timeout (RFC 2349), windowsize (RFC 7440 §3). Unknown options and
// values out of range are left out of the OACK, which RFC 2347 §3 allows.
func (t *rrqSender) negotiate(size int64) {
	t.acked = map[string]string{}
	for _, name := range t.req.order {
		v := t.req.opts[name]
		n, err := strconv.Atoi(v)
		switch name {
		case "blksize":
			if err == nil && n >= 8 {
				t.blksize = min(n, 65464, t.maxBlksize())
				t.acked[name] = strconv.Itoa(t.blksize)
			}
		case "tsize":
			if size >= 0 {
				t.acked[name] = strconv.FormatInt(size, 10)
			}
		case "timeout":
			if err == nil && n >= 1 && n <= 255 {
				t.timeout = time.Duration(n) * time.Second
				t.acked[name] = v
			}
		case "windowsize":
			if err == nil && n >= 1 && n <= 65535 {
				t.window = min(n, maxWindow)
				t.negotiated = true
				t.acked[name] = strconv.Itoa(t.window)
			}
		}
	}
}

// ReadFrom sends r: the OACK if options were asked for, then the blocks.
func (t *rrqSender) ReadFrom(r io.Reader) (int64, error) {
	var ra io.ReaderAt
	size := t.size
	if t.req.mode == "netascii" {
		// RFC 1350 / RFC 764: CR LF line ends, CR NUL for a bare CR. The
		// converted length is known only after converting, and config
		// files are small.
		data, err := io.ReadAll(netascii.ToReader(r))
		if err != nil {
			return 0, fmt.Errorf("read file: %w", err)
		}
		ra, size = bytes.NewReader(data), int64(len(data))
	} else if x, ok := r.(io.ReaderAt); ok && size >= 0 {
		ra = x
	} else {
		data, err := io.ReadAll(r)
		if err != nil {
			return 0, fmt.Errorf("read file: %w", err)
		}
		ra, size = bytes.NewReader(data), int64(len(data))
	}
	t.negotiate(size)
	t.rbuf = make([]byte, 4+65464)
	if len(t.acked) > 0 {
		if err := t.sendOACK(); err != nil {
			t.finish(err)
			return 0, err
		}
	}
	n, err := t.sendData(ra, size)
	t.finish(err)
	return n, err
}

// finish hands the negotiated options to the handler's event, as
// pin/tftp's hook does.
func (t *rrqSender) finish(err error) {
	t.stats = true
	opts := map[string]string{}
	for k, v := range t.acked {
		opts[k] = v
	}
	t.s.putOpts(tftp.TransferStats{RemoteAddr: t.remote.IP, Tid: t.remote.Port, Opts: opts, DatagramsSent: t.sent})
	if err != nil && !errors.Is(err, errPeer) {
		t.conn.sendError(errCodeUndefined, err.Error())
	}
}

var errPeer = errors.New("client sent error")

func (t *rrqSender) sendOACK() error {
	p := make([]byte, 2, 64)
	binary.BigEndian.PutUint16(p, opOACK)
	for _, name := range t.req.order {
		if v, ok := t.acked[name]; ok {
			p = append(append(append(append(p, name...), 0), v...), 0)
		}
	}
	// RFC 2347 §2: the client answers the OACK with ACK 0, or with ERROR
	// 8 when it refuses an option.
	for try := 0; ; try++ {
		if err := t.conn.write(p); err != nil {
			return fmt.Errorf("send oack: %w", err)
		}
		t.sent++
		ack, err := t.waitAck(time.Now().Add(t.timeout))
		if err == nil && ack == 0 {
			return nil
		}
		if err != nil && !isTimeout(err) {
			return err
		}
		if try >= t.s.cfg.TFTPRetries {
			return fmt.Errorf("no ack of oack after %d tries", try+1)
		}
	}
}

func isTimeout(err error) bool { return errors.Is(err, errTimeout) }

// waitAck reads until an ACK arrives and returns its block number; an
// ERROR from the client ends the transfer (errPeer).
func (t *rrqSender) waitAck(deadline time.Time) (uint16, error) {
	for {
		n, err := t.conn.read(t.rbuf, deadline, t.timeout)
		if err != nil {
			return 0, err
		}
		if n < 4 {
			continue
		}
		switch binary.BigEndian.Uint16(t.rbuf) {
		case opACK:
			return binary.BigEndian.Uint16(t.rbuf[2:]), nil
		case opERROR:
			msg, _, _ := bytes.Cut(t.rbuf[4:n], []byte{0})
			return 0, fmt.Errorf("%w: code %d: %s", errPeer, binary.BigEndian.Uint16(t.rbuf[2:]), msg)
		}
	}
}

// sendData sends blocks 1..last in windows of t.window (1: lock-step,
// RFC 1350). Blocks are counted from 1 in an int64 and wrap to 0 on the
// wire after 65535, as tftpd-hpa and U-Boot do for files over 32 MiB at
// 512-byte blocks. RFC 7440 §4: the client ACKs the last block of each
// window; when it sees a gap it ACKs the last block it got in order and
// the server sends the next window from the block after it. A window the
// server chose itself (Anticipate) goes to a lock-step client that ACKs
// every block, so there an ACK short of the window's end only moves the
// window's start.
func (t *rrqSender) sendData(ra io.ReaderAt, size int64) (int64, error) {
	blk := int64(t.blksize)
	last := size/blk + 1 // the last block is short, possibly empty
	stride := 4 + t.blksize
	t.buf = make([]byte, t.window*stride)
	ahead := &readAhead{r: ra, size: size, buf: make([]byte, max(readAheadSize, t.window*t.blksize))}
	next := int64(1) // first unacknowledged block
	tries := 0
	acks := 0 // ACKs that moved the window
	for next <= last {
		end := min(next+int64(t.window)-1, last)
		for b := next; b <= end; b++ {
			p := t.buf[int(b-next)*stride:][:stride]
			binary.BigEndian.PutUint16(p, opDATA)
			binary.BigEndian.PutUint16(p[2:], uint16(b))
			off := (b - 1) * blk
			l := int(min(blk, size-off))
			if l > 0 {
				if err := ahead.copy(p[4:4+l], off); err != nil {
					return off, err
				}
			}
			if err := t.conn.write(p[:4+l]); err != nil {
				return off, fmt.Errorf("send block %d: %w", b, err)
			}
			t.sent++
		}
		deadline := time.Now().Add(t.timeout)
		for {
			ack, err := t.waitAck(deadline)
			if err != nil {
				if !isTimeout(err) {
					return (next - 1) * blk, err
				}
				if tries++; tries > t.s.cfg.TFTPRetries {
					return (next - 1) * blk, fmt.Errorf("no ack of block %d after %d tries", next, tries)
				}
				break // resend from next
			}
			// The ACK's block as an int64 near next: the 16-bit number
			// counts from next-1 (nothing new) to end.
			d := int64(uint16(ack - uint16(next-1)))
			if d > end-next+1 {
				continue // an old duplicate: ignored (RFC 1350 §6 Sorcerer's Apprentice)
			}
			if d == 0 && !t.negotiated {
				continue
			}
			tries = 0
			if acks++; acks%followEvery == 1 {
				t.conn.followCPU()
			}
			next += d
			if next > end || t.negotiated {
				break
			}
		}
	}
	return size, nil
}

// followEvery is how often (in ACKs, from the first) a transfer checks
// that it runs on the CPU its client's ACKs arrive on (followCPU): a
// getsockopt, and a sched_setaffinity when the CPU changed.
const followEvery = 64

// readAheadSize is how much of the file one pread fetches: 128 blocks of
// 512 bytes, so a lock-step block costs its send and its ACK's receive
// and, one time in 128, a read.
const readAheadSize = 64 << 10

// readAhead serves blocks from a buffer filled by ReadAt, which for a job
// file is a pread on the file the server keeps open.
type readAhead struct {
	r     io.ReaderAt
	size  int64
	buf   []byte
	start int64 // file offset of buf[0]
	n     int   // valid bytes in buf
}

func (a *readAhead) copy(p []byte, off int64) error {
	if off < a.start || off+int64(len(p)) > a.start+int64(a.n) {
		want := int(min(int64(len(a.buf)), a.size-off))
		n, err := a.r.ReadAt(a.buf[:want], off)
		if n < want {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			a.n = 0
			return fmt.Errorf("read file at %d: %w", off, err)
		}
		a.start, a.n = off, n
	}
	copy(p, a.buf[off-a.start:])
	return nil
}
