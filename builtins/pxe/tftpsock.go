package pxe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tidConn is a transfer's socket (its TID, RFC 1350 §4), connected to the
// client so the kernel drops datagrams from any other port and a read
// needs no address. It is a blocking socket driven with plain syscalls, as
// tftpd-hpa drives its own: in lock-step every block waits for one ACK,
// and a blocking recv with SO_RCVTIMEO costs one syscall, where Go's
// netpoller costs a failed recv, an epoll wait, a goroutine wake-up and a
// timer reset per block. A transfer holds an OS thread while it waits;
// there are a handful at a time. Per lock-step block the server makes a
// write and a read, and every 64 blocks a getsockopt (followCPU, which
// keeps the thread on the CPU the ACKs arrive on); it allocates nothing.
type tidConn struct {
	fd      int
	local   *net.UDPAddr
	timeout time.Duration // SO_RCVTIMEO as last set
	cpu     int           // the CPU the thread is bound to (followCPU), or -1
	locked  bool          // the goroutine is locked to its thread (followCPU)
	home    cpuSet        // the thread's affinity before followCPU
}

var errTimeout = errors.New("timeout waiting for the client")

func dialTID(local net.IP, remote *net.UDPAddr) (*tidConn, error) {
	family := unix.AF_INET
	var la, ra unix.Sockaddr
	if ip4 := remote.IP.To4(); ip4 != nil {
		a := &unix.SockaddrInet4{Port: remote.Port}
		copy(a.Addr[:], ip4)
		ra = a
		b := &unix.SockaddrInet4{}
		if l4 := local.To4(); l4 != nil {
			copy(b.Addr[:], l4)
		}
		la = b
	} else {
		family = unix.AF_INET6
		a := &unix.SockaddrInet6{Port: remote.Port}
		copy(a.Addr[:], remote.IP.To16())
		ra = a
		b := &unix.SockaddrInet6{}
		if local != nil {
			copy(b.Addr[:], local.To16())
		}
		la = b
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open socket: %w", err)
	}
	c := &tidConn{fd: fd, cpu: -1}
	if err := unix.Bind(fd, la); err != nil {
		c.close()
		return nil, fmt.Errorf("bind socket: %w", err)
	}
	if err := unix.Connect(fd, ra); err != nil {
		c.close()
		return nil, fmt.Errorf("connect socket to %s: %w", remote, err)
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			c.local = &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
		case *unix.SockaddrInet6:
			c.local = &net.UDPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
		}
	}
	return c, nil
}

// close closes the socket and, on the transfer's goroutine, undoes
// followCPU.
func (c *tidConn) close() {
	c.unfollowCPU()
	unix.Close(c.fd)
}

func (c *tidConn) write(p []byte) error {
	for {
		_, err := unix.Write(c.fd, p)
		if err == unix.EINTR {
			continue
		}
		// ECONNREFUSED: an ICMP port unreachable from an earlier
		// datagram; the client may still be there (RFC 1122 §4.1.3.3).
		if err == unix.ECONNREFUSED {
			continue
		}
		return err
	}
}

// read waits until deadline for one datagram; wait is the usual time left
// (the transfer's timeout), which keeps SO_RCVTIMEO unchanged between
// blocks.
func (c *tidConn) read(p []byte, deadline time.Time, wait time.Duration) (int, error) {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, errTimeout
		}
		// Reset the socket's timeout only when it is off by more than a
		// tenth: in the common case (a fresh deadline per window) never.
		if want := min(left, wait); c.timeout-want > wait/10 || want-c.timeout > wait/10 || c.timeout == 0 {
			tv := unix.NsecToTimeval(want.Nanoseconds())
			if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return 0, fmt.Errorf("set receive timeout: %w", err)
			}
			c.timeout = want
		}
		n, err := unix.Read(c.fd, p)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR, unix.ECONNREFUSED:
			continue
		case unix.EAGAIN:
			return 0, errTimeout
		}
		return 0, fmt.Errorf("receive: %w", err)
	}
}

func (c *tidConn) sendError(code uint16, msg string) {
	p := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(p, opERROR)
	binary.BigEndian.PutUint16(p[2:], code)
	p = append(append(p, msg...), 0)
	c.write(p)
}
