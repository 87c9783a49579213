package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/spf13/cobra"
)

// deviceStateCmd is `device offline NAME --why` (offline) or `device
// online NAME`: LAVA's maintenance mode. Taking a device offline does not
// stop the job that holds it; the next job is refused.
func (a *app) deviceStateCmd(labFlag *string, offline bool) *cobra.Command {
	var why string
	c := &cobra.Command{
		Use:     "online NAME",
		Short:   "Bring a device back online (its health stays as its last health check left it)",
		Example: "  basalt device online highbank01",
		Args:    cobra.ExactArgs(1),
	}
	if offline {
		c.Use = "offline NAME --why REASON"
		c.Short = "Take a device offline: every job is refused, with the reason, until it is online again"
		c.Example = `  basalt device offline highbank01 --why "PSU replaced, waiting for a new one"`
		c.Flags().StringVar(&why, "why", "", "the reason, shown to the jobs refused and by device list (required)")
	}
	c.RunE = func(c *cobra.Command, args []string) error {
		if offline && strings.TrimSpace(why) == "" {
			return usagef("device offline %s: say why with --why \"...\"", args[0])
		}
		// The device must be the lab's; its secrets are not needed.
		if _, err := configDevice(*labFlag, args[0]); err != nil {
			return &exitError{code: exitCodeOf(err), err: err}
		}
		l, err := loadLab(*labFlag)
		if err != nil {
			return &exitError{code: exitCodeOf(err), err: err}
		}
		st, err := lab.UpdateState(l.LockDir, args[0], func(s *lab.State) {
			s.Offline, s.Reason, s.Since = offline, why, time.Now().UTC().Truncate(time.Second)
			if !offline {
				s.Reason, s.Since = "", time.Time{}
			}
		})
		if err != nil {
			return &exitError{code: 3, err: err}
		}
		fmt.Fprintf(a.stdout, "%s is %s\n", args[0], st.Word())
		return nil
	}
	return c
}
