package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/spell"
	"github.com/spf13/cobra"
)

func (a *app) deviceTypeCmd() *cobra.Command {
	var labFlag string
	dt := &cobra.Command{
		Use:     "device-type",
		Short:   "Show the lab's and the built-in device types",
		Example: "  basalt device-type show highbank",
	}
	dt.PersistentFlags().StringVar(&labFlag, "lab", "", "lab directory (default $BASALT_LAB, else ./lab)")
	show := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show a device type's settings and error patterns",
		Example: "  basalt device-type show highbank\n  basalt device-type show qemu --lab ./lab",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			l, err := loadLab(labFlag)
			if err != nil {
				return &exitError{code: exitCodeOf(err), err: err}
			}
			t := l.Types[args[0]]
			if t == nil {
				names := make([]string, 0, len(l.Types))
				for n := range l.Types {
					names = append(names, n)
				}
				names = sortedStrings(names)
				hint := ""
				if s := spell.Suggest(args[0], names); s != "" {
					hint = fmt.Sprintf("did you mean %s? ", s)
				}
				return usagef("device-type show: unknown device type %q (%sknown: %s)", args[0], hint, strings.Join(names, ", "))
			}
			return lab.FormatType(a.stdout, t)
		},
	}
	dt.AddCommand(show)
	return dt
}

// writeLabDoc prints the reference of the lab files from lab.Schema, the
// table that also checks them.
func writeLabDoc(w io.Writer) {
	fmt.Fprintf(w, "# lab\n\n%s\n\n", wrap("Lab files are Starlark: lab.star calls lab(), device-types/NAME.star calls device_type(), devices/NAME.star calls device(), each once, with keyword arguments. Unknown keys are errors; free-form facts go in facts = {...}.", 78))
	for _, f := range lab.Schema {
		names := make([]string, len(f.Keys))
		for i, k := range f.Keys {
			names[i] = k.Name
		}
		fmt.Fprintf(w, "%s(%s)\n", f.Name, strings.Join(names, ", "))
		for _, line := range strings.Split(wrap(f.Doc, 76), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
		fmt.Fprintln(w)
		for _, k := range f.Keys {
			head := fmt.Sprintf("    %s: %s", k.Name, k.Type)
			if k.Default != "" {
				head += " (default " + k.Default + ")"
			}
			fmt.Fprintln(w, head)
			for _, line := range strings.Split(wrap(k.Doc, 72), "\n") {
				fmt.Fprintf(w, "        %s\n", line)
			}
		}
		fmt.Fprintln(w)
	}
}
