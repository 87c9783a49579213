// Package bmcsim is the BMC of basalt's simulated node: go-ipmi's reference
// BMC server (RMCP+ over UDP, IPMI v2.0 §13) listening on loopback, with a
// chassis that drives a simulated [Node] and a serial port carried over SOL
// (IPMI v2.0 §15).
//
// It behaves like the BMCs of real boards where jobs notice:
//
//   - power: on, off, cycle (off then on), hard reset (only while on; a reset
//     of an off chassis fails with completion code D5h, "not supported in
//     present state"), soft (ACPI soft-off: the node powers off after
//     [Config.SoftOffDelay]);
//   - boot device: Set System Boot Options parameter 5 (IPMI v2.0 §28.12,
//     Table 28-14) with the boot flags valid bit and the persistent bit. A
//     next-boot-only setting is consumed — its valid bit cleared — the next
//     time the BMC powers on or resets the node; a persistent one stays;
//   - SOL: the serial port's output is carried to the one active SOL session
//     and keystrokes come back; while no session is active the output is
//     lost, as on a real serial line nobody listens to. [BMC.DropSOL] closes
//     the active session from the BMC side (console-drop faults);
//   - faults: [Config.Loss] drops that fraction of datagrams both ways, and
//     [BMC.SetLoss] changes it at run time (1 = a BMC that stops answering);
//     [Config.SessionTimeout] forgets sessions idle that long, as ipmi_sim
//     does after 30 s;
//   - a System Event Log (sel.go) and an SDR repository of threshold
//     sensors with readings (sdr.go, [Config.Sensors]), both answered as
//     OpenIPMI's ipmi_sim answers them.
//
// External clients such as ipmitool reach it with
//
//	ipmitool -I lanplus -H 127.0.0.1 -p PORT -U USER -P PASSWORD -C 3 chassis power status
//
// where PORT is [BMC.Addr] and USER/PASSWORD are [BMC.User] and [BMC.Password].
package bmcsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/types"
)

// BootDevice is where the node boots from.
type BootDevice string

// Boot devices. BootDefault means no override: the node's own boot order.
const (
	BootDefault BootDevice = ""
	BootPXE     BootDevice = "pxe"
	BootDisk    BootDevice = "disk"
	BootBIOS    BootDevice = "bios"
	BootCDROM   BootDevice = "cdrom"
)

// String returns the device name, "default" for BootDefault.
func (d BootDevice) String() string {
	if d == BootDefault {
		return "default"
	}
	return string(d)
}

// Node is the simulated machine behind the BMC. The BMC calls it with its
// own lock released; calls are serialised (one at a time, in order). ctx
// is the Chassis Control request's (or the BMC's, for the end of an ACPI
// soft-off); a method returns once the action has started, not when the
// node has booted.
//
// An error refuses the action, as a chassis that cannot power on makes a
// real BMC fail the command: the BMC answers the Chassis Control request
// with the completion code the error wraps (a types.CompletionCode, such
// as D5h, "not supported in present state"), else FFh, "unspecified
// error" (IPMI v2.0 Table 5-2) — what OpenIPMI's ipmi_sim answers when its
// chassis_control program fails (TestBMCRefusedPowerOnLikeIPMISim) — and
// the chassis keeps the power state and boot flags it had.
type Node interface {
	// PowerOn powers the node on; it boots from boot.
	PowerOn(ctx context.Context, boot BootDevice) error
	// PowerOff cuts the node's power.
	PowerOff(ctx context.Context) error
	// Reset restarts a running node, which boots from boot.
	Reset(ctx context.Context, boot BootDevice) error
}

