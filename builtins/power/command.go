package power

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/runtime/lab"
)

// StatusKey is the power_command key of the status command.
const StatusKey = "status"

// DefaultCommandTimeout bounds one power command when the caller's
// context allows longer: a PDU client that hangs must not hold a stage.
const DefaultCommandTimeout = time.Minute

// Commands is the Backend of a device powered by commands: a PDU's client
// (pdudaemon's pduclient, lavapdu), LAVA's power_on_command,
// power_off_command and hard_reset_command. Each command runs without a
// shell, under the caller's context and at most Timeout; a non-zero exit is
// an infrastructure error carrying the tail of its stderr.
//
// Lines maps "on", "off", "reset", "cycle" and "status" to command lines.
// Reset and cycle are the same to an outlet: a missing one runs the other,
// else "off" then "on". The status command prints "on" or "off" (its first
// word, any case). A missing command is an error naming the device file
// and the key to add.
type Commands struct {
	Device string // device name, for errors
	File   string // device file, for errors
	argv   map[string][]string
	// Timeout bounds each command; default DefaultCommandTimeout.
	Timeout time.Duration
	// Emit records a "power" event per command (nil: none).
	Emit func(typ string, fields map[string]any)
}

// NewCommands returns the command backend of device name (its file is
// file) from its power_command lines, checking that every line splits.
func NewCommands(name, file string, lines map[string]string) (*Commands, error) {
	c := &Commands{Device: name, File: file, argv: map[string][]string{}}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := ParseAction(k); err != nil && k != StatusKey {
			return nil, fmt.Errorf("%s: power_command key %q is not one of on, off, reset, cycle, status", c.where(), k)
		}
		argv, err := lab.SplitCommand(lines[k])
		if err != nil {
			return nil, fmt.Errorf("%s: power_command[%q]: %w", c.where(), k, err)
		}
		c.argv[k] = argv
	}
	return c, nil
}

func (c *Commands) where() string {
	if c.File != "" {
		return fmt.Sprintf("device %s (%s)", c.Device, c.File)
	}
	return "device " + c.Device
}

// Power implements Backend.
func (c *Commands) Power(ctx context.Context, a Action) error {
	if _, err := ParseAction(string(a)); err != nil {
		return infra(err)
	}
	if argv, ok := c.argv[string(a)]; ok {
		_, err := c.run(ctx, string(a), argv)
		return err
	}
	if a == Reset || a == Cycle {
		other := Cycle
		if a == Cycle {
			other = Reset
		}
		if argv, ok := c.argv[string(other)]; ok {
			_, err := c.run(ctx, string(a), argv)
			return err
		}
		off, okOff := c.argv[string(Off)]
		on, okOn := c.argv[string(On)]
		if okOff && okOn {
			if _, err := c.run(ctx, string(a)+" (off)", off); err != nil {
				return err
			}
			_, err := c.run(ctx, string(a)+" (on)", on)
			return err
		}
		return labError(fmt.Errorf("power %s %s: %w: add power_command[%q] (or %q, or both \"off\" and \"on\") to %s",
			a, c.Device, ErrNoAction, string(a), string(other), c.fileOr()))
	}
	return labError(fmt.Errorf("power %s %s: %w: add power_command[%q] to %s", a, c.Device, ErrNoAction, string(a), c.fileOr()))
}

func (c *Commands) fileOr() string {
	if c.File != "" {
		return c.File
	}
	return "its device file"
}

// Status implements Backend: the status command's first word.
func (c *Commands) Status(ctx context.Context) (bool, error) {
	argv, ok := c.argv[StatusKey]
	if !ok {
		return false, labError(fmt.Errorf("power status %s: %w: it has no BMC and no power_command[%q] in %s",
			c.Device, ErrNoStatus, StatusKey, c.fileOr()))
	}
	out, err := c.run(ctx, StatusKey, argv)
	if err != nil {
		return false, err
	}
	word, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	word = strings.ToLower(strings.TrimSpace(strings.SplitN(word, "\n", 2)[0]))
	switch word {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, infra(fmt.Errorf("power status %s: %s printed %q, want \"on\" or \"off\"", c.Device, argv[0], tail(out, 200)))
}

// run runs one command under ctx, at most c.Timeout, and returns its
// stdout.
func (c *Commands) run(ctx context.Context, what string, argv []string) ([]byte, error) {
	to := c.Timeout
	if to <= 0 {
		to = DefaultCommandTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A PDU client that forked a child holding its pipes must not keep us
	// past the deadline.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	fields := map[string]any{"device": c.Device, "action": what, "backend": "command", "command": argv[0],
		"duration_ms": time.Since(start).Milliseconds()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		fields["exit_code"] = 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		fields["exit_code"] = ee.ExitCode()
	}
	if err != nil {
		fields["error"] = err.Error()
	}
	if c.Emit != nil {
		c.Emit("power", fields)
	}
	if err == nil {
		return stdout.Bytes(), nil
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return nil, infra(fmt.Errorf("power %s %s: %s did not finish in time: %w", what, c.Device, argv[0], cerr))
		}
		return nil, fmt.Errorf("power %s %s: %s: %w", what, c.Device, argv[0], cerr)
	}
	msg := ""
	if t := strings.TrimSpace(tail(stderr.Bytes(), 512)); t != "" {
		msg = "; stderr: " + t
	}
	return nil, infra(fmt.Errorf("power %s %s: run %s: %w%s", what, c.Device, argv[0], err, msg))
}

// tail returns the last n bytes of b, as a string.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
