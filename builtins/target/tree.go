package target

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
)

// PushFile copies the dispatcher file p, one the caller made (not a
// job's path: no confinement applies), to dest on the target as Push
// does: served over HTTP, fetched with wget, checked with sha256sum.
// test.run_definition pushes the tree of a test definition with it.
func (t *Target) PushFile(ctx context.Context, p, dest string) (Pushed, error) {
	f, err := os.Open(p)
	if err != nil {
		return Pushed{}, builtins.Infra(fmt.Errorf("open %s: %w", p, err))
	}
	defer f.Close()
	s := &source{src: filepath.Base(p), path: p, base: filepath.Base(p)}
	if s.d, err = t.digestOf(f, p, raw); err != nil {
		return Pushed{}, builtins.Infra(fmt.Errorf("read %s: %w", p, err))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.push(ctx, s, dest)
}

// Artifacts returns the artifact cache the target downloads URL sources
// into (Config.CacheDir, HTTPClient, HTTPRetries, Emit); its Dir is "" when
// the target has no cache.
func (t *Target) Artifacts() *artifact.Cache {
	return &artifact.Cache{Dir: t.cfg.CacheDir, Client: t.cfg.HTTPClient, Retries: t.cfg.HTTPRetries, Emit: t.cfg.Emit, Log: t.log}
}
