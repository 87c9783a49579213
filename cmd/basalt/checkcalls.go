package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/lint"
	"github.com/basalt-lab/basalt/stdlib"
)

// checkCalls resolves the builtin calls of the job and of every file it
// loaded without running them (unknown members and keywords are errors
// with file:line), then, given a device, refuses what that device cannot
// do: ipmi.* without a BMC, pxe.serve without a MAC. It reads no secret.
func checkCalls(plan *interp.Plan, labFlag, device string) error {
	src, err := os.ReadFile(plan.File)
	if err != nil {
		return builtins.Job(fmt.Errorf("read job file: %w", err))
	}
	root, err := os.OpenRoot(plan.Dir)
	if err != nil {
		return builtins.Job(fmt.Errorf("open job directory: %w", err))
	}
	defer root.Close()
	source := func(name string) ([]byte, error) {
		if p, ok := strings.CutPrefix(name, interp.StdlibPrefix); ok {
			return fs.ReadFile(stdlib.FS, p)
		}
		return fs.ReadFile(root.FS(), filepath.ToSlash(filepath.Clean(strings.TrimPrefix(name, "./"))))
	}
	res, err := lint.Check(plan.File, src, source, tables(), interp.FileOptions)
	if err != nil {
		return builtins.Job(err)
	}
	if len(res.Problems) > 0 {
		return builtins.Job(errors.Join(res.Problems...))
	}
	if device == "" {
		return nil
	}
	d, err := configDevice(labFlag, device)
	if err != nil {
		return err
	}
	return builtins.Job(deviceUses(res.Uses, d))
}

// deviceUses returns an error for each builtin the job can reach that d
// cannot serve.
func deviceUses(uses []lint.Use, d *lab.Device) error {
	// A sim or qemu device without a BMC address gets one from basalt.
	noBMC := d.IPMI.Host == "" && !d.Type.Is("sim") && !d.Type.Is("qemu")
	file := d.File
	if file == "" {
		file = "its device file"
	}
	var errs []error
	seen := map[string]bool{}
	for _, u := range uses {
		var msg string
		switch {
		case noBMC && strings.HasPrefix(u.Builtin, "ipmi."):
			msg = fmt.Sprintf("%s needs a BMC, but device %s has no ipmi_host (set one in %s, or use power.* with its power commands)", u.Builtin, d.Name, file)
		case u.Builtin == "pxe.serve" && d.MAC == "" && !containsStr(u.Keywords, "mac"):
			msg = fmt.Sprintf("pxe.serve needs the device's MAC, but device %s has no mac (set mac in %s, or pass mac=)", d.Name, file)
		default:
			continue
		}
		where := u.From.String()
		if u.Pos != u.From {
			where += " (" + u.Builtin + " at " + u.Pos.String() + ")"
		}
		if line := where + ": " + msg; !seen[line] {
			seen[line] = true
			errs = append(errs, errors.New(line))
		}
	}
	return errors.Join(errs...)
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
