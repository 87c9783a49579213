package bmcsim

import (
	"math"
	"math/rand/v2"
	"net"
	"sync/atomic"
)

// lossyConn is the BMC's UDP socket with injected datagram loss, in both
// directions, for fault tests: loss applies to every datagram, solLoss to
// SOL payloads only (the RMCP+ session header is in clear: payload type
// 01h, IPMI v2.0 §13.6), so that console loss can be tested apart from
// command loss.
type lossyConn struct {
	*net.UDPConn
	loss    atomic.Uint64 // math.Float64bits of the drop fraction
	solLoss atomic.Uint64
}

func newLossyConn(c *net.UDPConn, loss float64) *lossyConn {
	l := &lossyConn{UDPConn: c}
	l.setLoss(loss)
	return l
}

func (l *lossyConn) setLoss(f float64) { l.loss.Store(math.Float64bits(min(max(f, 0), 1))) }

func (l *lossyConn) setSOLLoss(f float64) { l.solLoss.Store(math.Float64bits(min(max(f, 0), 1))) }

func (l *lossyConn) drop(b []byte) bool {
	f := math.Float64frombits(l.loss.Load())
	if f > 0 && rand.Float64() < f {
		return true
	}
	f = math.Float64frombits(l.solLoss.Load())
	return f > 0 && isSOL(b) && rand.Float64() < f
}

// isSOL reports whether b is an RMCP+ packet carrying a SOL payload: RMCP
// header, auth type 06h, payload type 01h (IPMI v2.0 Table 13-8).
func isSOL(b []byte) bool {
	return len(b) > 5 && b[4] == 0x06 && b[5]&0x3f == 0x01
}

// ReadFrom returns the next datagram that survives the loss.
func (l *lossyConn) ReadFrom(buf []byte) (int, net.Addr, error) {
	for {
		n, addr, err := l.UDPConn.ReadFromUDP(buf)
		if err != nil {
			return n, addr, err
		}
		if !l.drop(buf[:n]) {
			return n, addr, nil
		}
	}
}

// WriteTo sends data unless the loss eats it; a lost datagram still
// reports success, as the network would.
func (l *lossyConn) WriteTo(data []byte, addr net.Addr) (int, error) {
	if l.drop(data) {
		return len(data), nil
	}
	return l.UDPConn.WriteTo(data, addr)
}
