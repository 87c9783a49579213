package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/power"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/target"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/segment"
	"github.com/basalt-lab/basalt/runtime/sim"
)

// deviceTables are the modules that act on the device. cmd is the only
// place that wires their concrete backends.
func deviceTables() []*builtins.Table {
	return []*builtins.Table{power.Table, ipmi.Table, pxe.Table, sol.Table, target.Table}
}

// wire builds the backends of the run's device (lab.DeviceOf(env)) in lab
// lb (nil: every default) — for the built-in sim device, a node of its own
// first — and sets them with each module's SetBackend. The returned
// function releases them, in reverse order.
//
// ctx bounds the setup (a SIGINT while the console opens stops it), and
// the console opens by deadline, the job's; the servers and simulators run
// under life, which must outlive the cleanup functions — a SIGINT cancels
// ctx, and the cleanup's power off still needs the BMC, the PXE server and
// the VM.
func wire(ctx, life context.Context, deadline time.Time, env *builtins.Env, lb *lab.Lab, b *bundle.Bundle) (func(), error) {
	dev := lab.DeviceOf(env)
	if dev == nil {
		return nil, nil
	}
	var closers closeList
	release := closers.close
	emit := b.Emit
	log := env.Logger()

	// PXE: TFTP and HTTP from lab.star (loopback by default).
	pcfg := pxeConfig(lb, emit, log)
	// The segment of the job's own, when the device file names one: made
	// first, removed last, after everything that runs on it.
	seg, segDev, err := jobSegment(dev, &pcfg, emit)
	if err != nil {
		return release, err
	}
	if seg != nil {
		closers.add(func() {
			if err := seg.Close(); err != nil {
				log.Warn("remove the job's segment", "interface", seg.Interface, "err", err)
				emit("segment", map[string]any{"event": "remove_failed", "kind": seg.Kind, "interface": seg.Interface, "error": err.Error()})
				return
			}
			emit("segment", map[string]any{"event": "removed", "kind": seg.Kind, "interface": seg.Interface})
		})
		dev = segDev
		lab.SetDevice(env, dev)
		pcfg.SocketsIn = seg.Exec // every socket of the servers, on the segment
	}
	if pcfg.DHCP == "server" && dev.MAC != "" {
		pcfg.DHCPMACs = []string{dev.MAC}
	}
	srv := pxe.NewServer(pcfg)
	if err := srv.Start(life); err != nil {
		return release, builtins.Infra(fmt.Errorf("start PXE server: %w", err))
	}
	closers.add(func() { srv.Close() })
	pxe.SetBackend(env, srv)
	rest, err := wireDevice(ctx, life, deadline, env, lb, b, srv, srv, pcfg.CacheDir, seg)
	closers.add(rest)
	return release, err
}

// closeList is what to release, in reverse order of adding.
type closeList []func()

func (c *closeList) add(f func()) { *c = append(*c, f) }

func (c *closeList) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// pxeConfig is the PXE server's config from lab.star (loopback by default).
func pxeConfig(lb *lab.Lab, emit func(string, map[string]any), log *slog.Logger) pxe.Config {
	pcfg := pxe.Config{}
	if lb != nil {
		pcfg = pxe.LabConfig(lb)
	}
	if pcfg.CacheDir == "" {
		pcfg.CacheDir = lab.DefaultCacheDir()
	}
	pcfg.Emit, pcfg.Log = emit, log
	return pcfg
}

// recorder is what wiring a device needs of the bundle: the bundle's own
// for a single-device job, a role's (bundle.RoleRecorder: events with the
// role, console-ROLE.log) in a multi-device one.
type recorder interface {
	Emit(typ string, fields map[string]any)
	AddSecret(v string)
	Console() io.Writer
}

