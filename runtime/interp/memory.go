package interp

import (
	"context"
	"fmt"
	"runtime/metrics"
	"time"

	"github.com/basalt-lab/basalt/builtins"
)

// DefaultMemoryLimit bounds the heap of a job: what its Starlark values
// (and the runner) hold live. Starlark allocates strings and lists inside
// the interpreter, with no hook for a host to refuse one, and caps a single
// allocation at 1 GiB only; what a host can enforce is a watchdog that
// cancels the job when the heap grows past the limit.
const DefaultMemoryLimit = 256 << 20

// memoryPoll is how often the watchdog reads the heap size.
const memoryPoll = 20 * time.Millisecond

// WatchMemory polls the live heap until ctx ends or stop is called; when the
// heap exceeds limit it calls exceeded, once, with a job error naming the
// limit. A limit of 0 watches nothing. The heap counted is the whole
// process's (runtime/metrics' /memory/classes/heap/objects:bytes), which
// while a job runs is the job's values plus a few MB of the runner's own.
func WatchMemory(ctx context.Context, limit uint64, exceeded func(error)) (stop func()) {
	if limit == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(memoryPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return
			}
			if heap := sample[0].Value.Uint64(); heap > limit {
				exceeded(builtins.Job(fmt.Errorf("job memory limit of %d MiB exceeded (heap %d MiB; --max-memory)", limit>>20, heap>>20)))
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}
