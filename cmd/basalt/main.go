// Command basalt runs hardware test jobs written in Starlark. See README.md
// and `basalt help`.
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
