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
// goroutine stays locked to its thread until the transfer ends, when
// unfollowCPU gives the thread its old affinity back and returns it to the
// pool. The thread must not exit with the goroutine instead: a child
// started from it with Pdeathsig (qemu in runtime/qemu) is killed when the
// thread that forked it ends (prctl(2) PR_SET_PDEATHSIG), and any pooled
// thread may have forked one. Called again every few blocks, it follows a
// client (or an interrupt) that moves. Any failure leaves the thread where
// it is.
func (c *tidConn) followCPU() {
	cpu, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_INCOMING_CPU)
	if err != nil || cpu < 0 || cpu == c.cpu {
		return
	}
	if !c.locked {
		runtime.LockOSThread()
		if unix.SchedGetaffinity(0, &c.home) != nil {
			runtime.UnlockOSThread()
			return
		}
		c.locked = true
	}
	var set unix.CPUSet
	set.Set(cpu)
	if unix.SchedSetaffinity(0, &set) == nil {
		c.cpu = cpu
	}
}

// unfollowCPU undoes followCPU on the goroutine that called it: the old
// affinity back, then the thread back to the pool. If the affinity cannot
// be restored the thread stays locked; pinned to one CPU is better than
// ending it (see followCPU).
func (c *tidConn) unfollowCPU() {
	if !c.locked {
		return
	}
	c.locked = false
	c.cpu = -1
	_ = unix.SchedSetaffinity(0, &c.home)
	runtime.UnlockOSThread()
}

// cpuSet is a thread's CPU affinity (sched_setaffinity(2)).
type cpuSet = unix.CPUSet
