//go:build !linux

package pxe

// followCPU needs Linux's SO_INCOMING_CPU; elsewhere the scheduler
// places the transfer.
func (c *tidConn) followCPU() {}

func (c *tidConn) unfollowCPU() {}

type cpuSet struct{}
