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
)

// loadLab loads the lab directory named by --lab, $BASALT_LAB or ./lab. A
// missing default directory is an empty lab (built-in device types only).
//
// A lab directory named on the command line that does not exist is a usage
// error (exit 64). A lab file that does not load is a job error (exit 2):
// like the job file it is an input someone has to fix, a retry cannot fix
// it, and the bundle written for it names the file and line.
func loadLab(flag string) (*lab.Lab, error) {
	dir := labDir(flag)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if flag == "" && os.Getenv("BASALT_LAB") == "" {
			return lab.Load("")
		}
		return nil, usagef("lab directory %s does not exist", dir)
	}
	l, err := lab.Load(dir)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("lab %s: %w", dir, err))
	}
	return l, nil
}

// resolveDevice finds the device named by --device: "sim", a device file,
// or a name in the lab. A name the lab does not know or a device file that
// does not exist is a usage error; a device file that does not load is a
// lab error (class job).
func resolveDevice(labFlag, name string) (*lab.Lab, *lab.Device, error) {
	return lookupDevice(labFlag, name, true)
}

// configDevice is resolveDevice without reading any secret value, for
// check and device show.
func configDevice(labFlag, name string) (*lab.Device, error) {
	_, d, err := lookupDevice(labFlag, name, false)
	return d, err
}

// lookupDevice finds --device NAME|FILE|sim in the lab. A device the lab
// does not have is a usage error; one whose file (or secret, when
// readSecrets) is broken is a job error: a retry cannot fix either.
func lookupDevice(labFlag, name string, readSecrets bool) (*lab.Lab, *lab.Device, error) {
	l, err := loadLab(labFlag)
	if err != nil {
		if name == "sim" && !readSecrets {
			// check and device show on the built-in sim need no lab.
			return nil, lab.BuiltinSim("sim"), nil
		}
		return nil, nil, err
	}
	if name == "sim" {
		return l, lab.BuiltinSim("sim"), nil
	}
	if strings.HasSuffix(name, ".star") || strings.ContainsRune(name, filepath.Separator) {
		if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, usagef("--device %s: no such device file", name)
		}
	} else if _, ok := l.Devices[name]; !ok {
		_, err := l.Config(name) // its error lists the devices the lab has
		return nil, nil, &usageError{fmt.Errorf("--device: %w", err)}
	}
	get := l.Config
	if readSecrets {
		get = l.Device
	}
	d, err := get(name)
	if err != nil {
		return nil, nil, builtins.Job(err)
	}
	return l, d, nil
}

// checkDevice validates the device (or, without --device, the job's device
// type) for `basalt check`, and describes it.
func checkDevice(plan *interp.Plan, labFlag, device string) (string, error) {
	if device != "" {
		l, d, err := lookupDevice(labFlag, device, false)
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

// jobLabDir is the lab directory a job's load("@lab//...") reads from: the
// lab's directory if it exists, else "" (no lab; @lab// is refused).
func jobLabDir(flag string) string {
	d := labDir(flag)
	if info, err := os.Stat(d); err != nil || !info.IsDir() {
		return ""
	}
	return d
}
