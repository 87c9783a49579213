package qemu

import (
	"context"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
)

// Node makes a VM the machine behind a bmcsim BMC: chassis power and reset
// become QMP commands (see [VM.PowerOn]) and the boot device the BMC hands
// over becomes the VM's boot order for that boot. Give the BMC [VM.Serial]
// as its Config.Serial so SOL carries the VM's ttyS0.
//
// A failed command is returned to the BMC, which answers the Chassis
// Control request with completion code FFh, and kept for [Node.Err]. The BMC tracks power itself, so a guest that powers
// itself off (poweroff in the guest pauses the VM) still reads "on" there
// until the next chassis command.
type Node struct {
	vm *VM
	// Timeout bounds each power operation. Default 30 s.
	Timeout time.Duration

	mu  sync.Mutex
	err error
}

var _ bmcsim.Node = (*Node)(nil)

// NewNode returns the bmcsim.Node for vm.
func NewNode(vm *VM) *Node { return &Node{vm: vm} }

func (n *Node) do(ctx context.Context, f func(ctx context.Context) error) error {
	t := n.Timeout
	if t <= 0 {
		t = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	err := f(ctx)
	if err != nil {
		n.vm.log.Warn("qemu: node power operation failed", "err", err)
	}
	n.mu.Lock()
	n.err = err
	n.mu.Unlock()
	return err
}

// PowerOn implements bmcsim.Node.
func (n *Node) PowerOn(ctx context.Context, boot bmcsim.BootDevice) error {
	return n.do(ctx, func(ctx context.Context) error { return n.vm.PowerOn(ctx, boot) })
}

// PowerOff implements bmcsim.Node.
func (n *Node) PowerOff(ctx context.Context) error {
	return n.do(ctx, n.vm.PowerOff)
}

// Reset implements bmcsim.Node.
func (n *Node) Reset(ctx context.Context, boot bmcsim.BootDevice) error {
	return n.do(ctx, func(ctx context.Context) error { return n.vm.Reset(ctx, boot) })
}

// Err returns the error of the last power operation, nil if it worked.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}
