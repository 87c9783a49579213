// Command basalt runs hardware test jobs written in Starlark: one static
// binary that declares a job (job, stage, cleanup), locks a lab device,
// drives it through its BMC, PXE server, serial console and shell, and
// writes a result bundle (result.json, events.jsonl, console.log,
// junit.xml, artifacts). README.md is the user's guide.
//
// # Wiring
//
// cmd/basalt is the only package that wires concrete backends. The
// builtins packages (ipmi, power, pxe, sol, target, test) each define a
// Starlark module and the small interface it drives; runtime/interp,
// runtime/pipeline and runtime/bundle know nothing of IPMI, TFTP or
// serial lines. wire.go builds, for the job's device, the go-ipmi client,
// the power backend (power commands or the BMC), the PXE server (TFTP and
// HTTP), the console (SOL, a command under a pty, TCP, or the sim's line)
// and the target shell on top of it, and registers them in the builtins'
// Env; for the built-in sim device it first starts a node of its own
// (runtime/sim), and for a qemu device without a BMC a VM behind go-ipmi's
// BMC (wire_qemu.go). Everything it starts runs under a context that
// outlives the job's, so that cleanup can still power the device off after
// a SIGINT.
//
// # Subcommands
//
// One file per subcommand, each returning a *cobra.Command:
//
//	run JOB.star       run a job and write its bundle (run.go)
//	check JOB.star     validate a job and print its plan, touching nothing (check.go)
//	doc [MODULE]       the builtins' reference, generated from their tables (doc.go)
//	fmt, lint FILE|DIR format and check .star files with buildtools (fmt.go)
//	device, device-type, sim, initrd
//	                   the lab's devices and types, a standalone sim node,
//	                   master images (labcmd.go, devicetype.go)
//	power DEVICE OP    the device's power backend, the device locked (power.go)
//	version
//
// Main handles signals: the first SIGINT or SIGTERM cancels the job and
// its cleanup still runs; a second one aborts the cleanup. Secrets are
// redacted on stdout and stderr by one redactor shared with the bundle.
//
// # Exit codes
//
//	0   pass
//	1   tests failed
//	2   job error (bad job file, failed builtin call, stage timeout)
//	3   infrastructure error (the dispatcher's servers, the lab)
//	4   device error (BMC, console, the target's shell)
//	5   canceled
//	64  usage (a bad command line)
//
// as runtime/pipeline's Exit constants define them.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Main runs basalt with signal handling: the first SIGINT or SIGTERM cancels
// the job (cleanup still runs); a second one aborts the cleanup.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abort, abortCleanup := context.WithCancel(context.Background())
	defer abortCleanup()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "basalt: %s: canceling the job; cleanup runs (interrupt again to abort cleanup)\n", s)
			cancel()
		case <-abort.Done():
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "basalt: %s again: aborting cleanup\n", s)
			abortCleanup()
		case <-abort.Done():
		}
	}()
	return run(ctx, abort, args, stdin, stdout, stderr)
}