// wireDevice builds the backends of env's device but the PXE server,
// which the caller started (srv; pub is the pxe backend the device's
// target publishes through): the sim node or the qemu VM and its BMC, the
// IPMI client, the power backend, the console and the target. The
// returned function releases them, in reverse order, also on error.
func wireDevice(ctx, life context.Context, deadline time.Time, env *builtins.Env, lb *lab.Lab, b recorder,
	srv *pxe.Server, pub target.Publisher, cacheDir string, seg *segment.Segment) (func(), error) {
	dev := lab.DeviceOf(env)
	var closers closeList
	release := closers.close
	emit := b.Emit
	log := env.Logger()
	// A sim device without a BMC address (the built-in one, or a lab device
	// of type sim): a node of its own in this process, whose BMC is on a free
	// loopback port, booting from our TFTP server.
	if dev.Type.Is("sim") && dev.IPMI.Host == "" {
		scfg := sim.Config{Device: dev, TFTPAddr: srv.TFTPAddr(), Emit: emit, Log: log}
		if seg != nil {
			scfg.Segment = seg.NetNS // U-Boot's NIC on the segment, DHCP from basalt there
		}
		node, err := sim.Start(life, scfg)
		if err != nil {
			return release, builtins.Infra(err)
		}
		closers.add(func() { node.Close() })
		d := *dev
		d.IPMI = node.IPMI()
		d.IPMI.Keepalive = dev.IPMI.Keepalive // the device file's setting
		dev = &d
		lab.SetDevice(env, dev)
		b.AddSecret(dev.IPMI.Password.Value())
		// The node's shell listens on a loopback address of its own;
		// target.fetch picks its httpd's port there itself.
		env.Facts["ip"] = node.IP()
	}

	// A qemu device without a BMC address: basalt starts the VM and a BMC
	// in front of it.
	if dev.Type.Is("qemu") && dev.IPMI.Host == "" {
		ip, stop, err := qemuBMC(life, lb, dev, log, emit)
		if err != nil {
			return release, builtins.Infra(err)
		}
		closers.add(stop)
		d := *dev
		d.IPMI = ip
		dev = &d
		lab.SetDevice(env, dev)
		b.AddSecret(dev.IPMI.Password.Value())
	}

	// Every power action, through any backend, starts a console epoch;
	// the console exists from here on.
	var con *sol.Console
	mark := func() {
		if con != nil {
			con.Mark()
		}
	}
	// A device without a BMC address has no ipmi backend: ipmi.* then says
	// so instead of talking to a default address.
	var ctl ipmi.Controller
	if dev.IPMI.Host != "" {
		c := ipmi.NewClient(dev.Name, dev.IPMI, ipmi.Options{Emit: emit, Log: log})
		closers.add(func() { c.Close() })
		ctl = c
		ipmi.SetBackend(env, power.ControllerWithEpoch(c, mark))
	}
	pb, err := powerBackend(dev, ctl, emit)
	if err != nil {
		return release, err
	}
	power.SetBackend(env, power.WithEpoch(pb, mark))

	tr, err := consoleTransport(dev, emit, log)
	if err != nil {
		return release, err
	}
	var patterns []string
	if dev.Type != nil {
		patterns = dev.Type.ErrorPatterns
	}
	con = sol.New(tr, sol.Options{
		ErrorPatterns:   patterns,
		Capture:         b.Console(),
		Emit:            emit,
		AddSecret:       b.AddSecret,
		Secrets:         dev.Secrets(),
		Log:             log,
		BootloaderDelay: dev.BootloaderDelay(),
		TestShellDelay:  dev.TestShellDelay(),
	})
	openCtx, cancelOpen := context.WithDeadline(ctx, deadline)
	err = con.Start(openCtx)
	cancelOpen()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		// Canceled by a signal, not failed by the console.
		return release, &builtins.Error{Class: builtins.ClassCanceled, Err: fmt.Errorf("open console %s: %w", tr, context.Canceled)}
	case errors.Is(err, context.DeadlineExceeded):
		return release, builtins.Infra(fmt.Errorf("console %s not open by the job's deadline: %w", tr, err))
	default:
		return release, builtins.Infra(fmt.Errorf("console %s: %w", tr, err))
	}
	closers.add(func() { con.Close() })
	sol.SetBackend(env, con)

	var prompts []string
	if dev.Type != nil {
		prompts = []string{dev.Type.MasterPrompt, dev.Type.ShellPrompt}
	}
	tgt := target.New(target.Config{
		Console:   con,
		Publisher: pub,
		Prompt:    target.JoinPrompts(prompts...),
		CacheDir:  cacheDir,
		// On a segment, the device is reachable only from inside it.
		HTTPClient: segmentHTTPClient(seg),
		Emit:       emit,
		Log:        log,
	})
	tgt.SetFacts(env.Facts)
	target.SetBackend(env, tgt)
	return release, nil
}

// powerBackend chooses the device's power backend from its file: its
// power commands if it has any (reading the state from its BMC if it has
// one, else from its status command), else its BMC.
func powerBackend(dev *lab.Device, ctl ipmi.Controller, emit func(string, map[string]any)) (power.Backend, error) {
	if len(dev.PowerCommand) == 0 {
		if ctl == nil {
			return nil, builtins.Infra(fmt.Errorf("device %s: no power: it has neither ipmi_host nor power_command", dev.Name))
		}
		return power.BMC(ctl), nil
	}
	cmds, err := power.NewCommands(dev.Name, dev.File, dev.PowerCommand)
	if err != nil {
		return nil, builtins.Infra(err)
	}
	cmds.Emit = emit
	if ctl != nil {
		return power.Split(cmds, power.BMC(ctl)), nil
	}
	return cmds, nil
}

func consoleTransport(dev *lab.Device, emit func(string, map[string]any), log interface{}) (sol.Transport, error) {
	c := dev.Console
	switch c.Transport {
	case "", "sol":
		return ipmi.NewSOL(dev.Name, dev.IPMI, ipmi.SOLOptions{Emit: emit}), nil
	case "tcp":
		return &sol.TCP{Addr: c.Address}, nil
	case "command":
		argv := strings.Fields(c.Command)
		if len(argv) == 0 {
			return nil, builtins.Infra(fmt.Errorf("device %s: console command is empty", dev.Name))
		}
		return &sol.Command{Argv: argv}, nil
	}
	return nil, builtins.Infra(errors.New("device " + dev.Name + ": unknown console transport " + c.Transport))
}
