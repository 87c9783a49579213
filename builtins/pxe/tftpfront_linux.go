package pxe

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// listenTFTP opens pin/tftp's socket on addr and the front's on the same
// port, both with SO_REUSEPORT, pin/tftp's first (index 0 of the group),
// and attaches the program that steers datagrams over 516 bytes to the
// front (index 1). The program sees the UDP payload (the kernel pulls the
// UDP header before running it, net/core/sock_reuseport.c), so its length
// is the TFTP packet's.
//
// SO_REUSEPORT would also let another process of the same user bind the
// port and take requests meant for this job, where a second bind used to
// fail. So the port is first bound without it, as before: that bind fails
// with EADDRINUSE when the port is taken (also by another basalt's group,
// whose sockets conflict with any socket without SO_REUSEPORT), and the
// group is formed on the port the probe held, just after it closes.
func listenTFTP(ctx context.Context, s *Server, addr string) (net.PacketConn, *tftpFront, error) {
	var plain net.ListenConfig
	probe, err := plain.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, nil, err
	}
	addr = probe.LocalAddr().String()
	probe.Close()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, nil, err
	}
	fc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("second socket on the tftp port: %w", err)
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 516, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 1},
	})
	if err != nil {
		pc.Close()
		fc.Close()
		return nil, nil, err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	raw, err := fc.(*net.UDPConn).SyscallConn()
	if err != nil {
		pc.Close()
		fc.Close()
		return nil, nil, err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		// Without the program the kernel would spread requests over both
		// sockets by hash; serve with pin/tftp alone.
		fc.Close()
		s.log.Warn("pxe tftp: no SO_ATTACH_REUSEPORT_CBPF; over-long requests go unanswered", "err", err)
		return pc, nil, nil
	}
	return pc, &tftpFront{s: s, conn: fc.(*net.UDPConn)}, nil
}
