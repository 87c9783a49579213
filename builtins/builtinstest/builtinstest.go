// Package builtinstest holds what the tests of basalt's builtin modules
// share, named like go.starlark.net/starlarktest: a [Recorder] that keeps
// what a builtin records, a [SyncBuffer] for output written by one
// goroutine and polled by another, [WaitFor] for conditions that come true
// in the background, and a harness that runs a Starlark file against a
// module with the assert module loaded ([NewThread], [ExecFile]).
//
// It is an ordinary package, so that the tests of every builtins/...
// package (and the suites in ipmitest and soltest) use one copy.
package builtinstest

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
)

// Patience is how long [WaitFor] waits. It only bounds a hang: a test
// asserts what happens, never how fast.
const Patience = 20 * time.Second

// WaitFor polls cond until it holds, and fails the test naming what it
// waited for once [Patience] has passed.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer that one goroutine may write while another
// reads it. The zero value is empty and ready.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len returns how many bytes were written so far.
func (s *SyncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// Event is one event a builtin emitted.
type Event struct {
	Type   string
	Fields map[string]any
}

// Recorder is a [builtins.Recorder] that keeps, in memory, the events, test
// cases, log lines, console bytes and artifacts a builtin records. Its
// Emit method also serves as an emit callback (ipmi.Options.Emit,
// sol.Options.Emit). The zero value is ready; it is safe for concurrent
// use.
type Recorder struct {
	mu        sync.Mutex
	events    []Event
	cases     []builtins.TestCase
	prints    []string
	artifacts map[string][]byte
	console   SyncBuffer
}

var _ builtins.Recorder = (*Recorder)(nil)

// Emit records an event.
func (r *Recorder) Emit(typ string, fields map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, Event{typ, fields})
}

// TestCase records a test case.
func (r *Recorder) TestCase(tc builtins.TestCase) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cases = append(r.cases, tc)
}

// Print records a line of the job log.
func (r *Recorder) Print(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prints = append(r.prints, msg)
}

// Console returns the console capture; [Recorder.ConsoleText] reads it.
func (r *Recorder) Console() io.Writer { return &r.console }

// Artifact keeps the artifact's bytes under name and returns
// "artifacts/"+name, as a bundle does. It checks nothing.
func (r *Recorder) Artifact(name string, rd io.Reader, _ string) (string, error) {
	b, err := io.ReadAll(rd)
	if err != nil {
		return "", fmt.Errorf("read artifact %s: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.artifacts == nil {
		r.artifacts = map[string][]byte{}
	}
	r.artifacts[name] = b
	return "artifacts/" + name, nil
}

// Events returns the events of type typ, in order; all of them for "".
func (r *Recorder) Events(typ string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, e := range r.events {
		if typ == "" || e.Type == typ {
			out = append(out, e.Fields)
		}
	}
	return out
}

// Cases returns the test cases recorded, in order.
func (r *Recorder) Cases() []builtins.TestCase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]builtins.TestCase(nil), r.cases...)
}

// Prints returns the job log lines, in order.
func (r *Recorder) Prints() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.prints...)
}

// ArtifactData returns the bytes stored under name.
func (r *Recorder) ArtifactData(name string) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.artifacts[name]
	return b, ok
}

// ConsoleText returns the console bytes captured so far.
func (r *Recorder) ConsoleText() string { return r.console.String() }

// Reset forgets the events recorded so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// String prints every event, for failure messages and for checking that
// no secret reached them.
func (r *Recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.events)
}
