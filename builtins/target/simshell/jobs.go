package simshell

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// Background jobs and kill. The interpreter runs `CMD &` in a goroutine and
// sets $! to "gN" (N counting the jobs the shell started), but it has no
// kill: busybox ash's `kill $!` sends SIGTERM, after which `wait $!` is 143
// and `kill -0 $!` fails with "can't kill pid N: No such process" (checked
// against busybox 1.35 ash; the differential test runs both). markJobs
// routes every simple background command through jobCommand, which gives it
// a context that kill cancels.
//
// Job numbers follow the order in which jobs start. That is the
// interpreter's order when jobs are started one at a time, which is how
// targets are driven; a compound command in the background (`( ... ) &`)
// cannot be killed, but is counted.

// jobCommand and killCommand are internal command names no one types;
// jobCommand survives printing and parsing again (eval, below), which a NUL
// would not.
const (
	jobCommand  = "__simshell_background_job__"
	killCommand = "\x00kill"
)

// markJobs prefixes each simple command run in the background with
// jobCommand; background compound commands get a jobCommand of their own
// that only counts, so the numbers stay those of $!.
func markJobs(f *syntax.File) {
	syntax.Walk(f, func(n syntax.Node) bool {
		st, ok := n.(*syntax.Stmt)
		if !ok || !st.Background && !st.Disown {
			return true
		}
		lit := &syntax.Word{Parts: []syntax.WordPart{&syntax.Lit{Value: jobCommand}}}
		if call, ok := st.Cmd.(*syntax.CallExpr); ok && len(call.Args) > 0 {
			call.Args = append([]*syntax.Word{lit}, call.Args...)
			return false
		}
		if b, ok := st.Cmd.(*syntax.Block); ok {
			b.Stmts = append([]*syntax.Stmt{{Cmd: &syntax.CallExpr{Args: []*syntax.Word{lit}}}}, b.Stmts...)
		} else if sub, ok := st.Cmd.(*syntax.Subshell); ok {
			sub.Stmts = append([]*syntax.Stmt{{Cmd: &syntax.CallExpr{Args: []*syntax.Word{lit}}}}, sub.Stmts...)
		}
		return true
	})
}

// evalArgs marks the background jobs of the script an eval runs (target.run
// wraps every command in one), which the interpreter parses itself.
func evalArgs(args []string) []string {
	f, err := parse(strings.Join(args[1:], " "))
	if err != nil || !hasBackground(f) {
		return args
	}
	markJobs(f)
	var b strings.Builder
	if err := syntax.NewPrinter().Print(&b, f); err != nil {
		return args
	}
	return []string{"eval", b.String()}
}

// runJob runs args (a command, or nothing: a compound job being counted)
// as background job number N.
func (s *Shell) runJob(ctx context.Context, args []string) error {
	// A job outlives the command line that started it (the line's
	// context ends with it, ^C included) and stops with Serve or kill.
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	if s.serveCtx != nil {
		defer context.AfterFunc(s.serveCtx, cancel)()
	}
	s.jobSeq++
	id := s.jobSeq
	killed := false
	if len(args) > 0 {
		s.jobs[id] = func() { killed = true; cancel() }
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.jobs, id)
		s.mu.Unlock()
		cancel()
	}()
	if len(args) == 0 {
		return nil
	}
	err := s.exec(jctx, args)
	s.mu.Lock()
	k := killed
	s.mu.Unlock()
	if k {
		return interp.ExitStatus(128 + 15) // SIGTERM, as ash's wait reports it
	}
	return err
}

// cmdKill is ash's kill builtin for the shell's background jobs: kill
// [-0|-TERM|-KILL|-INT|-9|-15|-s SIG] PID... where PID is a $! value.
func cmdKill(c *call) error {
	args := c.args
	probe := false
	if len(args) > 0 && args[0] == "-s" && len(args) > 1 {
		args = args[2:]
	} else if len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		switch sig := strings.TrimPrefix(args[0], "-"); sig {
		case "0":
			probe = true
		case "TERM", "KILL", "INT", "HUP", "9", "15", "2", "1", "SIGTERM", "SIGKILL", "SIGINT":
		default:
			return c.fail("bad signal name '%s'", sig)
		}
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(c.stderr, "kill: usage: kill [-s sigspec | -signum | -sigspec] [pid | job]... or kill -l [exitstatus]")
		return exitCode(1)
	}
	status := 0
	for _, a := range args {
		kill := c.sh.job(a)
		if kill == nil {
			// busybox ash: "sh: can't kill pid 16100: No such process"
			fmt.Fprintf(c.stderr, "sh: can't kill pid %s: No such process\n", a)
			status = 1
			continue
		}
		if !probe {
			kill()
		}
	}
	return exitCode(status)
}

// job returns the kill function of the running job whose $! is pid.
func (s *Shell) job(pid string) func() {
	n, err := strconv.Atoi(strings.TrimPrefix(pid, "g"))
	if err != nil || !strings.HasPrefix(pid, "g") {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[n]
}
