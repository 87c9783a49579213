package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/power"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/spf13/cobra"
)

func (a *app) powerCmd() *cobra.Command {
	var labFlag string
	var timeout, wait time.Duration
	c := &cobra.Command{
		Use:   "power DEVICE on|off|reset|cycle|status",
		Short: "Power a lab device on, off, reset or cycle it, or print its power state",
		Long: `power acts on a lab device through the backend a job's power module uses: its
power commands (power_command in its file, e.g. a PDU's pduclient) if it has them,
else its BMC; status comes from the BMC if it has one, else from its status command.
The device is locked for the duration, like a job's (--wait to wait for it). A device
held after a failure (run --hold-on-failure) is powered through the holding job.`,
		Example: `  basalt power highbank01 status
  basalt power foo reset --lab ./lab`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return a.power(labFlag, args[0], args[1], timeout, wait)
		},
	}
	c.Flags().StringVar(&labFlag, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")
	c.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	c.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for a busy device instead of failing at once")
	return c
}

func (a *app) power(labFlag, name, what string, timeout, wait time.Duration) error {
	var act power.Action
	if what != "status" {
		var err error
		if act, err = power.ParseAction(what); err != nil {
			return usagef("%v, or status", err)
		}
	}
	lb, dev, err := resolveDevice(labFlag, name)
	if err != nil {
		return &exitError{code: exitCodeOf(err), err: err}
	}
	fail := func(err error) error { return &exitError{code: exitCodeOf(err), err: err} }
	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()
	held, err := lockDevice(ctx, lb, dev, "basalt power "+what, wait)
	var busy *lab.BusyError
	if errors.As(err, &busy) {
		// A failed job held for debugging lends its power, as its console.
		if conn, derr := dialConsole(lb, dev); derr == nil {
			reply, rerr := request(conn, "power "+what)
			conn.Close()
			switch {
			case rerr == nil && strings.HasPrefix(reply, "ok"):
				if what == "status" {
					fmt.Fprintln(a.stdout, strings.TrimPrefix(reply, "ok "))
				}
				return nil
			case rerr == nil && strings.HasPrefix(reply, "error: "):
				return fail(builtins.Infra(fmt.Errorf("device %s, held by %s: %s", dev.Name, busy.Holder, strings.TrimPrefix(reply, "error: "))))
			}
		}
	}
	if err != nil {
		return fail(err)
	}
	defer held.Release()
	if dev.IPMI.Host == "" && len(dev.PowerCommand) == 0 {
		return fail(builtins.Infra(fmt.Errorf("device %s: no BMC address and no power_command: basalt starts its BMC only for a job (basalt run)", dev.Name)))
	}
	var ctl ipmi.Controller
	if dev.IPMI.Host != "" {
		c := ipmi.NewClient(dev.Name, dev.IPMI, ipmi.Options{})
		defer c.Close()
		ctl = c
	}
	b, err := powerBackend(dev, ctl, nil)
	if err != nil {
		return fail(err)
	}
	if what == "status" {
		on, err := b.Status(ctx)
		if err != nil {
			return fail(fmt.Errorf("power status: %w", err))
		}
		state := "off"
		if on {
			state = "on"
		}
		fmt.Fprintln(a.stdout, state)
		return nil
	}
	if err := b.Power(ctx, act); err != nil {
		return fail(fmt.Errorf("power %s: %w", act, err))
	}
	return nil
}

func (a *app) bootdevCmd() *cobra.Command {
	var labFlag string
	var timeout, wait time.Duration
	var o ipmi.BootOptions
	c := &cobra.Command{
		Use:   "bootdev DEVICE pxe|disk|bios|cdrom",
		Short: "Set a lab device's boot device through its BMC",
		Long: `bootdev sets the device's boot device through its BMC (IPMI Set System Boot
Options), for the next boot only unless --persistent. The device is locked for the
duration, like a job's (--wait to wait for it).`,
		Example: `  basalt bootdev highbank01 pxe
  basalt bootdev highbank01 disk --persistent`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return a.bootdev(labFlag, args[0], args[1], o, timeout, wait)
		},
	}
	c.Flags().StringVar(&labFlag, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")
	c.Flags().BoolVar(&o.Persistent, "persistent", false, "keep the setting for every later boot")
	c.Flags().BoolVar(&o.EFI, "efi", false, "ask for an EFI boot")
	c.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	c.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for a busy device instead of failing at once")
	return c
}

func (a *app) bootdev(labFlag, name, what string, o ipmi.BootOptions, timeout, wait time.Duration) error {
	d, err := ipmi.ParseDevice(what)
	if err != nil {
		return usagef("%v", err)
	}
	lb, dev, err := resolveDevice(labFlag, name)
	if err != nil {
		return &exitError{code: exitCodeOf(err), err: err}
	}
	fail := func(err error) error { return &exitError{code: exitCodeOf(err), err: err} }
	if dev.IPMI.Host == "" {
		return fail(builtins.Infra(fmt.Errorf("device %s: no BMC address (ipmi_host): the boot device is set through the BMC; basalt starts a sim or qemu BMC only for a job (basalt run)", dev.Name)))
	}
	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()
	held, err := lockDevice(ctx, lb, dev, "basalt bootdev "+what, wait)
	if err != nil {
		return fail(err)
	}
	defer held.Release()
	c := ipmi.NewClient(dev.Name, dev.IPMI, ipmi.Options{})
	defer c.Close()
	if err := c.SetBootDevice(ctx, d, o); err != nil {
		return fail(fmt.Errorf("set boot device %s: %w", d, err))
	}
	return nil
}
