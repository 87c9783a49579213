package qemu

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace of its own for a VM lab: a bridge with an
// address, and a tap on that bridge for qemu's NIC. Nothing is routed to
// or from the host's namespaces; traffic stays between the bridge (basalt's
// servers, bound inside with [NetNS.Exec]) and the VM.
//
// The bridge has an IPv4 address and an IPv6 unique local address, so a
// DHCP server run inside ([NetNS.Command], e.g. dnsmasq --enable-ra) can
// send router advertisements: iPXE waits about 16 s for one before it
// boots. The kernel itself neither accepts RAs nor autoconfigures
// addresses there, and the tap, a bridge port, has IPv6 off.
type NetNS struct {
	// Name is the namespace's name (/run/netns/Name).
	Name string
	// Bridge and Tap are the interface names inside the namespace.
	Bridge, Tap string
	// Addr is the bridge's IPv4 address, 10.250.N.1/24 with N from the name.
	Addr netip.Prefix
	// Addr6 is the bridge's IPv6 address, fdba:5a17:0:N::1/64.
	Addr6 netip.Prefix
	// taps are the taps AddTap made, besides Tap.
	taps []string
}

// AddTap adds another tap on the bridge, set up as Tap is (IPv6 off), for
// another VM of the lab (a multi-device job's second device).
func (ns *NetNS) AddTap(name string) error {
	if err := ip("-n", ns.Name, "tuntap", "add", "dev", name, "mode", "tap"); err != nil {
		return err
	}
	ns.taps = append(ns.taps, name)
	if out, err := ns.Command(context.Background(), "sysctl", "-qw", "net.ipv6.conf."+name+".disable_ipv6=1").CombinedOutput(); err != nil {
		return fmt.Errorf("qemu: netns %s: sysctl: %w: %s", ns.Name, err, strings.TrimSpace(string(out)))
	}
	for _, s := range [][]string{{"link", "set", name, "master", ns.Bridge}, {"link", "set", name, "up"}} {
		if err := ip(append([]string{"-n", ns.Name}, s...)...); err != nil {
			return err
		}
	}
	return nil
}

var nsName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// NewNetNS creates the namespace name with its bridge "br0" and tap
// "tap0". It fails if a namespace of that name exists: it never adopts
// one it did not create.
func NewNetNS(name string) (*NetNS, error) {
	if !nsName.MatchString(name) {
		return nil, fmt.Errorf("qemu: netns name %q: want letters, digits, '_', '.', '-'", name)
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	n := byte(h.Sum32()%254) + 1
	ns := &NetNS{
		Name:   name,
		Bridge: "br0",
		Tap:    "tap0",
		Addr:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 250, n, 1}), 24),
		Addr6:  netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0xba, 0x5a, 0x17, 0, 0, 0, n, 15: 1}), 64),
	}
	if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
		return nil, fmt.Errorf("qemu: netns %s already exists", name)
	}
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", ns.Bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"tuntap", "add", "dev", ns.Tap, "mode", "tap"},
		{"link", "set", ns.Tap, "master", ns.Bridge},
	}
	for _, s := range steps {
		if err := ip(append([]string{"-n", name}, s...)...); err != nil {
			ns.Close()
			return nil, err
		}
	}
	sysctls := []string{
		"net.ipv6.conf.all.accept_ra=0",
		"net.ipv6.conf.default.accept_ra=0",
		"net.ipv6.conf.default.autoconf=0",
		"net.ipv6.conf." + ns.Tap + ".disable_ipv6=1",
		"net.ipv6.conf." + ns.Bridge + ".accept_ra=0",
		"net.ipv6.conf." + ns.Bridge + ".autoconf=0",
	}
	if out, err := ns.Command(context.Background(), "sysctl", append([]string{"-qw"}, sysctls...)...).CombinedOutput(); err != nil {
		ns.Close()
		return nil, fmt.Errorf("qemu: netns %s: sysctl: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	steps = [][]string{
		{"addr", "add", ns.Addr.String(), "dev", ns.Bridge},
		{"addr", "add", ns.Addr6.String(), "dev", ns.Bridge, "nodad"},
		{"link", "set", ns.Tap, "up"},
		{"link", "set", ns.Bridge, "up"},
	}
	for _, s := range steps {
		if err := ip(append([]string{"-n", name}, s...)...); err != nil {
			ns.Close()
			return nil, err
		}
	}
	return ns, nil
}

// ip runs the ip tool.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Command returns a command that runs inside the namespace
// (ip netns exec). ctx kills it as exec.CommandContext does.
func (ns *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Exec runs fn on an OS thread that has entered the namespace, and returns
// its error. Sockets fn opens belong to the namespace for their whole life,
// so servers started by fn keep serving there from any goroutine; goroutines
// fn starts do not run in the namespace themselves.
func (ns *NetNS) Exec(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread returns to the pool only once it is back home; if
		// that fails it stays locked and exits with this goroutine.
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("qemu: netns %s: %w", ns.Name, err)
			return
		}
		defer home.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns.Name))
		if err != nil {
			restored = true
			errc <- fmt.Errorf("qemu: netns %s: %w", ns.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			restored = true
			errc <- fmt.Errorf("qemu: netns %s: setns: %w", ns.Name, err)
			return
		}
		var ferr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					ferr = fmt.Errorf("qemu: netns %s: panic: %v", ns.Name, r)
				}
			}()
			ferr = fn()
		}()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("qemu: netns %s: setns back: %w", ns.Name, err))
			return
		}
		restored = true
		errc <- ferr
	}()
	return <-errc
}

// Close deletes the tap, the bridge and the namespace. Processes still
// running inside keep the namespace alive until they exit; stop them first.
func (ns *NetNS) Close() error {
	var errs []error
	for _, dev := range append(append([]string{}, ns.taps...), ns.Tap, ns.Bridge) {
		// Absent if creation failed early; only the namespace matters.
		_ = ip("-n", ns.Name, "link", "del", dev)
	}
	if err := ip("netns", "del", ns.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