// Config configures a BMC. Its zero value is usable.
type Config struct {
	// User and Password are the one administrator account. Defaults:
	// "admin" and a random password (read it back with [BMC.Password]).
	User     string
	Password string
	// Serial is the node's serial port as seen from the BMC: what the node
	// writes is read from it, SOL keystrokes are written to it. nil: the BMC
	// has no SOL.
	Serial io.ReadWriter
	// Node receives power and reset events. nil: a node that does nothing.
	Node Node
	// Loss is the fraction (0..1) of datagrams dropped in each direction.
	Loss float64
	// SOLLoss is the fraction (0..1) of SOL datagrams dropped in each
	// direction, on top of Loss.
	SOLLoss float64
	// SoftOffDelay is how long an ACPI soft-off takes. Default 200ms.
	SoftOffDelay time.Duration
	// SessionTimeout ends sessions that send nothing for this long (the
	// session inactivity timeout, IPMI v2.0 §6.12.15); their packets are
	// then ignored, without an answer. That is what OpenIPMI's ipmi_sim
	// does after 30 s (lanserv_ipmi.c: ipmi_lan_tick closes the session,
	// and handle_normal_session drops packets of an unknown session ID
	// unanswered); TestIPMISimForgetsIdleSession checks it. Like ipmi_sim's
	// (whose 1 s tick closes a session after 29–30 s), a session ends a
	// little before SessionTimeout: within its last evictScan. At least
	// go-ipmi's 3 s tolerance. Default 60s, the spec's value.
	SessionTimeout time.Duration
	// Sensors are the BMC's sensors, in its SDR repository (sdr.go).
	// nil: DefaultSensors; an empty list: none.
	Sensors []Sensor
	// Log receives debug records; nil discards them.
	Log *slog.Logger
}

// evictScan is how often a BMC with Config.SessionTimeout looks for
// silent sessions.
const evictScan = 250 * time.Millisecond

// serialBuffer bounds the node output the BMC holds for the console; beyond
// it the BMC stops reading the serial port (flow control), so nothing is
// dropped.
const serialBuffer = 64 << 10

// BMC is a simulated BMC. Create it with [New], then [BMC.Start] it.
type BMC struct {
	sel     sel     // the System Event Log (sel.go)
	sensors sensors // the sensors of the SDR repository (sdr.go)
	cfg     Config
	log     *slog.Logger
	core    *bmc.BMC
	hal     *simHAL

	mu      sync.Mutex
	on      bool
	flags   types.BootOptionParam_BootFlags
	softOff *time.Timer // pending ACPI soft-off

	nodeMu sync.Mutex // serialises calls into the Node

	conn   *lossyConn
	srv    *server.Server
	cancel context.CancelFunc
	done   chan struct{}

	console *serialConsole
}

