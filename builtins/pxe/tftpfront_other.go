//go:build !linux

package pxe

import (
	"context"
	"net"
)

// listenTFTP opens pin/tftp's socket; the front needs Linux's
// SO_ATTACH_REUSEPORT_CBPF.
func listenTFTP(ctx context.Context, s *Server, addr string) (net.PacketConn, *tftpFront, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	return pc, nil, err
}
