package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// On a terminal, run colors its progress and summary; elsewhere it prints
// plain lines (the other CLI tests read plain output).
func TestRunOnTerminalIsColored(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")
	dir := t.TempDir()
	job := filepath.Join(dir, "job.star")
	os.WriteFile(job, []byte("job(name = \"tty\")\ndef one(ctx):\n    test.case(\"a\", \"pass\")\nstage(\"one\", one)\n"), 0o644)
	var got bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&got, ptmx); close(done) }()
	var errb bytes.Buffer
	code := run(context.Background(), context.Background(), []string{"run", job, "--out", filepath.Join(dir, "out")}, nil, tty, &errb)
	tty.Close()
	<-done
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	out := got.String()
	if !strings.Contains(out, green+bold+"pass"+reset) || !strings.Contains(out, green+"pass"+reset) {
		t.Errorf("terminal output has no colored pass:\n%q", out)
	}

	// Not a terminal: plain lines.
	var plain bytes.Buffer
	run(context.Background(), context.Background(), []string{"run", job, "--out", filepath.Join(dir, "out2")}, nil, &plain, &errb)
	if strings.Contains(plain.String(), "\x1b[") {
		t.Errorf("non-terminal output has escape codes:\n%q", plain.String())
	}
}
