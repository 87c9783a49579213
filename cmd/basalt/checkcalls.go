package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/lint"
	"github.com/basalt-lab/basalt/stdlib"
)

// lintJob resolves the builtin calls of the job file and of every file it
// loads without running them: unknown members and keywords are errors with
// file:line and a did-you-mean. It runs before the declare phase, so that
// a misspelled stage(retrys=) gets its did-you-mean too. A file it cannot
// parse or load is left for Declare to report (nil result, nil error).
func lintJob(file, labDir string) (*lint.Result, error) {
	src, err := os.ReadFile(file)
	if err != nil || interp.CheckSource(file, src) != nil {
		return nil, nil // Declare reports it
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, nil
	}
	root, err := os.OpenRoot(filepath.Dir(abs))
	if err != nil {
		return nil, nil
	}
	defer root.Close()
	var labRoot *os.Root
	if labDir != "" {
		if labRoot, err = os.OpenRoot(filepath.Join(labDir, "lib")); err == nil {
			defer labRoot.Close()
		}
	}
	// A bounded wait: Declare fetches (and reports) a library this misses.
	lctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	libs, closeLibs := interp.Libraries(lctx, filepath.Dir(abs), labCacheDir(labDir))
	defer closeLibs()
	source := func(name string) ([]byte, error) {
		if p, ok := strings.CutPrefix(name, interp.StdlibPrefix); ok {
			return fs.ReadFile(stdlib.FS, p)
		}
		if data, ok, err := libs(name); ok { // a libraries.star library
			if err == nil {
				err = interp.CheckSource(name, data)
			}
			return data, err
		}
		var data []byte
		var err error
		if p, ok := strings.CutPrefix(name, interp.LabPrefix); ok {
			if labRoot == nil {
				return nil, fmt.Errorf("no lab lib/ directory for %s", name)
			}
			_, data, err = interp.ReadConfined(labRoot, p, "the lab's lib/ directory")
		} else {
			_, data, err = interp.ReadConfined(root, name, "the job's directory")
		}
		if err == nil {
			err = interp.CheckSource(name, data)
		}
		return data, err
	}
	res, err := lint.Check(file, src, source, tables(), interp.FileOptions)
	if err != nil {
		return nil, nil
	}
	if len(res.Problems) > 0 {
		return nil, builtins.Job(errors.Join(res.Problems...))
	}
	return res, nil
}

// labCacheDir is the artifact cache of the lab at dir (lab.star's
// cache_dir, which test.run_definition's repositories use too), "" for
// the default: libraries.star's libraries are fetched there.
func labCacheDir(dir string) string {
	if dir == "" {
		return ""
	}
	l, err := lab.Load(dir)
	if err != nil {
		return ""
	}
	return l.CacheDir
}

// checkUses refuses, given a device, what the job reaches and the device
// cannot do: ipmi.* without a BMC, pxe.serve without a MAC. It reads no
// secret.
func checkUses(res *lint.Result, labFlag, device string) error {
	if res == nil || device == "" {
		return nil
	}
	d, err := configDevice(labFlag, device)
	if err != nil {
		return err
	}
	if err := deviceUses(res.Uses, d); err != nil {
		return builtins.Job(err)
	}
	return nil
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
