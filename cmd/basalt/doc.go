package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/spf13/cobra"
)

func (a *app) docCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doc [MODULE|stdlib|lab]",
		Short: "Print the reference of the Starlark builtins",
		Long: `doc prints the reference of the builtins that job files can call, generated from
the code that registers them. With MODULE (ipmi, pxe, sol, target, test, time, json,
struct, "declare" for job/stage/cleanup, "stdlib" for the embedded Starlark
libraries, or "lab" for the lab files' lab, device_type, device and secret) it
prints that module only.`,
		Example: "  basalt doc\n  basalt doc sol",
		Args:    cobra.MaximumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, t := range tables() {
				names = append(names, docName(t))
			}
			return append(names, "stdlib", "lab"), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 && args[0] == "stdlib" {
				return writeStdlibDoc(a.stdout)
			}
			if len(args) > 0 && args[0] == "lab" {
				writeLabDoc(a.stdout)
				return nil
			}
			for _, t := range tables() {
				if len(args) == 0 || args[0] == docName(t) {
					writeDoc(a.stdout, t)
					if len(args) > 0 {
						return nil
					}
				}
			}
			if len(args) == 0 {
				return writeStdlibDoc(a.stdout)
			}
			if len(args) > 0 {
				var names []string
				for _, t := range tables() {
					names = append(names, docName(t))
				}
				return usagef("doc: no module %q; modules: %s, stdlib, lab", args[0], strings.Join(names, ", "))
			}
			return nil
		},
	}
}

func docName(t *builtins.Table) string {
	if t.Name == "" {
		return "declare"
	}
	return t.Name
}

func writeDoc(w io.Writer, t *builtins.Table) {
	fmt.Fprintf(w, "# %s\n\n%s\n\n", docName(t), t.Doc)
	for _, b := range t.Members {
		name := b.Name
		if t.Name != "" {
			name = t.Name + "." + b.Name
		}
		if b.Fn != nil || b.Params != "" || b.Value == nil {
			fmt.Fprintf(w, "%s(%s)\n", name, b.Params)
		} else {
			fmt.Fprintf(w, "%s\n", name)
		}
		for _, line := range strings.Split(wrap(b.Doc, 76), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
		fmt.Fprintln(w)
	}
}

func wrap(s string, width int) string {
	var out, line strings.Builder
	for _, word := range strings.Fields(s) {
		if line.Len() > 0 && line.Len()+1+len(word) > width {
			out.WriteString(line.String() + "\n")
			line.Reset()
		}
		if line.Len() > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(word)
	}
	out.WriteString(line.String())
	return out.String()
}
