package sol

import (
	"context"
	"io"
)

// Transport opens connections to one serial console: IPMI SOL, a command
// under a pty, a TCP console server, or the sim's serial line.
//
// Rules every implementation keeps (package soltest checks them):
//   - Open honours ctx (deadline and cancellation) and never blocks past
//     it; on a canceled ctx it returns an error.
//   - Bytes the device sends arrive at Read in order and complete.
//   - Bytes written are delivered to the device in order; a transport that
//     cannot deliver returns an error from Write.
//   - A connection's Read returns an error (io.EOF or another) once the
//     connection is lost; the console then calls Open again, with backoff,
//     and records a gap event. Open may be called any number of times, and
//     once the device's end is back it gives a connection that works.
//   - Close on a connection unblocks a pending Read.
type Transport interface {
	Open(ctx context.Context) (io.ReadWriteCloser, error)
	// String names the transport for events and errors, without secrets
	// ("sol 127.0.0.1:623", "tcp localhost:4006").
	String() string
}
