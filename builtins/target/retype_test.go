package target

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
)

// lossyConsole is a console whose shell never sees what is typed: every
// line typed is lost with the connection (loseEach), or the output that
// would have carried the start marker falls into a gap (gapEach).
type lossyConsole struct {
	loseEach, gapEach bool

	mu           sync.Mutex
	lines        int
	losses, gaps uint64
}

func (c *lossyConsole) Expect(ctx context.Context, _ ...expect.Pattern) (expect.Match, error) {
	<-ctx.Done()
	return expect.Match{}, ctx.Err()
}
func (c *lossyConsole) ExpectWith(ctx context.Context, _ sol.ExpectOptions, p ...expect.Pattern) (expect.Match, error) {
	return c.Expect(ctx, p...)
}
func (c *lossyConsole) Mark()                                               {}
func (c *lossyConsole) Send(context.Context, string, sol.SendOptions) error { return nil }
func (c *lossyConsole) SendLine(context.Context, string, sol.SendOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines++
	if c.loseEach {
		c.losses++
	}
	if c.gapEach {
		c.gaps++
	}
	return nil
}
func (c *lossyConsole) SetMode(sol.Mode) {}
func (c *lossyConsole) Losses() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.losses
}
func (c *lossyConsole) Gaps() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gaps
}

// TestRunGivesUpOnUnusableConsole: a console that loses every line typed
// makes target.run give up after maxRetypes retypes with an infrastructure
// error naming the losses, long before the command's deadline; one whose
// output has a gap before the start marker is not typed again at all.
func TestRunGivesUpOnUnusableConsole(t *testing.T) {
	defer func(d time.Duration) { restartWait = d }(restartWait)
	restartWait = 20 * time.Millisecond
	for _, tc := range []struct {
		name      string
		con       *lossyConsole
		wantLines int
		wantMsg   string
	}{
		{"losses", &lossyConsole{loseEach: true}, maxRetypes + 1, "gave up after 3 retypes"},
		{"gap", &lossyConsole{gapEach: true}, 1, "console lost output (1 gaps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt := New(Config{Console: tc.con})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := tgt.Run(ctx, "true", true)
			if err == nil {
				t.Fatal("Run succeeded on a console that loses everything")
			}
			if ctx.Err() != nil {
				t.Fatalf("Run waited out its deadline: %v", err)
			}
			if builtins.ClassOf(err) != builtins.ClassInfra || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Run = %v (class %s), want an infrastructure error holding %q", err, builtins.ClassOf(err), tc.wantMsg)
			}
			if tc.con.lines != tc.wantLines {
				t.Errorf("lines typed = %d, want %d", tc.con.lines, tc.wantLines)
			}
		})
	}
}

// TestConsoleDeclaresLossCounters: the loss counters retyping depends on
// are part of Console, not an interface asserted at run time, so a
// console that cannot count its losses does not compile as one.
func TestConsoleDeclaresLossCounters(t *testing.T) {
	var c Console = &lossyConsole{loseEach: true, gapEach: true}
	var counters interface {
		Losses() uint64
		Gaps() uint64
	} = c
	if err := c.SendLine(context.Background(), "x", sol.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if l, g := counters.Losses(), counters.Gaps(); l != 1 || g != 1 {
		t.Errorf("Losses(), Gaps() after a lost line = %d, %d; want 1, 1", l, g)
	}
}
