package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/target"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/sim"
)

// deviceTables are the modules that act on the device. cmd is the only
// place that wires their concrete backends.
func deviceTables() []*builtins.Table {
	return []*builtins.Table{ipmi.Table, pxe.Table, sol.Table, target.Table}
}

// wire builds the backends of env.Device — for the built-in sim device, a
// node of its own first — and registers them in env.Backends. The returned
// function releases them, in reverse order.
func wire(ctx context.Context, env *builtins.Env, b *bundle.Bundle) (func(), error) {
	dev := env.Device
	if dev == nil {
		return nil, nil
	}
	var closers []func()
	release := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	emit := b.Emit
	log := env.Logger()

	// PXE: TFTP and HTTP from lab.star (loopback by default).
	pcfg := pxe.Config{}
	if env.Lab != nil {
		pcfg = pxe.LabConfig(env.Lab)
	}
	if pcfg.CacheDir == "" {
		pcfg.CacheDir = lab.DefaultCacheDir()
	}
	pcfg.Emit, pcfg.Log = emit, log
	srv := pxe.NewServer(pcfg)
	if err := srv.Start(ctx); err != nil {
		return release, builtins.Infra(fmt.Errorf("start PXE server: %w", err))
	}
	closers = append(closers, func() { srv.Close() })
	env.Backends["pxe"] = srv

	// A sim device without a BMC address (the built-in one, or a lab device
	// of type sim): a node of its own in this process, whose BMC is on a free
	// loopback port, booting from our TFTP server.
	if dev.Type != nil && dev.Type.Name == "sim" && dev.IPMI.Host == "" {
		node, err := sim.Start(ctx, sim.Config{Device: dev, TFTPAddr: srv.TFTPAddr(), Emit: emit, Log: log})
		if err != nil {
			return release, builtins.Infra(err)
		}
		closers = append(closers, func() { node.Close() })
		d := *dev
		d.IPMI = node.IPMI()
		dev = &d
		env.Device = dev
		b.AddSecret(dev.IPMI.Password.Value())
		// The node's shell listens on a loopback address of its own;
		// target.fetch picks its httpd's port there itself.
		env.Facts["ip"] = node.IP()
	}

	// A qemu device without a BMC address: basalt starts the VM and a BMC
	// in front of it.
	if dev.Type != nil && dev.Type.Name == "qemu" && dev.IPMI.Host == "" {
		ip, stop, err := qemuBMC(ctx, env.Lab, dev, log, emit)
		if err != nil {
			return release, builtins.Infra(err)
		}
		closers = append(closers, stop)
		d := *dev
		d.IPMI = ip
		dev = &d
		env.Device = dev
		b.AddSecret(dev.IPMI.Password.Value())
	}

	ctl := ipmi.NewClient(dev.Name, dev.IPMI, ipmi.Options{Emit: emit, Log: log})
	closers = append(closers, func() { ctl.Close() })
	env.Backends["ipmi"] = ctl

	tr, err := consoleTransport(dev, emit, log)
	if err != nil {
		return release, err
	}
	var patterns []string
	if dev.Type != nil {
		patterns = dev.Type.ErrorPatterns
	}
	con := sol.New(tr, sol.Options{
		ErrorPatterns:   patterns,
		Capture:         b.Console(),
		Emit:            emit,
		AddSecret:       b.AddSecret,
		Log:             log,
		BootloaderDelay: dev.BootloaderDelay(),
		TestShellDelay:  dev.TestShellDelay(),
	})
	if err := con.Start(ctx); err != nil {
		return release, builtins.Infra(fmt.Errorf("console %s: %w", tr, err))
	}
	closers = append(closers, func() { con.Close() })
	env.Backends["sol"] = con

	var prompts []string
	if dev.Type != nil {
		prompts = []string{dev.Type.MasterPrompt, dev.Type.ShellPrompt}
	}
	tgt := target.New(target.Config{
		Console:   con,
		Publisher: srv,
		Prompt:    target.JoinPrompts(prompts...),
		CacheDir:  pcfg.CacheDir,
		Emit:      emit,
		Log:       log,
	})
	tgt.SetFacts(env.Facts)
	env.Backends["target"] = tgt
	return release, nil
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
