package pxe

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// followCPU moves the transfer onto the CPU that took the client's last
// datagram, SO_INCOMING_CPU (socket(7)): the CPU whose receive path wakes
// the transfer's thread. In lock-step every block waits for one ACK, and
// on a machine of a few CPUs a thread that sleeps on another CPU than the
// one the ACK arrives on is woken by an inter-processor interrupt, from a
// halted CPU on a VM, at each block; on the same CPU the wake-up is a
// switch on the local run queue (what Receive Flow Steering does from the
// other side, steering packets to the consumer's CPU). The transfer's
// goroutine stays locked to its thread for the rest of its life, so the
// affinity ends with the thread when the transfer ends and never reaches
// another goroutine. Called again every few blocks, it follows a client
// (or an interrupt) that moves. Any failure leaves the thread where it is.
func (c *tidConn) followCPU() {
	cpu, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_INCOMING_CPU)
	if err != nil || cpu < 0 || cpu == c.cpu {
		return
	}
	if !c.locked {
		runtime.LockOSThread()
		c.locked = true
	}
	var set unix.CPUSet
	set.Set(cpu)
	if unix.SchedSetaffinity(0, &set) == nil {
		c.cpu = cpu
	}
}