// New returns a BMC for cfg. It does not listen until Start.
func New(cfg Config) *BMC {
	if cfg.User == "" {
		cfg.User = "admin"
	}
	if cfg.Password == "" {
		var p [8]byte
		_, _ = rand.Read(p[:])
		cfg.Password = hex.EncodeToString(p[:])
	}
	if cfg.SoftOffDelay <= 0 {
		cfg.SoftOffDelay = 200 * time.Millisecond
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &BMC{cfg: cfg, log: log}
	b.hal = &simHAL{HAL: mock.New(), bmc: b}
	if cfg.Serial != nil {
		b.console = newSerialConsole(cfg.Serial)
		b.hal.console = b.console
	}
	return b
}

// User returns the administrator's user name.
func (b *BMC) User() string { return b.cfg.User }

// Password returns the administrator's password.
func (b *BMC) Password() string { return b.cfg.Password }

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves until
// ctx ends or Close is called.
func (b *BMC) Start(ctx context.Context, addr string) error {
	if b.srv != nil {
		return errors.New("bmcsim: already started")
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("bmcsim: resolve %q: %w", addr, err)
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("bmcsim: listen: %w", err)
	}
	b.conn = newLossyConn(uc, b.cfg.Loss)
	b.conn.setSOLLoss(b.cfg.SOLLoss)

	var guid [16]byte
	copy(guid[:], "basalt-bmcsim\x00\x00\x00")
	core := bmc.New(bmc.DeviceInfo{
		DeviceID:       0x20,
		DeviceRevision: 1,
		FirmwareMajor:  1,
		IPMIVersion:    0x20,
		ManufacturerID: 0x0f3f, // arbitrary; not a registered IANA number of a vendor we mimic
		ProductID:      0x0001,
		// Table 20-2: a chassis device with a SEL, an SDR repository and
		// sensors (sel.go, sdr.go), as ipmi_sim's MC says of itself.
		AdditionalDeviceSupport: 0x87,
	}, guid, b.hal, bmc.WithClock(clock.Real))
	// The reference store holds four sessions; basalt's controller, its
	// SOL console and an operator's ipmitool fit, with room for sessions
	// orphaned by datagram loss until the 60 s inactivity eviction.
	opts := []bmc.SessionStoreOption{bmc.WithMaxSessions(16)}
	if d := b.cfg.SessionTimeout; d > 0 {
		// go-ipmi evicts past timeout + its ±3 s tolerance (IPMI v1.5
		// Table 6-7), scanning every 3 s; with our own scan every
		// evictScan the session ends within (d-evictScan, d].
		opts = append(opts, bmc.WithInactivityTimeout(max(d-bmc.DefaultInactivityTimeoutTolerance-evictScan, 0)))
	}
	core.Sessions = bmc.NewSessionStoreWithOptions(clock.Real, opts...)
	core.Sessions.SetOnRemove(core.SOL.DeactivateBySession)
	// SOL configuration (IPMI v2.0 Table 26-5). Parameter 3: send what the
	// node prints after 5 ms (one unit, the least the spec allows) instead
	// of go-ipmi's 50 ms, as "ipmitool sol set character-accumulate-level 1"
	// makes a real BMC do. Parameter 4: retransmit an unacknowledged packet
	// 4 times, 1 s apart, as OpenIPMI's ipmi_sim does (lanserv/sol.c,
	// MAX_SOL_RESENDS and its 1 s sol_timeout); like any BMC it then gives
	// the packet up and says so (status bit 3).
	core.SOL.Config().SetParam(3, []byte{1, bmc.SOLMaxPayloadChars})
	core.SOL.Config().SetParam(4, []byte{4, 100})
	user, err := core.Users.Add(2, b.cfg.User)
	if err != nil {
		uc.Close()
		return fmt.Errorf("bmcsim: add user: %w", err)
	}
	// Add returns the stored user; mutating it is safe before serving.
	user.SetPassword([]byte(b.cfg.Password))
	user.Enabled = true
	user.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}
	b.core = core
	list := b.cfg.Sensors
	if list == nil {
		list = DefaultSensors
	}
	if err := b.sensors.load(ctx, b, list); err != nil {
		uc.Close()
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	b.cancel = cancel
	// go-ipmi's handlers, a System Event Log (sel.go) and sensor
	// readings (sdr.go).
	reg := handlers.NewRegistry()
	handlers.RegisterAllHandlers(reg)
	b.sel.register(reg)
	b.sensors.register(reg)
	b.srv = server.NewServer(core, b.conn, server.WithHandlerRegistry(reg))
	b.done = make(chan struct{})
	go func() {
		defer close(b.done)
		if err := b.srv.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
			b.log.Debug("bmcsim: serve ended", "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { _ = b.srv.Close() })
	if b.cfg.SessionTimeout > 0 {
		go func() {
			t := time.NewTicker(evictScan)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					core.Sessions.EvictExpired()
				}
			}
		}()
	}
	b.log.Debug("bmcsim: listening", "addr", b.Addr().String(), "user", b.cfg.User)
	return nil
}

// Addr returns the UDP address the BMC listens on, nil before Start.
func (b *BMC) Addr() *net.UDPAddr {
	if b.conn == nil {
		return nil
	}
	return b.conn.LocalAddr().(*net.UDPAddr)
}

// IPMI returns the lab description of this BMC (host, port, user, password;
// cipher suites 17 then 3; short timeouts suited to loopback).
func (b *BMC) IPMI() lab.IPMI {
	a := b.Addr()
	if a == nil {
		return lab.IPMI{}
	}
	return lab.IPMI{
		Host:         a.IP.String(),
		Port:         a.Port,
		User:         b.cfg.User,
		Password:     lab.NewSecret("BASALT_SIM_BMC_PASSWORD", b.cfg.Password),
		CipherSuites: []int{17, 3},
		Timeout:      500 * time.Millisecond,
		Retries:      4,
	}
}

// SetLoss changes the fraction of datagrams dropped; 1 makes the BMC stop
// answering, 0 heals it.
func (b *BMC) SetLoss(f float64) {
	if b.conn != nil {
		b.conn.setLoss(f)
	} else {
		b.cfg.Loss = f
	}
}

// PowerState reports whether the node is powered on.
func (b *BMC) PowerState() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.on
}

// NodeOff records that the node turned itself off (poweroff or halt in its
// OS), as a BMC sees the chassis lose power. The Node is not called.
func (b *BMC) NodeOff() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = false
}

// BootDevice returns the boot device the node will use at its next boot
// (BootDefault when no valid override is set) and whether the setting is
// persistent.
func (b *BMC) BootDevice() (dev BootDevice, persistent bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.flags.BootFlagsValid {
		return BootDefault, false
	}
	return deviceOf(b.flags.BootDeviceSelector), b.flags.Persist
}

