package ipmi

import "io"

// SkipAcks makes the next n BMC data packets of s's connections go
// unacknowledged, as if the acknowledgements were lost.
func SkipAcks(s *SOL, n int) { s.skipAcks.Store(int32(n)) }

// Resent returns how many BMC packets conn received again.
func Resent(conn io.ReadWriteCloser) uint64 {
	c := conn.(*solConn)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resent
}
