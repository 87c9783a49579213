package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/pipeline"
	"github.com/spf13/cobra"
	"go.starlark.net/starlark"
)

// version is set with -ldflags "-X main.version=...".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error // already reported when nil
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// usageError is a bad command line: exit 64.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// app is the state shared by subcommands.
type app struct {
	ctx    context.Context
	abort  context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// redact masks every secret value the command learns (the lab's
	// passwords, a sim BMC's, text typed as secret) on stdout and stderr,
	// in the log, and in the run's bundle: one redactor for every output.
	redact *bundle.Redactor
	// Tests of Starlark libraries add the assert module to the job's names
	// and attach its reporter to every stage thread.
	extraModules starlark.StringDict
	onThread     func(*starlark.Thread)
}

func run(ctx, abort context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	red := bundle.NewRedactor()
	outw, errw := bundle.NewStreamWriter(red, stdout), bundle.NewStreamWriter(red, stderr)
	defer outw.Flush()
	defer errw.Flush()
	stdout, stderr = outw, errw
	a := &app{ctx: ctx, abort: abort, stdin: stdin, stdout: stdout, stderr: stderr, redact: red}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "basalt: %v\n", ee.err)
		}
		return ee.code
	}
	// Everything else cobra returns is a bad command line: one line, exit 64.
	msg := strings.SplitN(err.Error(), "\n", 2)[0]
	fmt.Fprintf(stderr, "basalt: %s (see 'basalt help')\n", msg)
	return pipeline.ExitUsage
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "basalt",
		Short: "Run hardware test jobs written in Starlark",
		Long: `basalt runs hardware test jobs written in Starlark against lab devices: it powers
them and picks their boot device over IPMI, serves their PXE boot, drives their serial
console, moves files to and from the target, and writes a result bundle for CI.

Exit codes: 0 all passed, 1 tests failed, 2 job or lab file error, 3 infrastructure
error (a retry may fix it), 4 device error, 5 canceled, 64 usage error (no bundle).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(a.runCmd(), a.checkCmd(), a.docCmd(), a.versionCmd(), a.powerCmd(), a.bootdevCmd(), a.consoleCmd(), a.releaseCmd(), a.shellCmd(), a.exportCmd(), a.fmtCmd(), a.lintCmd(), a.reportCmd(), a.diffCmd())
	a.addLabCommands(root)
	root.CompletionOptions.HiddenDefaultCmd = false
	return root
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print basalt's version",
		Example: "  basalt version",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			fmt.Fprintf(a.stdout, "basalt %s\n", versionString())
			return nil
		},
	}
}

func labDir(flag string) string {
	if flag != "" {
		return flag
	}
	if d := os.Getenv("BASALT_LAB"); d != "" {
		return d
	}
	return "lab"
}
