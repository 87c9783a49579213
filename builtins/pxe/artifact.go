package pxe

import (
	"context"
	"fmt"

	"github.com/basalt-lab/basalt/runtime/artifact"
)

// resolve opens the boot file src for role ("kernel", "initrd", "dtb")
// under the rules of package artifact (README "Artifacts"): a path
// relative to jobDir, or an http(s) URL downloaded once into the cache.
// want, when not "", is the expected sha256 in hex. Errors name the role.
func (s *Server) resolve(ctx context.Context, role, src, jobDir, want string) (*artifact.File, error) {
	c := &artifact.Cache{Dir: s.cfg.CacheDir, Retries: s.cfg.DownloadRetries, Emit: s.cfg.Emit, Log: s.log}
	f, err := artifact.Open(ctx, c, jobDir, src, want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	if _, err := f.Sum(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	return f, nil
}
