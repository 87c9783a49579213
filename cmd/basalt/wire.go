package main

import (
	"context"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
)

// deviceTables are the modules that act on the device. cmd is the only
// place that wires their concrete backends.
func deviceTables() []*builtins.Table {
	return nil
}

// wire builds the backends of env.Device and registers them in
// env.Backends. The returned function releases them.
func wire(ctx context.Context, env *builtins.Env, b *bundle.Bundle) (func(), error) {
	if env.Device == nil {
		return nil, nil
	}
	return nil, nil
}
