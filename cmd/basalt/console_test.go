package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/creack/pty"
)

func TestEscaper(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		detach  bool
	}{
		{"ls\r", "ls\r", false},
		{"~.", "", true},
		{"ls\r~.", "ls\r", true},
		{"a~.", "a~.", false},       // not at the start of a line
		{"~~.", "~.", false},        // ~~ sends one ~
		{"\x03~x", "\x03~x", false}, // Ctrl-C goes to the device
		{"\n~.rest", "\n", true},
	} {
		e := &escaper{atLineStart: true}
		out, detach := e.feed([]byte(tc.in))
		if string(out) != tc.out || detach != tc.detach {
			t.Errorf("feed(%q) = %q, %v, want %q, %v", tc.in, out, detach, tc.out, tc.detach)
		}
	}
}

// term is one side of a pseudo-terminal a test types into and reads.
type termSide struct {
	t    *testing.T
	ptmx *os.File
	tty  *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
}

func newTerm(t *testing.T) *termSide {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	ts := &termSide{t: t, ptmx: ptmx, tty: tty}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			ts.mu.Lock()
			ts.buf.Write(b[:n])
			ts.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return ts
}

func (ts *termSide) text() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.buf.String()
}

// waitFor waits until the terminal has shown s.
func (ts *termSide) waitFor(s string) {
	ts.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(ts.text(), s) {
		if time.Now().After(deadline) {
			ts.t.Fatalf("terminal never showed %q; it shows:\n%s", s, ts.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ts *termSide) typ(s string) { ts.ptmx.Write([]byte(s)) }

func simLab(t *testing.T) (labDir string) {
	dir := t.TempDir()
	t.Setenv("BASALT_LOCK_DIR", filepath.Join(dir, "locks"))
	os.MkdirAll(filepath.Join(dir, "lab", "devices"), 0o755)
	os.WriteFile(filepath.Join(dir, "lab", "lab.star"), []byte("lab(name = \"t\")\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "lab", "devices", "sim01.star"), []byte("device(name = \"sim01\", type = \"sim\", mac = \"02:42:00:00:00:01\")\n"), 0o644)
	return filepath.Join(dir, "lab")
}

// basalt shell on a terminal: the sim master image boots, a command typed
// runs, ~. detaches and the cleanup powers the node off.
func TestShellSimOnTerminal(t *testing.T) {
	ts := newTerm(t)
	out := filepath.Join(t.TempDir(), "b")
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), context.Background(), []string{"shell", "sim", "--out", out}, ts.tty, ts.tty, ts.tty)
	}()
	ts.waitFor("at its master prompt")
	ts.typ("echo hello-$((6*7))\r")
	ts.waitFor("hello-42")
	ts.typ("\r~.")
	if c := <-code; c != 0 {
		t.Fatalf("shell exit %d:\n%s", c, ts.text())
	}
	ts.waitFor("cleanup power_off")
	if !strings.Contains(readFile(t, filepath.Join(out, "console.log")), "hello-42") {
		t.Errorf("console.log lacks the session's output")
	}
	if !regexp.MustCompile(`"builtin":"power.off".*"outcome":"ok"`).MatchString(readFile(t, filepath.Join(out, "events.jsonl"))) {
		t.Errorf("the cleanup did not power the node off after detaching")
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const failingJob = `load("@stdlib//master.star", "master")
job(name = "broken", timeout = "2m", params = {"kernel": "vmlinuz", "initrd": "initrd.gz"})
def one(ctx):
    master.boot(ctx)
    target.run("echo the job was here")
    fail("the job broke")
stage("one", one)
cleanup(master.power_off)
`

func writeJob(t *testing.T, src string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("a kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "initrd.gz"), []byte("an initrd"), 0o644)
	p := filepath.Join(dir, "job.star")
	os.WriteFile(p, []byte(src), 0o644)
	return p
}

// A failed job held with --hold-on-failure keeps its node on: basalt
// console attaches read-write, a command runs, ~. detaches, the board is
// still on for the next attach; a second console meanwhile only watches;
// basalt release runs the skipped power off.
func TestHoldOnFailureConsole(t *testing.T) {
	labDir := simLab(t)
	job := writeJob(t, failingJob)
	out := filepath.Join(t.TempDir(), "b")
	var jobErr syncBuf
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), context.Background(), []string{"run", job, "--lab", labDir, "--device", "sim01",
			"--out", out, "--hold-on-failure", "2m"}, nil, io.Discard, &jobErr)
	}()
	for !strings.Contains(jobErr.String(), "basalt console sim01") {
		select {
		case c := <-code:
			t.Fatalf("run ended (exit %d) without holding:\n%s", c, jobErr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if strings.Contains(readFile(t, filepath.Join(out, "events.jsonl")), `"cleanup_start"`) {
		t.Fatalf("the cleanup ran before the hold ended")
	}
	for i, word := range []string{"first", "second"} {
		ts := newTerm(t)
		c := make(chan int, 1)
		go func() {
			c <- run(context.Background(), context.Background(), []string{"console", "sim01", "--lab", labDir}, ts.tty, ts.tty, ts.tty)
		}()
		ts.waitFor("after its failure")
		if i == 0 {
			// The backlog shows where the job left the board.
			ts.waitFor("the job was here")
			// A second console while this one holds the keys only watches.
			var o, e syncBuf
			c2 := make(chan int, 1)
			pr, pw := io.Pipe()
			go func() {
				c2 <- run(context.Background(), context.Background(), []string{"console", "sim01", "--lab", labDir}, pr, &o, &e)
			}()
			for !strings.Contains(e.String(), "read-only") {
				time.Sleep(20 * time.Millisecond)
			}
			pw.Write([]byte("echo from-the-watcher\n~."))
			pw.Close()
			if got := <-c2; got != 0 {
				t.Errorf("watching console exit %d: %s", got, e.String())
			}
		}
		ts.typ("echo " + word + "-$((20+1))\r")
		ts.waitFor(word + "-21")
		ts.typ("~.")
		if got := <-c; got != 0 {
			t.Fatalf("console exit %d:\n%s", got, ts.text())
		}
	}
	if strings.Contains(readFile(t, filepath.Join(out, "console.log")), "from-the-watcher") {
		t.Errorf("a read-only watcher's keys reached the console")
	}
	// The held board is still on, and basalt power reaches it through
	// the holding job.
	if c, o, e := runCLI("power", "sim01", "status", "--lab", labDir); c != 0 || o != "on\n" {
		t.Errorf("power status during the hold = %d %q %q, want on", c, o, e)
	}
	var o, e bytes.Buffer
	if c := run(context.Background(), context.Background(), []string{"release", "sim01", "--lab", labDir}, nil, &o, &e); c != 0 {
		t.Fatalf("release exit %d: %s", c, e.String())
	}
	if c := <-code; c != 2 {
		t.Errorf("held job exit %d, want 2 (its fail())", c)
	}
	var res struct {
		Cleanup []struct{ Name, Status string }
	}
	json.Unmarshal([]byte(readFile(t, filepath.Join(out, "result.json"))), &res)
	if len(res.Cleanup) != 1 || res.Cleanup[0].Status != "pass" {
		t.Errorf("cleanup after release = %+v, want power_off passed", res.Cleanup)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// basalt console over a TCP console server (ser2net's role), on a
// terminal: typed lines and Ctrl-C reach the device, its answer shows,
// ~. detaches without sending "~.", and the lock is released after.
func TestConsoleTCPOnTerminal(t *testing.T) {
	labDir := simLab(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var all []byte
		buf := make([]byte, 256)
		for {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if i := bytes.IndexByte(buf[:n], '\r'); i >= 0 {
				fmt.Fprintf(c, "board says: %s\r\n", strings.ToUpper(strings.TrimSpace(string(all))))
			}
			if err != nil {
				got <- all
				return
			}
		}
	}()
	os.WriteFile(filepath.Join(labDir, "devices", "ser.star"), []byte(fmt.Sprintf(
		"device(name = \"ser\", type = \"highbank\", mac = \"02:42:00:00:00:06\", console_address = %q, power_command = {\"on\": \"true\"})\n", ln.Addr().String())), 0o644)
	ts := newTerm(t)
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), context.Background(), []string{"console", "ser", "--lab", labDir}, ts.tty, ts.tty, ts.tty)
	}()
	ts.waitFor("~. detaches")
	ts.typ("hello\r")
	ts.waitFor("board says: HELLO")
	ts.typ("\x03\r~.")
	if c := <-code; c != 0 {
		t.Fatalf("console exit %d:\n%s", c, ts.text())
	}
	if b := <-got; string(b) != "hello\r\x03\r" {
		t.Errorf("the device received %q, want %q (Ctrl-C passed, the escape kept)", b, "hello\r\x03\r")
	}
	if h, held := lab.CurrentHolder(os.Getenv("BASALT_LOCK_DIR"), "ser"); held {
		t.Errorf("after detach the device is still held by %s", h)
	}
}

// basalt shell without a terminal (pipes, for scripts), on a lab device
// whose type names its master image in its facts; --keep leaves the node
// on: no power off after the session.
func TestShellKeepFromTypeFacts(t *testing.T) {
	labDir := simLab(t)
	os.MkdirAll(filepath.Join(labDir, "device-types"), 0o755)
	os.WriteFile(filepath.Join(labDir, "device-types", "simk.star"), []byte(
		"device_type(name = \"simk\", extends = \"sim\", facts = {\"master_kernel\": \"k.img\", \"master_initrd\": \"i.img\"})\n"), 0o644)
	os.WriteFile(filepath.Join(labDir, "device-types", "k.img"), []byte("the type's master kernel"), 0o644)
	os.WriteFile(filepath.Join(labDir, "device-types", "i.img"), []byte("the type's master initrd"), 0o644)
	os.WriteFile(filepath.Join(labDir, "devices", "k1.star"), []byte("device(name = \"k1\", type = \"simk\", mac = \"02:42:00:00:00:07\")\n"), 0o644)
	out := filepath.Join(t.TempDir(), "b")
	pr, pw := io.Pipe()
	var o, e syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), context.Background(), []string{"shell", "k1", "--lab", labDir, "--keep", "--out", out}, pr, &o, &e)
	}()
	for !strings.Contains(e.String(), "at its master prompt") {
		select {
		case c := <-done:
			t.Fatalf("shell ended (%d) before the prompt:\n%s%s", c, o.String(), e.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	pw.Write([]byte("echo kept-$((3*3))\n~."))
	if c := <-done; c != 0 {
		t.Fatalf("shell exit %d:\n%s%s", c, o.String(), e.String())
	}
	if !strings.Contains(o.String(), "kept-9") {
		t.Errorf("the session's output is not on stdout:\n%s", o.String())
	}
	evs := readFile(t, filepath.Join(out, "events.jsonl"))
	if strings.Contains(evs, `"builtin":"power.off"`) {
		t.Errorf("--keep powered the node off")
	}
	// The kernel served is the type's: result.json records its digest.
	sum := sha256.Sum256([]byte("the type's master kernel"))
	if res := readFile(t, filepath.Join(out, "result.json")); !strings.Contains(res, hex.EncodeToString(sum[:])) {
		t.Errorf("result.json lacks the digest of the type's master kernel:\n%s", res)
	}
	if want := "Loading "; !strings.Contains(readFile(t, filepath.Join(out, "console.log")), want) {
		t.Errorf("console.log lacks the PXE load")
	}
}