// BootEFI reports whether the valid boot override asks for an EFI boot.
func (b *BMC) BootEFI() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flags.BootFlagsValid && b.flags.BIOSBootType == types.BIOSBootTypeEFI
}

// DropSOL closes the active SOL session from the BMC side, as a BMC does
// when another console takes over or its firmware hiccups. The remote
// console sees the SOL "deactivating" status (IPMI v2.0 Table 15-2) or, if
// that packet is lost, no answer at all. It is a no-op without a session.
func (b *BMC) DropSOL() {
	if b.core != nil {
		b.core.SOL.CloseAll()
	}
}

// SOLActive reports whether a SOL session is active.
func (b *BMC) SOLActive() bool {
	if b.core == nil {
		return false
	}
	_, active, _ := b.core.SOL.ActivationStatus()
	return active != 0
}

// Close stops the BMC. The node keeps its power state.
func (b *BMC) Close() error {
	b.mu.Lock()
	if b.softOff != nil {
		b.softOff.Stop()
		b.softOff = nil
	}
	b.mu.Unlock()
	if b.srv == nil {
		return nil
	}
	b.cancel()
	err := b.srv.Close()
	<-b.done
	if b.console != nil {
		b.console.close()
	}
	return err
}

// deviceOf maps a boot device selector (IPMI v2.0 Table 28-14, parameter 5,
// data 2 [5:2]) to a BootDevice.
func deviceOf(s types.BootDeviceSelector) BootDevice {
	switch s {
	case types.BootDeviceSelectorForcePXE:
		return BootPXE
	case types.BootDeviceSelectorForceHardDrive, types.BootDeviceSelectorForceHardDriveSafe,
		types.BootDeviceSelectorForceRemoteHardDrive:
		return BootDisk
	case types.BootDeviceSelectorForceBIOSSetup:
		return BootBIOS
	case types.BootDeviceSelectorForceCDROM, types.BootDeviceSelectorForceRemoteCDROM:
		return BootCDROM
	}
	return BootDefault
}

// takeBootLocked returns the device for a boot starting now and consumes a
// next-boot-only override: the BIOS clears the valid bit once it has acted
// on the flags (IPMI v2.0 §28.12, "boot flags valid" note). b.mu held.
func (b *BMC) takeBootLocked() BootDevice {
	if !b.flags.BootFlagsValid {
		return BootDefault
	}
	dev := deviceOf(b.flags.BootDeviceSelector)
	if !b.flags.Persist {
		b.flags.BootFlagsValid = false
	}
	return dev
}

// node calls f on the node, serialised and outside b.mu.
func (b *BMC) node(f func(n Node) error) error {
	if b.cfg.Node == nil {
		return nil
	}
	b.nodeMu.Lock()
	defer b.nodeMu.Unlock()
	return f(b.cfg.Node)
}

func (b *BMC) cancelSoftOffLocked() {
	if b.softOff != nil {
		b.softOff.Stop()
		b.softOff = nil
	}
}

func (b *BMC) powerOn(ctx context.Context) error {
	b.mu.Lock()
	b.cancelSoftOffLocked()
	if b.on {
		b.mu.Unlock()
		return nil
	}
	b.on = true
	flags := b.flags
	boot := b.takeBootLocked()
	b.mu.Unlock()
	b.log.Debug("bmcsim: power on", "boot", boot.String())
	err := b.node(func(n Node) error { return n.PowerOn(ctx, boot) })
	if err != nil {
		// Nothing booted: the chassis stays off and a next-boot-only
		// override stays for the next try.
		b.mu.Lock()
		b.on = false
		b.flags = flags
		b.mu.Unlock()
		b.log.Debug("bmcsim: node refused power on", "err", err)
		return fmt.Errorf("power on: %w", err)
	}
	return nil
}

