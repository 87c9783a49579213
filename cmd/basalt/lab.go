package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// loadLab loads the lab directory named by --lab, $BASALT_LAB or ./lab. A
// missing default directory is an empty lab (built-in device types only).
func loadLab(flag string) (*lab.Lab, error) {
	dir := labDir(flag)
	if flag == "" {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return lab.Load("")
		}
	}
	l, err := lab.Load(dir)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("lab %s: %w", dir, err))
	}
	return l, nil
}

// resolveDevice finds the device named by --device: "sim", a device file,
// or a name in the lab.
func resolveDevice(labFlag, name string) (*lab.Lab, *lab.Device, error) {
	l, err := loadLab(labFlag)
	if err != nil {
		return nil, nil, err
	}
	if name == "sim" {
		return l, lab.BuiltinSim("sim"), nil
	}
	d, err := l.Device(name)
	if err != nil {
		return nil, nil, builtins.Infra(err)
	}
	return l, d, nil
}

// checkDevice validates the device (or, without --device, the job's device
// type) for `basalt check`, and describes it.
func checkDevice(plan *interp.Plan, labFlag, device string) (string, error) {
	if device != "" {
		l, d, err := resolveDevice(labFlag, device)
		if err != nil {
			return "", err
		}
		if err := compatible(plan, l, d); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s (type %s)", d.Name, d.Type.Name), nil
	}
	if plan.Job.DeviceType == "" {
		return "", nil
	}
	l, err := loadLab(labFlag)
	if err != nil {
		return "", err
	}
	if _, ok := l.Types[plan.Job.DeviceType]; !ok {
		known := make([]string, 0, len(l.Types))
		for k := range l.Types {
			known = append(known, k)
		}
		return "", builtins.Job(fmt.Errorf("%s: unknown device type %q (known: %v)", plan.Job.Pos, plan.Job.DeviceType, sortedStrings(known)))
	}
	return "", nil
}

func completeDevices(labFlag string) []string {
	names := []string{"sim"}
	l, err := loadLab(labFlag)
	if err != nil {
		return names
	}
	for n := range l.Devices {
		names = append(names, n)
	}
	return names
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

var _ = filepath.Join
