package main

import (
	"context"
	"fmt"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/power"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/target"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/basalt-lab/basalt/runtime/replay"
)

// wireReplay sets the backends of a replay with each module's SetBackend,
// as wire does for a device: the console over the recorded console.log,
// IPMI, power and PXE answering from the recording, the target over the
// replayed console. A recording without a device gets none.
func wireReplay(ctx context.Context, env *builtins.Env, dev *lab.Device, s *replay.Session, b *bundle.Bundle, cacheDir string) (func(), error) {
	if dev == nil {
		return func() {}, nil
	}
	var patterns []string
	if dev.Type != nil {
		patterns = dev.Type.ErrorPatterns
	}
	// No typing delays: nothing reads the keys but the comparison; and no
	// terminal answers: the recorded device got its own.
	con := sol.New(s.Transport(), sol.Options{ErrorPatterns: patterns, Capture: b.Console(), Emit: b.Emit,
		AddSecret: b.AddSecret, Log: env.Logger(), NoTermAnswers: true})
	if err := con.Start(ctx); err != nil {
		return nil, builtins.Infra(fmt.Errorf("replay console: %w", err))
	}
	rc := &replay.Console{S: s, C: con}
	release := func() {
		con.Close() // first: its reader then sees EOF and stops, no reconnection
		s.Close()
	}
	ctl := s.Controller()
	mark := rc.Mark
	ipmi.SetBackend(env, power.ControllerWithEpoch(ctl, mark))
	power.SetBackend(env, power.WithEpoch(power.BMC(ctl), mark))
	pxe.SetBackend(env, s.PXE())
	sol.SetBackend(env, rc)

	var prompts []string
	if dev.Type != nil {
		prompts = []string{dev.Type.MasterPrompt, dev.Type.ShellPrompt}
	}
	tgt := target.New(target.Config{
		Console:    rc,
		Publisher:  s.Publisher(),
		Prompt:     target.JoinPrompts(prompts...),
		CacheDir:   cacheDir,
		HTTPClient: s.HTTPClient(),
		Token:      s.Record().Token,
		Emit:       b.Emit,
		Log:        env.Logger(),
	})
	tgt.SetFacts(env.Facts)
	target.SetBackend(env, tgt)
	return release, nil
}
