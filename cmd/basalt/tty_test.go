package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
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

// A run that did not pass ends, on a terminal as in CI, with its failed
// tests and their stages, the error once, and the console's last lines:
// raw console lines, not an escaped dump of the expect buffer with the
// framing markers' regular expression.
func TestRunOnTerminalEndsWithConsoleTail(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("a kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "initrd.gz"), []byte("an initrd"), 0o644)
	job := filepath.Join(dir, "job.star")
	os.WriteFile(job, []byte(`job(name = "tail", timeout = "2m", params = {"kernel": "vmlinuz", "initrd": "initrd.gz"})

def one(ctx):
    pxe.serve(ctx.params.kernel, ctx.params.initrd, append = "nosplash break")
    ipmi.bootdev("pxe")
    ipmi.power("on")
    sol.expect("(sim-initramfs) ", timeout = "30s")
    sol.mode("shell")
    target.run("echo the last words")
    test.case("broken", "fail", message = "it broke")
    target.run("sleep 100", timeout = "1s")

stage("one", one)
stage("two", one)
`), 0o644)
	var got bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&got, ptmx); close(done) }()
	code := run(context.Background(), context.Background(), []string{"run", job, "--device", "sim", "--out", filepath.Join(dir, "out")}, nil, tty, tty)
	tty.Close()
	<-done
	if code != 4 {
		t.Fatalf("exit %d, want 4 (device error)\n%s", code, got.String())
	}
	out := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(strings.ReplaceAll(got.String(), "\r", ""), "")
	const errText = `target.run: command "sleep 100" did not finish within its timeout=1s`
	if n := strings.Count(out, errText); n != 1 {
		t.Errorf("the error is printed %d times, want once:\n%s", n, out)
	}
	for _, bad := range []string{`E:([0-9]+)`, `\r\n`, "re\""} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds %q, basalt's internals or an escaped console dump:\n%s", bad, out)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 20 {
		t.Fatalf("%d lines of output:\n%s", len(lines), out)
	}
	tail := lines[len(lines)-16:]
	if tail[0] != "console.log, last 15 lines:" {
		t.Errorf("16th line from the end = %q, want the console tail's heading\n%s", tail[0], out)
	}
	for _, l := range tail[1:] {
		if !strings.HasPrefix(l, "  | ") {
			t.Errorf("console tail line %q does not start with \"  | \"", l)
		}
	}
	if !strings.Contains(strings.Join(tail, "\n"), "  | the last words") {
		t.Errorf("console tail lacks the target's last output:\n%s", strings.Join(tail, "\n"))
	}
	before := strings.Join(lines[:len(lines)-16], "\n")
	for _, want := range []string{"fail: broken (stage one): it broke", "result: error", "device error in stage one at " + job + ":11:15: " + errText} {
		if !strings.Contains(before, want) {
			t.Errorf("output before the console tail lacks %q:\n%s", want, before)
		}
	}
}
