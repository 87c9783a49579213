package pxe

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A transfer's thread is bound, after an ACK, to the CPU the ACK came in
// on (SO_INCOMING_CPU) and to no other: that is what keeps a lock-step
// transfer's wake-ups on one CPU.
func TestTIDConnFollowsIncomingCPU(t *testing.T) {
	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := dialTID(net.IPv4(127, 0, 0, 1), client.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		incoming, bound int
		set             unix.CPUSet
		err             error
	}
	done := make(chan result)
	go func() {
		// followCPU locks this goroutine to its thread until close.
		var r result
		defer func() { done <- r }()
		defer conn.close()
		buf := make([]byte, 16)
		if _, err := client.WriteToUDP([]byte{0, 4, 0, 1}, conn.local); err != nil {
			r.err = err
			return
		}
		if _, r.err = conn.read(buf, time.Now().Add(5*time.Second), time.Second); r.err != nil {
			return
		}
		conn.followCPU()
		if r.incoming, r.err = unix.GetsockoptInt(conn.fd, unix.SOL_SOCKET, unix.SO_INCOMING_CPU); r.err != nil {
			return
		}
		r.bound = conn.cpu
		r.err = unix.SchedGetaffinity(0, &r.set)
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.incoming < 0 {
		t.Skip("the kernel reports no SO_INCOMING_CPU")
	}
	if r.bound != r.incoming || r.set.Count() != 1 || !r.set.IsSet(r.incoming) {
		t.Fatalf("after followCPU: bound to %d, affinity %d CPUs (CPU %d in it: %v), want only the incoming CPU %d",
			r.bound, r.set.Count(), r.incoming, r.set.IsSet(r.incoming), r.incoming)
	}
}

// When the transfer ends its thread gets its old affinity back and goes
// back to the pool rather than ending with the goroutine: a thread that
// ends kills the children it forked with Pdeathsig (qemu's VMs, prctl(2)),
// which once stopped two PXE-booting VMs in the middle of their TFTP.
func TestTIDConnCloseRestoresThread(t *testing.T) {
	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	type result struct {
		before, after unix.CPUSet
		pinned        bool
		err           error
	}
	done := make(chan result)
	go func() {
		var r result
		defer func() { done <- r }()
		// The test's own lock keeps this goroutine on one thread across
		// followCPU's lock and close's unlock.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if r.err = unix.SchedGetaffinity(0, &r.before); r.err != nil {
			return
		}
		conn, err := dialTID(net.IPv4(127, 0, 0, 1), client.LocalAddr().(*net.UDPAddr))
		if err != nil {
			r.err = err
			return
		}
		buf := make([]byte, 16)
		if _, r.err = client.WriteToUDP([]byte{0, 4, 0, 1}, conn.local); r.err != nil {
			conn.close()
			return
		}
		if _, r.err = conn.read(buf, time.Now().Add(5*time.Second), time.Second); r.err != nil {
			conn.close()
			return
		}
		conn.followCPU()
		r.pinned = conn.locked
		conn.close()
		if conn.locked {
			r.err = errors.New("close left the goroutine locked to its thread")
			return
		}
		r.err = unix.SchedGetaffinity(0, &r.after)
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.pinned {
		t.Skip("followCPU did not pin the thread (no SO_INCOMING_CPU)")
	}
	if r.after != r.before {
		t.Fatalf("affinity after close = %d CPUs, want the %d it had before followCPU", r.after.Count(), r.before.Count())
	}
}