func (b *BMC) powerOff(ctx context.Context) error {
	b.mu.Lock()
	b.cancelSoftOffLocked()
	if !b.on {
		b.mu.Unlock()
		return nil
	}
	b.on = false
	b.mu.Unlock()
	b.log.Debug("bmcsim: power off")
	err := b.node(func(n Node) error { return n.PowerOff(ctx) })
	if err != nil {
		b.mu.Lock()
		b.on = true
		b.mu.Unlock()
		b.log.Debug("bmcsim: node refused power off", "err", err)
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}

// errNotInPresentState is what a reset of an off chassis returns: completion
// code D5h (IPMI v2.0 Table 5-2).
var errNotInPresentState = types.CodeNotSupported

func (b *BMC) reset(ctx context.Context) error {
	b.mu.Lock()
	if !b.on {
		b.mu.Unlock()
		return errNotInPresentState
	}
	b.cancelSoftOffLocked()
	flags := b.flags
	boot := b.takeBootLocked()
	b.mu.Unlock()
	b.log.Debug("bmcsim: reset", "boot", boot.String())
	if err := b.node(func(n Node) error { return n.Reset(ctx, boot) }); err != nil {
		b.mu.Lock()
		b.flags = flags
		b.mu.Unlock()
		b.log.Debug("bmcsim: node refused reset", "err", err)
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

func (b *BMC) cycle(ctx context.Context) error {
	// A power cycle of an off chassis powers it on, as most BMCs do.
	if err := b.powerOff(ctx); err != nil {
		return err
	}
	return b.powerOn(ctx)
}

func (b *BMC) soft() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.on || b.softOff != nil {
		return
	}
	b.log.Debug("bmcsim: soft off requested")
	var t *time.Timer
	t = time.AfterFunc(b.cfg.SoftOffDelay, func() {
		b.mu.Lock()
		if b.softOff != t {
			b.mu.Unlock()
			return
		}
		b.softOff = nil
		b.mu.Unlock()
		// The OS has shut down; nobody waits on a request for this.
		if err := b.powerOff(context.Background()); err != nil {
			b.log.Warn("bmcsim: soft off", "err", err)
		}
	})
	b.softOff = t
}

func (b *BMC) setBootFlags(f *types.BootOptionParam_BootFlags) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flags = *f
	b.log.Debug("bmcsim: boot flags", "valid", f.BootFlagsValid, "persistent", f.Persist,
		"device", deviceOf(f.BootDeviceSelector).String(), "efi", bool(f.BIOSBootType))
}

func (b *BMC) bootFlags() *types.BootOptionParam_BootFlags {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.flags
	return &f
}

// simHAL is go-ipmi's in-memory HAL with our chassis and console.
type simHAL struct {
	*mock.HAL
	bmc     *BMC
	console hal.ConsoleHAL
}

func (h *simHAL) Chassis() hal.ChassisHAL { return (*chassis)(h.bmc) }

func (h *simHAL) Console() hal.ConsoleHAL {
	if h.console == nil {
		return nil // a typed nil would make SOL look available
	}
	return h.console
}

// chassis implements hal.ChassisHAL on the BMC's power state machine.
type chassis BMC

func (c *chassis) b() *BMC { return (*BMC)(c) }

func (c *chassis) PowerState(context.Context) (bool, error) { return c.b().PowerState(), nil }

// SetPower, PowerCycle and ColdReset return the node's refusal: go-ipmi's
// Chassis Control handler answers with the completion code it wraps, FFh
// without one.
func (c *chassis) SetPower(ctx context.Context, on bool) error {
	if on {
		return c.b().powerOn(ctx)
	}
	return c.b().powerOff(ctx)
}

func (c *chassis) PowerCycle(ctx context.Context) error { return c.b().cycle(ctx) }
func (c *chassis) ColdReset(ctx context.Context) error  { return c.b().reset(ctx) }

// WarmReset is what go-ipmi's handler calls for Chassis Control 05h, "soft
// shutdown via ACPI overtemp emulation" (IPMI v2.0 Table 28-4).
func (c *chassis) WarmReset(context.Context) error {
	c.b().soft()
	return nil
}

func (c *chassis) Identify(context.Context, uint8) error        { return nil }
func (c *chassis) IntrusionState(context.Context) (bool, error) { return false, nil }

func (c *chassis) SetBootFlags(_ context.Context, f *types.BootOptionParam_BootFlags) error {
	if f == nil {
		return hal.ErrNotSupported
	}
	c.b().setBootFlags(f)
	return nil
}

func (c *chassis) GetBootFlags(context.Context) (*types.BootOptionParam_BootFlags, error) {
	return c.b().bootFlags(), nil
}

func (c *chassis) SetBootInfoAcknowledge(context.Context, *types.BootOptionParam_BootInfoAcknowledge) error {
	return nil
}

func (c *chassis) GetBootInfoAcknowledge(context.Context) (*types.BootOptionParam_BootInfoAcknowledge, error) {
	return &types.BootOptionParam_BootInfoAcknowledge{}, nil
}
