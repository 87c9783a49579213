package pxe

import (
	"net"
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
	defer conn.close()
	type result struct {
		incoming, bound int
		set             unix.CPUSet
		err             error
	}
	done := make(chan result)
	go func() {
		// followCPU locks this goroutine to its thread; the thread ends
		// with it.
		var r result
		defer func() { done <- r }()
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
