package bmcsim

import (
	"math"
	"math/rand/v2"
	"net"
	"sync/atomic"
)

// lossyConn is the BMC's UDP socket with injected datagram loss, in both
// directions, for fault tests.
type lossyConn struct {
	*net.UDPConn
	loss atomic.Uint64 // math.Float64bits of the drop fraction
}

func newLossyConn(c *net.UDPConn, loss float64) *lossyConn {
	l := &lossyConn{UDPConn: c}
	l.setLoss(loss)
	return l
}

func (l *lossyConn) setLoss(f float64) { l.loss.Store(math.Float64bits(min(max(f, 0), 1))) }

func (l *lossyConn) drop() bool {
	f := math.Float64frombits(l.loss.Load())
	return f > 0 && rand.Float64() < f
}

// ReadFrom returns the next datagram that survives the loss.
func (l *lossyConn) ReadFrom(buf []byte) (int, net.Addr, error) {
	for {
		n, addr, err := l.UDPConn.ReadFromUDP(buf)
		if err != nil {
			return n, addr, err
		}
		if !l.drop() {
			return n, addr, nil
		}
	}
}

// WriteTo sends data unless the loss eats it; a lost datagram still
// reports success, as the network would.
func (l *lossyConn) WriteTo(data []byte, addr net.Addr) (int, error) {
	if l.drop() {
		return len(data), nil
	}
	return l.UDPConn.WriteTo(data, addr)
}
